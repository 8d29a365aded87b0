"""The public API and the admin as separate services of one image: SHOP_SERVICE picks the
URLconf, and each service answers only its own paths."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from django.test import override_settings

from tests.factories import StaffFactory
from tests.pipeline import ROOT

pytestmark = pytest.mark.django_db

API_PATHS = ["/api/products/", "/api/schema/", "/api/docs/"]
ADMIN_PATHS = ["/admin/", "/admin/login/", "/admin/notifications/queue-health/"]


@override_settings(ROOT_URLCONF="shop.urls_api")
def test_the_public_api_has_no_admin(client):
    for path in API_PATHS:
        assert client.get(path).status_code == 200, path
    for path in ADMIN_PATHS:
        assert client.get(path).status_code == 404, path
    staff = StaffFactory(username="ops", email="ops@example.com", is_superuser=True)
    client.force_login(staff)  # a staff session from elsewhere opens nothing here
    assert client.get("/admin/").status_code == 404
    schema = json.loads(client.get("/api/schema/", {"format": "json"}).content)
    assert not [path for path in schema["paths"] if "admin" in path]
    assert client.post("/ses/events/", data=b"{}", content_type="text/plain").status_code == 400


@override_settings(ROOT_URLCONF="shop.urls_admin")
def test_the_admin_has_no_api_and_no_webhook(client):
    assert client.get("/admin/login/").status_code == 200
    for path in [*API_PATHS, "/api/orders/"]:
        assert client.get(path).status_code == 404, path
    assert client.post("/ses/events/", data=b"{}", content_type="text/plain").status_code == 404


def test_the_combined_service_has_both(client):
    assert client.get("/admin/login/").status_code == 200
    assert client.get("/api/products/").status_code == 200


def _setting(name: str, **env: str) -> subprocess.CompletedProcess:
    code = f"from django.conf import settings; print(settings.{name})"
    return subprocess.run(
        [sys.executable, "manage.py", "shell", "--no-imports", "-c", code],
        cwd=ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.subprocess
def test_shop_service_chooses_the_urlconf_and_refuses_unknown_services():
    for service, urlconf in (("api", "shop.urls_api"), ("ADMIN", "shop.urls_admin")):
        result = _setting("ROOT_URLCONF", SHOP_SERVICE=service)
        assert result.stdout.strip() == urlconf, result.stderr
    assert _setting("ROOT_URLCONF").stdout.strip() == "shop.urls"
    result = _setting("ROOT_URLCONF", SHOP_SERVICE="public")
    assert result.returncode != 0 and "SHOP_SERVICE must be all, api or admin" in result.stderr
