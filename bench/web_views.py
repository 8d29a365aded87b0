"""Views of the decomposition rungs (``http_bench.py``), each one step on from the last.

- (d) ``django_plain``: a plain Django view through the shop's whole middleware stack;
- (e) ``DrfApi``: a DRF ``APIView`` (the project's REST framework settings: parser, renderer,
  exception handler) with no authentication and no throttle;
- (f) ``DrfCognitoApi``: the same view with the project's default authentication (the
  Cognito ID token, verified once per process and then remembered) and permission.

Then ``GET /api/me/`` (b) is (f) plus one ``COUNT`` and a serializer. Neither view has a
throttle: the anonymous one would be limited by ``ANONYMOUS_REQUEST_RATE`` (one client
address), and a throttle is a cache look-up of its own, measured by ``GET /api/products/``.
"""

from django.http import HttpRequest, HttpResponse
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView


def django_plain(request: HttpRequest) -> HttpResponse:
    return HttpResponse(b"ok\n", content_type="text/plain")


class DrfApi(APIView):
    authentication_classes: list = []
    permission_classes = [AllowAny]
    throttle_classes: list = []

    def get(self, request, *args, **kwargs):
        return Response({"ok": True})


class DrfCognitoApi(APIView):
    # authentication_classes and permission_classes: the project's defaults (settings).
    throttle_classes: list = []

    def get(self, request, *args, **kwargs):
        return Response({"id": request.user.customer_id})
