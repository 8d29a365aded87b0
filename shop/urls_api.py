"""The public API service's URLs (``SHOP_SERVICE=api``): the API, its schema, the SES events
webhook and /metrics. No admin: its URLs do not exist in this service."""

from django.urls import include, path, re_path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from notifications.receivers import SesEventView
from shop.observability.metrics import metrics_view
from shop.web.api import api_not_found

urlpatterns = [
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="swagger-ui"),
    path("api/", include("orders.urls")),
    re_path(r"^api/", api_not_found),
    path("metrics", metrics_view, name="metrics"),
    # SES events through SNS (signed; CSRF-exempt like django-ses's view).
    path("ses/events/", SesEventView.as_view(), name="ses_events"),
]
