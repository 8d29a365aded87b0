"""What the settings read: the environment through django-environ, and the defaults that
depend on where the shop runs.

Production's defaults are the fail-closed ones: DEBUG off, no AWS endpoint (boto3's own), no
queue, JSON logs, nobody allowed to read /metrics. ``shop.settings.development`` switches to
the development defaults (the emulator ``make run`` starts, a development secret key, plain
logs...) with ``use_development_defaults()`` before it imports ``shop.settings.base``. Either
way a variable set in the environment (or in a developer's ``.env``) wins. The defaults are
not written to the environment, so a process the tests start as production gets none of
development's. One process runs one settings module, hence one set of defaults.
"""

from pathlib import Path

import environ

BASE_DIR = Path(__file__).resolve().parent.parent.parent

env = environ.Env()
# A developer's own `.env` (never committed) fills in what the shell did not set.
if (BASE_DIR / ".env").is_file():
    env.read_env(BASE_DIR / ".env")

# The emulator `make run` starts (see Makefile) and its account id.
DEV_AWS_ENDPOINT_URL = "http://127.0.0.1:5055"
DEV_ORDER_QUEUE_URL = f"{DEV_AWS_ENDPOINT_URL}/123456789012/shop-orders"

PRODUCTION_DEFAULTS: dict[str, object] = {
    "DJANGO_DEBUG": False,
    "DJANGO_SECRET_KEY": "",
    "DJANGO_ALLOWED_HOSTS": [],
    "AWS_ENDPOINT_URL": "",
    "ORDER_QUEUE_URL": "",
    "LOG_FORMAT": "json",
    "METRICS_ALLOWED_IPS": [],
    "WORKER_METRICS_ADDR": "0.0.0.0",  # noqa: S104  (in a container; METRICS_ALLOWED_IPS decides)
}
DEVELOPMENT_DEFAULTS: dict[str, object] = {
    "DJANGO_DEBUG": True,
    "DJANGO_SECRET_KEY": "django-insecure-development-only-never-use-in-production",
    "DJANGO_ALLOWED_HOSTS": ["localhost", "127.0.0.1", "[::1]"],
    "AWS_ENDPOINT_URL": DEV_AWS_ENDPOINT_URL,
    "ORDER_QUEUE_URL": DEV_ORDER_QUEUE_URL,
    "LOG_FORMAT": "plain",
    "METRICS_ALLOWED_IPS": ["127.0.0.1", "::1"],
    "WORKER_METRICS_ADDR": "127.0.0.1",
}
_defaults = dict(PRODUCTION_DEFAULTS)


def use_development_defaults() -> None:
    _defaults.update(DEVELOPMENT_DEFAULTS)


def default(name: str):
    """The default of ``name`` for this process's settings module (see the module doc)."""
    return _defaults[name]
