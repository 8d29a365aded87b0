"""The shop's settings under ``http_bench.py``: production's, plus the decomposition rungs.

``DJANGO_SETTINGS_MODULE=bench.web_settings`` for the benchmark's gunicorn only. Everything
is ``shop.settings.production`` (the same environment, middleware, REST framework and
logging); only the URLconf differs: ``bench/web_urls.py``, the service's own URLs with the
views of rungs d-f (``bench/web_views.py``) beside them. No production process loads this module.
"""

from shop.settings.production import *  # noqa: F403

ROOT_URLCONF = "bench.web_urls"
