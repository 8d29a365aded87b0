"""Fail closed: a process started without configuration is a production process that refuses
to start, and one given only the required variables runs with DEBUG off.

The processes are the image's own commands, started with an environment that holds no
``DJANGO_*`` variable at all (only what a bare container has: PATH and HOME).
"""

from __future__ import annotations

import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from django.conf import settings

from shop.settings.base import REQUIRED_IN_PRODUCTION
from tests.pipeline import ROOT, WebServer, database_url

BIN = Path(sys.executable).parent
BARE = {"PATH": f"{BIN}:/usr/bin:/bin", "HOME": "/tmp", "PYTHONDONTWRITEBYTECODE": "1"}

pytestmark = pytest.mark.subprocess


def _run(*command: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(BIN / command[0]), *command[1:]],
        cwd=ROOT,
        env=BARE,
        capture_output=True,
        text=True,
        timeout=120,
    )


def _assert_refused_naming_every_required_variable(result: subprocess.CompletedProcess) -> None:
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert "Production settings (shop.settings.production, the default)" in output, output
    assert ", ".join(REQUIRED_IN_PRODUCTION) in output, output
    # and says how to get development settings
    assert "DJANGO_SETTINGS_MODULE=shop.settings.development" in output


def test_gunicorn_without_configuration_refuses_to_start():
    result = _run("gunicorn", "shop.wsgi", "--bind", "127.0.0.1:0", "--workers", "1")
    _assert_refused_naming_every_required_variable(result)
    assert "Worker failed to boot" in result.stdout + result.stderr


def test_the_images_gunicorn_command_without_configuration_refuses_to_start():
    # With the image's gunicorn configuration the master itself reads the settings.
    result = _run(
        "gunicorn", "shop.wsgi", "-c", "python:shop.gunicorn_conf", "--bind", "127.0.0.1:0"
    )
    _assert_refused_naming_every_required_variable(result)


def test_celery_worker_without_configuration_refuses_to_start():
    result = _run("celery", "-A", "shop", "worker", "--pool", "solo")
    _assert_refused_naming_every_required_variable(result)


def test_management_commands_without_configuration_refuse_to_run():
    result = _run("python", "manage.py", "check")
    _assert_refused_naming_every_required_variable(result)


@pytest.mark.django_db
def test_gunicorn_with_only_the_required_variables_runs_with_debug_off(tmp_path):
    """No DJANGO_DEBUG at all: production behaviour (HTTPS redirect, host validation, no
    debug pages)."""
    required = {
        "DJANGO_SECRET_KEY": "fail-closed-test-secret-0123456789abcdefghijklmnopqrstuvwxyz",
        "DATABASE_URL": database_url(),
        "ORDER_QUEUE_URL": settings.ORDER_QUEUE_URL,
        "COGNITO_USER_POOL_ID": settings.COGNITO_USER_POOL_ID,
        "COGNITO_APP_CLIENT_ID": settings.COGNITO_APP_CLIENT_ID,
    }
    assert set(required) == set(REQUIRED_IN_PRODUCTION)
    server = WebServer(tmp_path / "web.log")
    server.env = {**BARE, **required, "DJANGO_ALLOWED_HOSTS": "shop.example.com"}
    server.start()
    try:
        # Plain HTTP is redirected to HTTPS (SECURE_SSL_REDIRECT follows DEBUG off).
        request = urllib.request.Request(
            f"{server.url}/api/products/", headers={"Host": "shop.example.com"}
        )
        with pytest.raises(urllib.error.HTTPError) as redirect:
            urllib.request.build_opener(_NoRedirect).open(request, timeout=10)
        assert redirect.value.code == 301
        assert redirect.value.headers["Location"] == "https://shop.example.com/api/products/"
        # A host not in DJANGO_ALLOWED_HOSTS is a bare 400, not Django's debug page.
        request = urllib.request.Request(f"{server.url}/nowhere", headers={"Host": "evil.test"})
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=10)
        assert refused.value.code == 400
        body = refused.value.read().decode()
        assert "DisallowedHost" not in body and "Traceback" not in body
    finally:
        server.stop()


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None
