"""The test suite: development's settings and what only tests need (pyproject.toml names it).

Processes a test starts (worker, relay, web servers) inherit ``DJANGO_SETTINGS_MODULE`` and
so run these settings too.
"""

import os

from shop.settings.development import *  # noqa: F403
from shop.settings.development import BASE_DIR, DATABASES

# Tests that start a worker or a web server as another process need a database that process
# can open: a file, not SQLite's default in-memory test database.
# (One file per test run, so that two runs on one checkout do not share it.)
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    DATABASES["default"]["TEST"] = {
        "NAME": str(BASE_DIR / "var" / f"test-db-{os.getpid()}.sqlite3")
    }
