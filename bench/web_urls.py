"""The benchmark's URLconf (``bench/web_settings.py``): the service's URLs, unchanged and in
the same order, with the decomposition views beside them (``bench/web_views.py``).

The DRF views live under ``/api/bench/`` (the API's prefix, so that whatever the shop scopes
to ``/api/`` applies to them as to the real API), matched by one prefix before the service's
own patterns (its ``^api/`` catch-all would answer them 404); the plain Django view at
``/bench/django/``, after them.
"""

from importlib import import_module

from django.conf import settings
from django.urls import include, path

from bench import web_views

service = import_module(settings.SHOP_SERVICES[settings.SHOP_SERVICE])

api_views = [
    path("drf/", web_views.DrfApi.as_view()),
    path("drf-cognito/", web_views.DrfCognitoApi.as_view()),
]

urlpatterns = [
    path("api/bench/", include(api_views)),
    *service.urlpatterns,
    path("bench/django/", web_views.django_plain),
]
