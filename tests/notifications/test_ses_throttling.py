"""SES throttling never dead-letters a deliverable email, and scaling out keeps the quota.

The SES in front of the workers is a proxy (``tests.aws_proxy``) that answers GetSendQuota
with a MaxSendRate of its choosing and ``Throttling`` (HTTP 400, as real SES) to any send
above that rate, so the workers meet SES's quota as production does. What is watched is
outside: what the proxy received and answered, the emulator's sent mail, the DLQ, each
email's history and the worker's metrics port.
"""

from __future__ import annotations

import http.client
import re
import uuid
from collections import Counter

import pytest
from django.conf import settings
from django.db import connection
from prometheus_client.parser import text_string_to_metric_families

from notifications.models import EmailEvent, OrderEmail
from orders import services
from orders.models import Order, Product
from tests.aws_proxy import AwsProxy
from tests.factories import ProductFactory
from tests.pipeline import DLQ_URL, free_port, queue_counts, sent_emails, wait_for

pytestmark = [
    pytest.mark.worker,
    pytest.mark.subprocess,
    pytest.mark.django_db(transaction=True),
]

ADDRESS = services.ShippingAddress(
    name="Busy SES", line1="1 Main St", city="Town", postal_code="1", country="US"
)
_SUBJECT = re.compile(r"Subject: Your order #(\d+)")


def _orders(prefix: str, count: int) -> list[Order]:
    if not Product.objects.filter(sku="MUG").exists():
        ProductFactory(sku="MUG", stock=10_000)
    return [
        services.order_place(
            customer_id=f"{prefix}{n}",
            customer_email=f"{prefix}{n}@example.com",
            shipping_address=ADDRESS,
            lines=[services.LineRequest(sku="MUG", quantity=1)],
        )
        for n in range(count)
    ]


def _all_sent(orders: list[Order]) -> bool:
    ids = [order.pk for order in orders]
    return OrderEmail.objects.filter(order_id__in=ids, status="sent").count() == len(ids)


def _emails_per_order(prefix: str) -> Counter[int]:
    counts: Counter[int] = Counter()
    for message in sent_emails():
        raw = message.get("raw_data", "")
        if f"To: {prefix}" in raw:
            counts[int(_SUBJECT.search(raw).group(1))] += 1
    return counts


def _most_in_a_second(times: list[float]) -> int:
    """The most events in any one-second window (sliding)."""
    times = sorted(times)
    most, start = 0, 0
    for end, at in enumerate(times):
        while times[start] <= at - 1.0:
            start += 1
        most = max(most, end - start + 1)
    return most


def _kinds(order: Order) -> list[tuple[str, int | None]]:
    return list(
        EmailEvent.objects.filter(notification__order=order)
        .exclude(kind="queued")
        .order_by("created_at", "id")
        .values_list("kind", "attempt")
    )


def test_a_throttling_answer_is_retried_in_the_same_attempt_after_the_next_slot(workers):
    prefix = f"retry-{uuid.uuid4().hex[:6]}-"
    with AwsProxy(settings.AWS_SES_ENDPOINT_URL) as proxy:
        proxy.throttle_next(2)
        worker = workers(SES_SANDBOX="false", AWS_ENDPOINT_URL_SES=proxy.url)
        [order] = _orders(prefix, 1)
        wait_for(lambda: _all_sent([order]), timeout=30, what="email sent")
        sends = proxy.sends()

    assert [send.outcome for send in sends] == ["throttled", "throttled", "forwarded"]
    assert f"confirmation order={order.pk} attempt=1 outcome=sent" in worker.text()
    assert _kinds(order) == [("sent", 1)]  # one attempt, one receive of the message
    assert "after 2 Throttling answer(s)" in EmailEvent.objects.get(kind="sent").detail
    assert _emails_per_order(prefix) == {order.pk: 1}


@pytest.mark.postgres
@pytest.mark.skipif(
    connection.vendor != "postgresql",
    reason="the fleet's schedule lives in PostgreSQL (SQLite: per process, see below)",
)
# Received messages wait seconds for their slots while three other pool children could take
# them: longer than the tests' 2 s visibility timeout.
@pytest.mark.visibility_timeout(10)
def test_four_worker_processes_keep_the_accounts_rate_and_dead_letter_nothing(workers):
    """Two workers of two processes each, on two "machines" (their own main processes),
    against an SES whose quota is RATE sends/s: the burst waits for its slots."""
    rate, count = 4, 24
    prefix = f"burst-{uuid.uuid4().hex[:6]}-"
    with AwsProxy(settings.AWS_SES_ENDPOINT_URL) as proxy:
        proxy.quota(rate)
        proxy.throttle(rate)
        env = {
            "SES_SANDBOX": "false",
            "AWS_ENDPOINT_URL_SES": proxy.url,
            "SES_MAX_SEND_RATE": "",  # the default: the account's MaxSendRate (GetSendQuota)
        }
        first = workers("first", concurrency=2, **env)
        second = workers("second", concurrency=2, **env)
        orders = _orders(prefix, count)
        wait_for(lambda: _all_sent(orders), timeout=120, what=f"{count} emails sent")
        sends = proxy.sends()

    log = first.text() + second.text()
    assert log.count("for the whole fleet, one schedule in PostgreSQL") == 2
    assert "outcome=failed" not in log and "outcome=throttled" not in log
    assert queue_counts(DLQ_URL) == (0, 0)
    assert _emails_per_order(prefix) == {order.pk: 1 for order in orders}
    accepted = [send.at for send in sends if send.outcome == "forwarded"]
    attempts = [send.at for send in sends]
    throttled = len(attempts) - len(accepted)
    assert len(accepted) == count
    # Every attempt, retries too, took a slot of one schedule at RATE/s: RATE a second on
    # average, and in any one second RATE give or take the processes' jitter on the way
    # (each slot's send leaves a different, busy process).
    assert (len(attempts) - 1) / (attempts[-1] - attempts[0]) <= rate * 1.1
    assert _most_in_a_second(attempts) <= rate + 2, attempts
    # SES said no to the few that arrived early (four processes pacing alone would send at
    # four times the rate: three sends in four refused).
    assert throttled <= count // 2, throttled


def _scrape(port: int) -> dict:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request("GET", "/metrics")
        body = connection.getresponse().read().decode()
    finally:
        connection.close()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(body)
        for sample in family.samples
    }


def test_no_slot_before_the_time_limit_returns_the_message_shortly_as_throttled(workers, tmp_path):
    """One send every 8 s for the fleet, and an attempt may wait 3 s (6 s soft time limit in
    the tests): of two orders at once, the second finds no slot in time (one process, so
    on SQLite's per-process schedule too) unless it reaches the worker more than 5 s after
    the first, which a loaded machine does not reach (at one send every 4 s, it did). It is
    not a failure: recorded ``throttled``, its message back on the queue within seconds (not
    after the 20 s backoff a failure gets here), and sent on the next receive."""
    prefix = f"slow-{uuid.uuid4().hex[:6]}-"
    port = free_port()
    worker = workers(
        SES_SANDBOX="false",
        SES_MAX_SEND_RATE="0.125",
        CONFIRMATION_RETRY_DELAYS="20,20,20",
        PROMETHEUS_MULTIPROC_DIR=str(tmp_path / "metrics"),
        WORKER_METRICS_PORT=str(port),
        METRICS_ALLOWED_IPS="127.0.0.1",
    )
    orders = _orders(prefix, 2)
    wait_for(lambda: _all_sent(orders), timeout=60, what="both emails sent")

    histories = sorted((_kinds(order) for order in orders), key=len)
    assert histories == [[("sent", 1)], [("throttled", 1), ("sent", 2)]], histories
    late = next(order for order in orders if len(_kinds(order)) == 2)
    throttled, sent = EmailEvent.objects.filter(notification__order=late).exclude(kind="queued")
    assert "no SES send slot within the attempt's time limit" in throttled.detail
    assert (sent.created_at - throttled.created_at).total_seconds() < 15  # not the 20 s backoff
    assert OrderEmail.objects.get(order=late).attempts == 1  # one send, no failure
    log = worker.text()
    assert f"confirmation order={late.pk} attempt=1 outcome=throttled" in log
    assert "outcome=failed" not in log and "raised unexpected" not in log
    assert _emails_per_order(prefix) == {order.pk: 1 for order in orders}
    values = _scrape(port)
    assert values[("shop_confirmation_attempts_throttled_total", ())] == 1
    failed = [v for (n, _), v in values.items() if n == "shop_confirmation_attempts_failed_total"]
    assert failed and sum(failed) == 0


def test_without_a_shared_store_the_worker_warns_that_its_rate_is_per_process(workers, tmp_path):
    worker = workers(DATABASE_URL=f"sqlite:///{tmp_path / 'alone.sqlite3'}")
    assert re.search(
        r"WARNING \S+ SES send rate: 100/s \(SES_MAX_SEND_RATE\) PER PROCESS", worker.text()
    )
