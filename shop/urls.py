from django.contrib import admin
from django.urls import include, path, re_path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from notifications import admin_queue
from notifications.receivers import SesEventView
from shop.api import api_not_found
from shop.metrics import metrics_view

urlpatterns = [
    # The admin, plus its queue health and dead-letter pages (/admin/notifications/...).
    path(
        "admin/",
        (
            admin_queue.urls(admin.site, prefix="notifications/") + admin.site.get_urls(),
            "admin",
            admin.site.name,
        ),
    ),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="swagger-ui"),
    path("api/", include("orders.urls")),
    re_path(r"^api/", api_not_found),
    path("metrics", metrics_view, name="metrics"),
    # SES events through SNS (signed; CSRF-exempt like django-ses's view).
    path("ses/events/", SesEventView.as_view(), name="ses_events"),
]
