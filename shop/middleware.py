"""Health check answered before host validation and the HTTPS redirect.

Load balancers and the container HEALTHCHECK probe by IP over plain HTTP; neither should
need to be in ALLOWED_HOSTS, nor be redirected to HTTPS.
"""

from django.db import connection
from django.http import JsonResponse

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
