"""DRF authentication with Cognito ID tokens. Customers are not Django users."""

from __future__ import annotations

from dataclasses import dataclass

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework.authentication import BaseAuthentication, get_authorization_header
from rest_framework.exceptions import AuthenticationFailed

from shop.aws import cognito
from shop.web.api_errors import ServiceUnavailable


@dataclass(frozen=True)
class Customer:
    """The request's user: built from the token, never from the body."""

    customer_id: str
    email: str
    is_authenticated: bool = True
    is_anonymous: bool = False

    @property
    def pk(self) -> str:  # used by DRF throttling to key per user
        return self.customer_id


class CognitoIdTokenAuthentication(BaseAuthentication):
    keyword = b"bearer"

    def authenticate(self, request):
        parts = get_authorization_header(request).split()
        if not parts or parts[0].lower() != self.keyword:
            return None
        request._bearer_token_sent = True
        if len(parts) != 2:
            raise AuthenticationFailed("Malformed Authorization header.", code="invalid_token")
        try:
            token = parts[1].decode("ascii")
        except UnicodeDecodeError:
            raise AuthenticationFailed("Malformed token.", code="invalid_token") from None
        try:
            claims = cognito.id_token_verify(token=token)
        except cognito.InvalidToken as exc:
            raise AuthenticationFailed(f"Invalid token: {exc}.", code="invalid_token") from None
        except cognito.KeysUnavailable:
            raise ServiceUnavailable(
                "The sign-in service's keys are unavailable; try again shortly."
            ) from None
        return Customer(customer_id=claims.customer_id, email=claims.email), token

    def authenticate_header(self, request) -> str:
        # RFC 6750: a request without a token gets a bare challenge, a bad token an error code.
        if getattr(request, "_bearer_token_sent", False):
            return 'Bearer error="invalid_token"'
        return "Bearer"


class CognitoIdTokenScheme(OpenApiAuthenticationExtension):
    target_class = "shop.web.authentication.CognitoIdTokenAuthentication"
    name = "CognitoIdToken"

    def get_security_definition(self, auto_schema):
        return {
            "type": "http",
            "scheme": "bearer",
            "bearerFormat": "JWT",
            "description": "An Amazon Cognito ID token of the shop's user pool and app client.",
        }
