"""Every URL of the shop in one service (``SHOP_SERVICE=all``, the default: ``make run``, the
tests, a deployment that runs one web service). ``shop.urls_api`` and ``shop.urls_admin``
are the two halves, for running the public API and the admin as separate services."""

from shop import urls_admin, urls_api

urlpatterns = [*urls_admin.admin_urlpatterns, *urls_api.urlpatterns]
