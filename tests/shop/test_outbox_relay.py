"""The relay as its own process (``manage.py outbox_relay``): woken by commits, stopped by
SIGTERM after its batch, SIGKILLed mid-batch and restarted, two of them racing.

Faults come from outside: an SQS proxy that withholds SendMessageBatch's answer after SQS
took the batch (tests/aws_proxy.py), signals to the real process. What is checked is
outside too: the queue's messages, the outbox rows, SES's sent mail, the logs.
"""

from __future__ import annotations

import re
import uuid
from collections import Counter

import pytest
from django.conf import settings
from django.db import connection  # noqa: F401 (the skipif condition reads it)

from notifications.models import OrderEmail
from orders import services
from orders.models import Order
from shop import outbox
from shop.aws.sqs import message_decode
from shop.models import OutboxMessage
from tests.aws_proxy import AwsProxy
from tests.factories import ProductFactory
from tests.outbox import Relay
from tests.pipeline import Worker, kill_all, queue_counts, subjects_by_order, take_all, wait_for

pytestmark = [pytest.mark.subprocess, pytest.mark.django_db(transaction=True)]

on_postgresql = pytest.mark.skipif(
    "connection.vendor != 'postgresql'", reason="several relays and LISTEN/NOTIFY: PostgreSQL"
)


def _place(n: int = 1, email: str = "alice@example.com") -> list[Order]:
    if not Order.objects.exists():
        ProductFactory(sku="MUG", stock=10_000)
    return [
        services.order_place(
            customer_id=email,
            customer_email=email,
            shipping_address=services.ShippingAddress(
                name="A", line1="1", city="T", postal_code="1", country="US"
            ),
            lines=[services.LineRequest(sku="MUG", quantity=1)],
        )
        for _ in range(n)
    ]


def _queued_order_ids(queue_url: str) -> list[int]:
    """Every message now on the queue (taken, not deleted), as order ids."""
    return [_order_of(message_decode(m["Body"])) for m in take_all(queue_url, hold=60)]


def _order_of(message) -> int | None:
    """An email task's order (its message names the email); a first-version one's own."""
    if message.email_id is not None:
        return OrderEmail.objects.get(pk=message.email_id).order_id
    return message.order_id


@pytest.fixture
def relays(tmp_path):
    started: list[Relay] = []

    def start(name: str = "relay", **env: str) -> Relay:
        relay = Relay(tmp_path / f"{name}.log", env=env).start()
        started.append(relay)
        return relay

    yield start
    kill_all(started)


@on_postgresql
def test_a_commit_wakes_the_relay_at_once_through_listen_notify(queues, relays):
    # Without a notification it would look only every 60 s: the test would time out.
    relay = relays(OUTBOX_WAKE_SECONDS="60")
    assert "LISTEN shop_outbox" in relay.text()
    [order] = _place()
    wait_for(lambda: not OutboxMessage.objects.exists(), timeout=20, what="row published")
    assert _queued_order_ids(queues.url) == [order.pk]
    assert OrderEmail.objects.get(order=order).queued_at is not None


def test_sigterm_finishes_the_batch_in_hand(queues, relays):
    with AwsProxy(settings.AWS_ENDPOINT_URL) as proxy:
        proxy.withhold("SendMessageBatch")
        relay = relays(AWS_ENDPOINT_URL=proxy.url)
        orders = _place(3)
        wait_for(proxy.withheld.is_set, timeout=30, what="a batch sent, its answer held")
        in_hand = OutboxMessage.objects.exclude(claimed_until=None).count()
        assert in_hand >= 1
        relay.terminate()
        wait_for(lambda: "finishing the batch in hand" in relay.text(), timeout=10, what="TERM")
        assert relay.process.poll() is None  # still there: its batch is not finished
        proxy.release()
        assert relay.process.wait(30) == 0
    # The batch it had was published and its rows deleted; what it had not claimed waits.
    assert OutboxMessage.objects.count() == len(orders) - in_hand
    assert sorted(_queued_order_ids(queues.url)) == sorted(o.pk for o in orders)[:in_hand]
    assert "outbox relay stopped" in relay.text()


@pytest.mark.worker
def test_a_relay_killed_mid_batch_and_restarted_loses_no_email_and_sends_none_twice(
    queues, relays, tmp_path
):
    """SIGKILL after SQS took the batch but before the relay heard so: the rows are still
    there, and the restarted relay publishes them again once their lease ends. Every order
    gets its email once; the duplicates are counted (each is a skipped delivery)."""
    lease = {"OUTBOX_LEASE_SECONDS": "2"}
    customer = f"relay-{uuid.uuid4().hex[:8]}@example.com"  # SES's store outlives the test
    with AwsProxy(settings.AWS_ENDPOINT_URL) as proxy:
        proxy.withhold("SendMessageBatch")
        first = relays("first", AWS_ENDPOINT_URL=proxy.url, **lease)
        orders = _place(5, email=customer)
        wait_for(proxy.withheld.is_set, timeout=30, what="a batch sent, its answer held")
        first.kill()  # SIGKILL, mid-batch
        proxy.release()
    in_sqs = sum(queue_counts(queues.url))
    assert in_sqs >= 1  # SQS took what the relay sent...
    assert OutboxMessage.objects.count() == 5  # ...and no row was deleted
    worker = Worker(tmp_path / "worker.log", env={"SES_SANDBOX": "false"}).start()
    try:
        relays("restarted", **lease)
        wait_for(
            lambda: OrderEmail.objects.filter(status="sent").count() == 5,
            timeout=90,
            what="every order's email sent",
        )
        wait_for(lambda: not OutboxMessage.objects.exists(), timeout=30, what="outbox empty")
        skipped = wait_for(
            lambda: len(re.findall(r"outcome=skipped", worker.text())) >= in_sqs and in_sqs,
            timeout=60,
            what="the duplicates delivered and skipped",
        )
    finally:
        kill_all([worker])
    # No order without its email, none twice; the duplicates the crash made are counted.
    assert subjects_by_order(customer) == {o.pk: 1 for o in orders}
    duplicates = len(re.findall(r"outcome=skipped", worker.text()))
    assert duplicates == skipped == in_sqs, worker.text()[-2000:]


@on_postgresql
def test_two_relays_racing_publish_each_row_once(queues, relays):
    first = relays("first")
    second = relays("second")
    written = 0
    for start in range(0, 300, 3):  # many small commits: both relays wake on each
        for order_id in range(start + 1, start + 4):
            outbox.outbox_task_add(
                queue_url=settings.ORDER_QUEUE_URL,
                task_name=settings.CONFIRMATION_TASK_NAME,
                kwargs={"order_id": order_id},
                group_id=str(order_id),
            )
            written += 1
    wait_for(lambda: not OutboxMessage.objects.exists(), timeout=90, what="outbox empty")
    ids = _queued_order_ids(queues.url)
    assert Counter(ids) == Counter(range(1, written + 1))  # each exactly once
    published = [
        sum(int(n) for n in re.findall(r"outbox: (\d+) published", relay.text()))
        for relay in (first, second)
    ]
    assert sum(published) == written, published
