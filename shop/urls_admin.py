"""The admin service's URLs (``SHOP_SERVICE=admin``): the Django admin with its queue health
and dead-letter pages, and /metrics. No API and no webhook."""

from django.contrib import admin
from django.urls import path

from notifications import admin_queue
from shop.observability.metrics import metrics_view

#: The admin, plus its queue health and dead-letter pages (/admin/notifications/...).
admin_urlpatterns = [
    path(
        "admin/",
        (
            admin_queue.urls(admin.site, prefix="notifications/") + admin.site.get_urls(),
            "admin",
            admin.site.name,
        ),
    ),
]

urlpatterns = [*admin_urlpatterns, path("metrics", metrics_view, name="metrics")]
