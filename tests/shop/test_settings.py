"""Production settings: required variables, and Django's deployment checklist."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.pipeline import ROOT

pytestmark = pytest.mark.subprocess  # manage.py in a process of its own, with other settings

REQUIRED = {
    "DJANGO_SECRET_KEY": "a-long-random-production-secret-" + "x" * 40,
    "DATABASE_URL": "postgres://shop@db.example.com:5432/shop",
    "ORDER_QUEUE_URL": "https://sqs.us-east-1.amazonaws.com/123456789012/shop-orders",
    "COGNITO_USER_POOL_ID": "us-east-1_abc",
    "COGNITO_APP_CLIENT_ID": "client",
}


def _manage(*args: str, **env: str) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if k not in REQUIRED}
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env={
            **base,
            "DJANGO_SETTINGS_MODULE": "shop.settings.production",
            "AWS_ENDPOINT_URL": "",
            **env,
        },
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_production_refuses_to_start_without_required_variables():
    result = _manage("check", DJANGO_SECRET_KEY="set-but-others-missing")
    assert result.returncode != 0
    missing = "DATABASE_URL, ORDER_QUEUE_URL, COGNITO_USER_POOL_ID, COGNITO_APP_CLIENT_ID"
    assert missing in result.stderr
    assert "DJANGO_SECRET_KEY," not in result.stderr


def test_production_settings_pass_the_deploy_check():
    result = _manage(
        "check",
        "--deploy",
        "--fail-level",
        "WARNING",
        DJANGO_ALLOWED_HOSTS="shop.example.com",
        **REQUIRED,
    )
    assert result.returncode == 0, result.stdout + result.stderr
