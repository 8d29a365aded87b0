"""A real worker: JSON logs with order and task ids; a metrics port with its children's counts."""

from __future__ import annotations

import http.client
import json

import pytest
from celery.exceptions import SoftTimeLimitExceeded
from prometheus_client.parser import text_string_to_metric_families

from notifications import metrics as notification_metrics
from notifications import sending as notification_sending
from notifications import ses
from orders import services
from orders.models import Order
from tests.factories import ProductFactory
from tests.pipeline import free_port, wait_for

pytestmark = [
    pytest.mark.worker,
    pytest.mark.subprocess,
    pytest.mark.django_db(transaction=True),
]

ADDRESS = services.ShippingAddress(
    name="Log Test", line1="1 Main St", city="Town", postal_code="1", country="US"
)
VERIFIED = "alice@example.com"  # verified in the emulator's SES (provisioning)
UNVERIFIED = "bob@example.com"  # refused by the sandbox rule


def _order(email: str) -> Order:
    if not Order.objects.exists():
        ProductFactory(sku="MUG", stock=1000)
    return services.order_place(
        customer_id=email,
        customer_email=email,
        shipping_address=ADDRESS,
        lines=[services.LineRequest(sku="MUG", quantity=1)],
    )


def _records(text: str) -> list[dict]:
    """Every line from the first JSON one on, parsed: anything else fails the test.

    (Before it, only what Python prints before logging is configured, e.g. Celery's warning
    about running as root.)
    """
    lines = text.splitlines()
    first = next(i for i, line in enumerate(lines) if line.startswith("{"))
    return [json.loads(line) for line in lines[first:] if line.strip()]


def test_worker_logs_are_json_and_carry_order_and_task_ids(workers):
    worker = workers(LOG_FORMAT="json", SES_SANDBOX="true")
    sent, refused = _order(VERIFIED), _order(UNVERIFIED)

    def ended(text: str) -> bool:
        # Celery's trace line about a task's end is written after the task's own last line.
        return (
            f"confirmation order={sent.pk} attempt=1 outcome=sent" in text
            and f"confirmation order={refused.pk} attempt=1 outcome=failed" in text
            and " succeeded in " in text
            and " raised unexpected" in text
        )

    wait_for(
        lambda: ended(worker.text()),
        timeout=30,
        what="one email sent and one attempt refused, and Celery's line about each end",
    )
    text = worker.text()
    records = _records(text)
    assert "[tasks]" not in text  # the banner is logged as JSON instead of printed
    for record in records:
        assert {"timestamp", "level", "logger", "message"} <= record.keys(), record
    assert any(r["message"].startswith("celery worker ") and "banner" in r for r in records)
    assert any(r["message"].endswith(" ready.") for r in records)

    def about(order: Order) -> list[dict]:
        return [r for r in records if r.get("order_id") == order.pk]

    for order, outcome in ((sent, "succeeded"), (refused, "raised unexpected")):
        mine = about(order)
        ours = [r for r in mine if r["message"].startswith(f"confirmation order={order.pk} ")]
        assert ours and all(r["logger"] == "notifications.tasks" for r in ours)
        task_id = ours[0]["task_id"]
        assert task_id
        # Celery's own line about the task's end, logged in the pool child, carries both.
        assert [r for r in mine if r["logger"] == "celery.app.trace" and outcome in r["message"]]
        assert all(r["task_id"] == task_id for r in mine)
        # The main process's "received" line has the task's id and the email's (from
        # Celery's own extra): the message names the email only, the order is read later.
        received = [r for r in records if r["message"].endswith(f"[{task_id}] received")]
        assert received and received[0]["email_id"] == order.emails.get().pk

    # Lines outside any task carry neither id.
    ready = next(r for r in records if r["message"].endswith(" ready."))
    assert "order_id" not in ready and "task_id" not in ready


def _scrape(port: int, source: str = "127.0.0.1") -> tuple[int, dict]:
    connection = http.client.HTTPConnection(
        "127.0.0.1", port, timeout=10, source_address=(source, 0)
    )
    try:
        connection.request("GET", "/metrics")
        response = connection.getresponse()
        body = response.read().decode()
    finally:
        connection.close()
    if response.status != 200:
        return response.status, {}
    return 200, {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(body)
        for sample in family.samples
    }


SENT = ("shop_confirmation_emails_sent_total", ())
REFUSED = ("shop_confirmation_attempts_failed_total", (("reason", "refused"),))


def test_worker_metrics_port_serves_what_its_pool_children_counted(workers, tmp_path):
    port = free_port()
    worker = workers(
        SES_SANDBOX="true",
        PROMETHEUS_MULTIPROC_DIR=str(tmp_path / "metrics"),
        WORKER_METRICS_PORT=str(port),
        METRICS_ALLOWED_IPS="127.0.0.1",
    )
    assert f"worker metrics on http://127.0.0.1:{port}/metrics" in worker.text()
    status, values = _scrape(port)
    assert status == 200
    assert values[SENT] == 0 and values[REFUSED] == 0
    # Only the queue pair's web scrape reads SQS: the worker's port has counters only.
    assert not [name for name, _ in values if name.startswith("shop_sqs_")]

    _order(VERIFIED)
    wait_for(lambda: _scrape(port)[1].get(SENT) == 1, timeout=30, what="sent counted")
    _order(UNVERIFIED)
    wait_for(lambda: _scrape(port)[1].get(REFUSED, 0) >= 1, timeout=30, what="refusal counted")
    assert _scrape(port)[1][SENT] == 1

    # Another loopback address is not in the allow-list.
    assert _scrape(port, source="127.0.0.2")[0] == 403


@pytest.mark.parametrize(
    ("cause", "reason"),
    [
        (ses.SendRefused("recipient not verified in the SES sandbox"), "refused"),
        (ses.SesUnavailable("SES unreachable"), "ses_error"),
        (SoftTimeLimitExceeded(), "time_limit"),
        (ValueError("template"), "other"),
    ],
)
def test_failure_reasons_are_few_and_named_after_the_cause(cause, reason):
    try:
        try:
            raise cause
        except Exception as exc:
            raise notification_sending.ConfirmationFailed(str(exc)) from exc
    except notification_sending.ConfirmationFailed as failed:
        assert notification_metrics.failure_reason(failed) == reason
