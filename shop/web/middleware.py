"""The shop's own middleware: the health check, and the admin's middleware kept off /api/.

The health check is answered before host validation and the HTTPS redirect: load balancers
and the container HEALTHCHECK probe by IP over plain HTTP; neither should need to be in
ALLOWED_HOSTS, nor be redirected to HTTPS.
"""

from collections.abc import Callable

from django.contrib.auth import middleware as auth
from django.contrib.messages import middleware as messages
from django.contrib.sessions import middleware as sessions
from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse

HEALTH_PATH = "/healthz"


class HealthCheckMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if request.path != HEALTH_PATH:
            return self.get_response(request)
        try:
            with connection.cursor() as cursor:
                cursor.execute("SELECT 1")
        except Exception:  # any database failure means "not healthy", never a 500 page
            return JsonResponse({"status": "unavailable", "database": "down"}, status=503)
        return JsonResponse({"status": "ok", "database": "ok"})


# --- the admin's middleware, not the token API's -----------------------------------------

#: The token API's prefix: its requests carry an ID token in a header, never a cookie.
API_PREFIX = "/api/"


class _NotUnderApi:
    """Runs the middleware for every request but those under ``API_PREFIX``.

    Sessions, the signed-in user and messages are the admin's (and the staff's ``/metrics``
    in a browser): the API never reads a cookie (customers are the Cognito token's,
    ``UNAUTHENTICATED_USER`` is None), so under ``/api/`` they built objects nobody used, on
    every request (``bench/http_bench.py``, rungs d-f). What a response carries is unchanged:
    a session adds a header only when it was used; the security headers come from other
    middleware. CSRF's middleware stays as Django ships it, for every request (its check is
    what the deploy check looks for; DRF's views are exempt from it anyway). Django's admin
    checks accept these subclasses as the middleware it needs.
    """

    get_response: Callable[[HttpRequest], HttpResponse]

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.path_info.startswith(API_PREFIX):
            return self.get_response(request)
        return super().__call__(request)  # type: ignore[misc]


class SessionMiddleware(_NotUnderApi, sessions.SessionMiddleware):
    pass


class AuthenticationMiddleware(_NotUnderApi, auth.AuthenticationMiddleware):
    pass


class MessageMiddleware(_NotUnderApi, messages.MessageMiddleware):
    pass
