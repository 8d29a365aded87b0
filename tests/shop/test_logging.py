"""Logs: JSON or plain by setting, and the order and task ids on the lines they concern.

The worker's side (a real Celery worker's JSON lines) is in
tests/notifications/test_worker_observability.py.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import urllib.error
import urllib.request

import pytest
from django.conf import settings

from shop.observability import logging as log_context
from tests.factories import ProductFactory
from tests.helpers import emulator_token, order_body
from tests.pipeline import ROOT, WebServer, drain

EMIT = (
    "import logging; from shop.observability.logging import log_context\n"
    "with log_context(order_id=42):\n"
    "    logging.getLogger('shop.test').warning('about order %s', 42, extra={'sku': 'MUG'})\n"
    "logging.getLogger('shop.test').warning('about nothing')\n"
)
PRODUCTION = {
    "DJANGO_SETTINGS_MODULE": "shop.settings.production",
    "DJANGO_SECRET_KEY": "a-long-random-production-secret-" + "x" * 40,
    "DATABASE_URL": "sqlite:///:memory:",
    "ORDER_QUEUE_URL": "https://sqs.us-east-1.amazonaws.com/123456789012/shop-orders",
    "COGNITO_USER_POOL_ID": "us-east-1_abc",
    "COGNITO_APP_CLIENT_ID": "client",
    "DJANGO_ALLOWED_HOSTS": "shop.example.com",
}


def _manage(*args: str, **env: str) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if k not in {"LOG_FORMAT", "DJANGO_DEBUG"}}
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        # Development settings unless the test says otherwise.
        env={**base, "DJANGO_SETTINGS_MODULE": "shop.settings.development", **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def _shell(**env: str) -> subprocess.CompletedProcess:
    return _manage("shell", "-c", EMIT, **env)


def _json_lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


@pytest.mark.subprocess  # manage.py in a process of its own
def test_json_format_prints_one_object_per_line_with_the_context():
    result = _shell(LOG_FORMAT="json")
    assert result.returncode == 0, result.stderr
    about_order, about_nothing = _json_lines(result.stderr)
    assert about_order["level"] == "WARNING"
    assert about_order["logger"] == "shop.test"
    assert about_order["message"] == "about order 42"
    assert about_order["order_id"] == 42
    assert about_order["sku"] == "MUG"  # extras are fields too
    assert about_order["timestamp"].endswith("+00:00")
    assert about_nothing["message"] == "about nothing"
    assert "order_id" not in about_nothing


@pytest.mark.subprocess  # manage.py in a process of its own
def test_json_is_the_default_in_production_and_plain_in_development():
    production = _shell(**PRODUCTION)
    assert production.returncode == 0, production.stderr
    assert _json_lines(production.stderr)[0]["message"] == "about order 42"

    development = _shell(DJANGO_SETTINGS_MODULE="shop.settings.development")
    assert development.returncode == 0, development.stderr
    first = development.stderr.splitlines()[0]
    assert first.endswith(" WARNING shop.test about order 42")
    assert not first.startswith("{")


@pytest.mark.subprocess  # manage.py in a process of its own
def test_an_unknown_log_format_refuses_to_start():
    result = _manage("check", LOG_FORMAT="xml")
    assert result.returncode != 0
    assert "LOG_FORMAT must be json or plain" in result.stderr


# --- the filter ---------------------------------------------------------------------------


@pytest.fixture
def no_context():
    """Outside a request or task nothing clears the ids (an earlier test may have placed one)."""
    log_context.context_clear()
    yield
    log_context.context_clear()


def _record(msg: str = "line", **attributes) -> logging.LogRecord:
    record = logging.LogRecord("t", logging.INFO, __file__, 1, msg, (), None)
    record.__dict__.update(attributes)
    return record


def test_filter_adds_bound_ids_and_lets_explicit_extras_win(no_context):
    context_filter = log_context.ContextFilter()
    with log_context.log_context(order_id=7, task_id="t-1"):
        record = _record()
        context_filter.filter(record)
        assert (record.order_id, record.task_id) == (7, "t-1")
        explicit = _record(order_id=8)
        context_filter.filter(explicit)
        assert explicit.order_id == 8
    outside = _record()
    context_filter.filter(outside)
    assert not hasattr(outside, "order_id") and not hasattr(outside, "task_id")


def test_filter_reads_celerys_own_task_lines(no_context):
    """The worker's main process logs "received" with the task in ``data``, outside any task;
    the ids come from its message, noted as it arrived (``SqsRequest``)."""
    log_context.task_message_note(task_id="abc", kwargs={"order_id": 12})
    log_context.task_message_note(task_id="def", kwargs={"order_idx": 3})
    record = _record(data={"id": "abc", "kwargs": "{'order_id': 12}", "name": "x"})
    log_context.ContextFilter().filter(record)
    assert (record.order_id, record.task_id) == (12, "abc")

    other = _record(data={"id": "def", "kwargs": "{'order_idx': 3}"})
    log_context.ContextFilter().filter(other)
    assert other.task_id == "def" and not hasattr(other, "order_id")


# --- the web path, in a real gunicorn -----------------------------------------------------


@pytest.mark.worker
@pytest.mark.subprocess
@pytest.mark.django_db(transaction=True)
def test_web_lines_about_an_order_carry_its_id_and_no_later_request_does(tmp_path):
    drain(settings.ORDER_QUEUE_URL)
    web = WebServer(
        tmp_path / "web.log",
        env={"LOG_FORMAT": "json", "GUNICORN_CMD_ARGS": "-c python:shop.gunicorn_conf"},
    ).start()
    try:
        ProductFactory(sku="MUG", stock=5)
        token = emulator_token()
        ids = []
        for _ in range(2):
            status, body = web.request("POST", "/api/orders/", order_body(("MUG", 1)), token=token)
            assert status == 201, body
            ids.append(body["id"])
        # The same (only) gunicorn worker thread answers a request about no order.
        with pytest.raises(urllib.error.HTTPError):
            urllib.request.urlopen(f"{web.url}/no-such-page", timeout=10)
    finally:
        web.stop()
        drain(settings.ORDER_QUEUE_URL)

    records = _json_lines(web.log.read_text())  # every line, gunicorn's own included
    assert any(r["logger"] == "gunicorn.error" for r in records)
    for order_id in ids:
        queued = [
            r
            for r in records
            if r["message"]
            == f"recorded confirmation email for order {order_id} (its task in the outbox)"
        ]
        assert [r["order_id"] for r in queued] == [order_id]
    not_found = [r for r in records if "/no-such-page" in r["message"]]
    assert not_found and all("order_id" not in r for r in not_found)
