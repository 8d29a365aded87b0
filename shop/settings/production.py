"""Production: the default settings module (fail closed).

A process started without configuration refuses to start, naming the variables it needs
(``REQUIRED_IN_PRODUCTION``); ``DJANGO_DEBUG`` cannot be turned on here. Security settings
follow from DEBUG being off (``shop.settings.base``): HTTPS redirect, HSTS, secure cookies,
hashed static files.
"""

from django.core.exceptions import ImproperlyConfigured

from shop.settings.base import *  # noqa: F403
from shop.settings.base import REQUIRED_IN_PRODUCTION, env

_missing = [name for name in REQUIRED_IN_PRODUCTION if not env.str(name, default="")]
if _missing:
    raise ImproperlyConfigured(
        "Production settings (shop.settings.production, the default) need these "
        "environment variables: " + ", ".join(_missing) + ". For development use "
        "DJANGO_SETTINGS_MODULE=shop.settings.development (make run and the benchmarks do; "
        "the tests use shop.settings.test)."
    )
if DEBUG:  # noqa: F405
    raise ImproperlyConfigured(
        "DJANGO_DEBUG=true is refused by the production settings; for development use "
        "DJANGO_SETTINGS_MODULE=shop.settings.development."
    )
