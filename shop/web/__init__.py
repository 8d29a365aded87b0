"""The web layer's shared parts: the API's error shape, request parsing and checks, the
middleware, the trusted-proxy rules and the Cognito authentication class."""
