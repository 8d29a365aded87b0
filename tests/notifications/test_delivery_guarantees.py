"""At-least-once delivery, duplicates and shutdowns: every order gets exactly one email."""

from __future__ import annotations

import pytest
from django.conf import settings
from django.db import connection

from notifications.models import OrderEmail
from orders import services
from orders.models import Order
from shop.aws import sqs
from tests.factories import ProductFactory
from tests.outbox import relay_once
from tests.pipeline import lock_waiters, queue_counts, row_locked, subjects_by_order, wait_for

pytestmark = [
    pytest.mark.worker,
    pytest.mark.subprocess,
    pytest.mark.django_db(transaction=True),
]

ADDRESS = services.ShippingAddress(
    name="Dup Test", line1="1 Main St", city="Town", postal_code="1", country="US"
)


def _order(email: str) -> Order:
    if not Order.objects.exists():
        ProductFactory(sku="MUG", stock=1000)
    return services.order_place(
        customer_id=email,
        customer_email=email,
        shipping_address=ADDRESS,
        lines=[services.LineRequest(sku="MUG", quantity=1)],
    )


def _all_sent(orders) -> bool:
    ids = [o.pk for o in orders]
    return OrderEmail.objects.filter(order_id__in=ids, status="sent").count() == len(ids)


def test_the_same_task_delivered_twice_sends_once(workers):
    worker = workers(SES_SANDBOX="false")
    order = _order("twice@example.com")  # published once on commit...
    sqs.confirmation_enqueue(order_id=order.pk)  # ...and once more, as SQS may redeliver

    wait_for(
        lambda: worker.text().count(f"confirmation order={order.pk} ") >= 2,
        timeout=30,
        what="both deliveries handled",
    )
    assert subjects_by_order("twice@") == {order.pk: 1}
    assert f"confirmation order={order.pk} attempt=1 outcome=skipped" in worker.text()
    assert OrderEmail.objects.get(order=order).attempts == 1
    wait_for(
        lambda: queue_counts(settings.ORDER_QUEUE_URL) == (0, 0), timeout=15, what="queue empty"
    )


# Every receive is counted: a message held past the visibility timeout by a slow send would
# reach the other worker once more.
@pytest.mark.visibility_timeout(10)
def test_two_workers_racing_on_duplicated_messages_send_one_email_per_order(workers):
    first = workers("first", SES_SANDBOX="false")
    second = workers("second", SES_SANDBOX="false")
    orders = [_order(f"race{n}@example.com") for n in range(8)]
    for _ in range(2):  # every order is on the queue three times in all
        for order in orders:
            sqs.confirmation_enqueue(order_id=order.pk)

    wait_for(lambda: _all_sent(orders), timeout=90, what="every order sent")
    wait_for(
        lambda: queue_counts(settings.ORDER_QUEUE_URL) == (0, 0),
        timeout=60,
        what="all duplicates consumed",
    )
    assert subjects_by_order("race") == {order.pk: 1 for order in orders}
    handled = first.text().count("outcome=") + second.text().count("outcome=")
    assert handled == 3 * len(orders)
    assert "outcome=sent" in first.text() or "outcome=sent" in second.text()


@pytest.mark.visibility_timeout(10)  # the task holds its message while it waits for the lock
def test_sigterm_lets_the_running_task_finish(workers):
    ProductFactory(sku="MUG", stock=10)
    order = services.order_place(
        customer_id="term",
        customer_email="term@example.com",
        shipping_address=ADDRESS,
        lines=[services.LineRequest(sku="MUG", quantity=1)],
    )
    # Published here, before the lock (on SQLite the lock is the whole database's, which a
    # relay's claim would wait for), and before any worker runs: none can send it unlocked.
    assert relay_once().published == 1
    with row_locked(order.pk) as holder:
        worker = workers(SES_SANDBOX="false")
        wait_for(
            lambda: "send_order_confirmation" in worker.text() and "received" in worker.text(),
            timeout=30,
            what="task received",
        )
        if connection.vendor == "postgresql":
            # Running, not only received: a task still on its way to the pool child when the
            # warm shutdown starts may finish unacknowledged, and kombu then puts a copy back
            # on the queue (celery/celery#3802). SQLite shows no lock waits.
            wait_for(
                lambda: lock_waiters(holder),
                timeout=30,
                what="the task waiting for the record's lock",
            )
        worker.terminate()  # warm shutdown while the task waits for the record's lock
    assert worker.process.wait(60) == 0
    assert OrderEmail.objects.get(order=order).status == "sent"
    assert subjects_by_order("term@") == {order.pk: 1}
    assert sum(queue_counts(settings.ORDER_QUEUE_URL)) == 0, worker.text()[-3000:]
