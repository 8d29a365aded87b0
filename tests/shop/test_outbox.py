"""The outbox: rows written with the change, and the relay's publishing (in this process).

The relay process itself (LISTEN/NOTIFY, SIGTERM, SIGKILL, two relays racing) is in
tests/shop/test_outbox_relay.py.
"""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from notifications.models import OrderEmail
from orders import services
from orders.models import Order
from shop import outbox
from shop.aws.sqs import message_decode
from shop.models import OutboxKind, OutboxMessage
from shop.outbox.relay import outbox_claim
from tests.aws_proxy import AwsProxy
from tests.factories import ProductFactory, StaffFactory
from tests.helpers import order_body, scrape
from tests.outbox import relay_once
from tests.pipeline import drain, free_port, sqs, take_all

pytestmark = pytest.mark.django_db


def _order_of(body: str) -> int:
    """The order an email task's message is for (the message names its email only)."""
    return OrderEmail.objects.get(pk=message_decode(body).email_id).order_id


def _place(sku: str = "MUG", quantity: int = 1) -> Order:
    return services.order_place(
        customer_id="sub-1",
        customer_email="c@example.com",
        shipping_address=services.ShippingAddress(
            name="A", line1="1", city="T", postal_code="1", country="US"
        ),
        lines=[services.LineRequest(sku=sku, quantity=quantity)],
    )


def _bodies(queue_url: str) -> list[str]:
    return [message["Body"] for message in take_all(queue_url)]


@pytest.fixture
def proxy(settings, queues):
    """SQS and SNS of this process through a faulty proxy (tests/aws_proxy.py)."""
    with AwsProxy(settings.AWS_ENDPOINT_URL) as proxy:
        settings.AWS_ENDPOINT_URL = proxy.url
        yield proxy


# --- written with the change --------------------------------------------------------------


def test_an_order_writes_its_confirmation_task_in_its_transaction(queues):
    ProductFactory(sku="MUG", stock=5)
    order = _place()
    [row] = OutboxMessage.objects.all()
    assert row.kind == OutboxKind.SQS_TASK
    assert row.destination == settings.ORDER_QUEUE_URL
    assert row.payload["task"] == settings.EMAIL_TASK_NAME
    assert row.payload["kwargs"] == {"email_id": order.emails.get().pk}
    assert row.group_id == str(order.pk)
    # Nothing was published: the queue is empty, the email pending and not yet queued.
    assert _bodies(queues.url) == []
    email = OrderEmail.objects.get(order=order)
    assert (email.status, email.queued_at, email.events.count()) == ("pending", None, 0)


def test_a_rolled_back_order_leaves_no_row(queues):
    ProductFactory(sku="MUG", stock=5)
    with pytest.raises(RuntimeError), transaction.atomic():
        _place()
        assert OutboxMessage.objects.count() == 1
        raise RuntimeError("the surrounding transaction fails after the order")
    assert OutboxMessage.objects.count() == 0
    assert Order.objects.count() == 0
    with pytest.raises(services.InsufficientStock):
        _place(quantity=9)  # refused: nothing written at all
    assert OutboxMessage.objects.count() == 0


def test_the_order_api_makes_no_aws_call(alice, settings, proxy, queues):
    """Through the API, with every AWS call of this process counted by the proxy."""
    settings.ORDER_EVENTS_TOPIC_ARN = "arn:aws:sns:us-east-1:123456789012:never-called"
    ProductFactory(sku="MUG", stock=5)
    response = alice.post("/api/orders/", order_body(("MUG", 2)), format="json")
    assert response.status_code == 201, response.json()
    assert proxy.calls() == {}
    assert sorted(OutboxMessage.objects.values_list("kind", flat=True)) == [
        "sns_event",
        "sqs_task",
    ]


# --- the relay ----------------------------------------------------------------------------


def test_the_relay_publishes_what_the_worker_consumes_and_marks_the_email_queued(queues):
    ProductFactory(sku="MUG", stock=5)
    order = _place()
    counts = relay_once()
    assert (counts.published, counts.failed, counts.calls) == (1, 0, 1)
    [body] = _bodies(queues.url)
    decoded = message_decode(body)
    assert (decoded.task, decoded.email_id, decoded.problem) == (
        settings.EMAIL_TASK_NAME,
        order.emails.get().pk,
        "",
    )
    assert OutboxMessage.objects.count() == 0  # published rows are deleted
    email = OrderEmail.objects.get(order=order)
    assert email.status == "pending" and email.queued_at is not None
    assert [e.kind for e in email.events.all()] == ["queued"]
    # Nothing left: a second pass publishes nothing.
    assert relay_once().published == 0
    assert _bodies(queues.url) == []


def test_pending_rows_are_published_in_batches_of_ten(queues, proxy):
    ProductFactory(sku="MUG", stock=100)
    orders = [_place() for _ in range(23)]
    counts = relay_once()
    assert (counts.published, counts.failed) == (23, 0)
    assert proxy.actions("sqs") == {"SendMessageBatch": 3}
    ids = sorted(_order_of(b) for b in _bodies(queues.url))
    assert ids == sorted(o.pk for o in orders)


def test_sqs_down_keeps_the_rows_and_publishes_them_once_back(queues, proxy, settings):
    settings.OUTBOX_RETRY_BASE_SECONDS = 30
    ProductFactory(sku="MUG", stock=5)
    orders = [_place() for _ in range(3)]
    proxy.down("sqs")
    counts = relay_once()
    assert (counts.published, counts.failed, counts.calls) == (0, 3, 1)
    rows = list(OutboxMessage.objects.all())
    assert len(rows) == 3
    for row in rows:
        assert row.attempts == 1 and row.last_error and row.claimed_until is None
        assert row.available_at > timezone.now() + timedelta(seconds=20)  # backing off
    assert relay_once().claimed == 0  # not due yet
    proxy.up("sqs")
    OutboxMessage.objects.update(available_at=None)  # the back-off is over
    before = proxy.actions("sqs")["SendMessageBatch"]
    assert relay_once().published == 3
    assert proxy.actions("sqs")["SendMessageBatch"] - before == 1  # batched again, not alone
    assert sorted(_order_of(b) for b in _bodies(queues.url)) == [o.pk for o in orders]
    assert OutboxMessage.objects.count() == 0


def test_an_entry_the_batch_refuses_is_retried_alone_with_back_off(queues, proxy, settings):
    settings.OUTBOX_RETRY_BASE_SECONDS = 0.5
    ProductFactory(sku="MUG", stock=10)
    orders = [_place() for _ in range(5)]
    victim = OutboxMessage.objects.order_by("id")[2]
    proxy.refuse_entries(lambda entry: entry["Id"] == str(victim.pk))
    counts = relay_once()
    assert (counts.published, counts.failed, counts.calls) == (4, 1, 1)
    [left] = OutboxMessage.objects.all()
    assert left.pk == victim.pk
    assert left.attempts == 1
    assert left.last_error.startswith("refused: InternalError")
    assert left.available_at > timezone.now()
    # The others went out in that one call, and did not wait for it.
    assert sorted(_order_of(b) for b in _bodies(queues.url)) == sorted(
        o.pk for i, o in enumerate(orders) if i != 2
    )
    # Due again: it goes alone, in a call of its own.
    ProductFactory(sku="TEA", stock=10)
    newer = [_place(sku="TEA") for _ in range(3)]
    OutboxMessage.objects.filter(pk=victim.pk).update(available_at=None)
    before = proxy.actions("sqs")["SendMessageBatch"]
    counts = relay_once()
    assert (counts.published, counts.failed) == (4, 0)
    assert proxy.actions("sqs")["SendMessageBatch"] - before == 2  # the retried one alone
    assert sorted(_order_of(b) for b in _bodies(queues.url)) == sorted(
        [orders[2].pk, *(o.pk for o in newer)]
    )


def test_back_off_doubles_up_to_the_maximum():
    delays = [
        outbox.retry_delay(attempts=n, base=1, maximum=60).total_seconds() for n in range(1, 9)
    ]
    assert delays == [1, 2, 4, 8, 16, 32, 60, 60]


def test_a_claimed_row_is_not_claimed_again_until_its_lease_ends(queues, settings):
    ProductFactory(sku="MUG", stock=5)
    _place()
    [claimed] = outbox_claim()
    assert claimed.claimed_until > timezone.now()
    assert outbox_claim() == []  # leased: another relay skips it
    OutboxMessage.objects.update(claimed_until=timezone.now() - timedelta(seconds=1))
    assert [row.pk for row in outbox_claim()] == [claimed.pk]  # the relay died: taken again


def test_a_resend_writes_a_row_in_its_transaction(queues):
    from notifications import services as notification_services

    ProductFactory(sku="MUG", stock=5)
    order = _place()
    relay_once()
    drain(queues.url)
    result = notification_services.confirmation_resend(order_ids=[order.pk, 999999])
    assert result.queued == [order.pk] and result.missing == [999999]
    [row] = OutboxMessage.objects.all()
    assert row.payload["kwargs"] == {"email_id": order.emails.get().pk}
    relay_once()
    assert [_order_of(b) for b in _bodies(queues.url)] == [order.pk]
    kinds = [e.kind for e in OrderEmail.objects.get(order=order).events.all()]
    assert kinds == ["queued", "resend", "queued"]


def test_an_event_row_is_published_with_publish_batch(queues, proxy, settings):
    from shop import aws

    topic = aws.client("sns").create_topic(Name="outbox-test-events")["TopicArn"]
    queue_url = sqs().create_queue(QueueName="outbox-test-events-sub")["QueueUrl"]
    try:
        arn = sqs().get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])[
            "Attributes"
        ]["QueueArn"]
        aws.client("sns").subscribe(
            TopicArn=topic,
            Protocol="sqs",
            Endpoint=arn,
            Attributes={"RawMessageDelivery": "true"},
        )
        settings.ORDER_EVENTS_TOPIC_ARN = topic
        ProductFactory(sku="MUG", stock=50)
        orders = [_place() for _ in range(12)]
        counts = relay_once()
        assert counts.published == 24 and counts.by_kind == {"sns_event": 12, "sqs_task": 12}
        assert proxy.actions("sns")["PublishBatch"] == 2
        events = [json.loads(b) for b in _bodies(queue_url)]
        assert sorted(e["order_id"] for e in events) == sorted(o.pk for o in orders)
        assert {e["event_type"] for e in events} == {"OrderPlaced"}
    finally:
        aws.client("sns").delete_topic(TopicArn=topic)
        sqs().delete_queue(QueueUrl=queue_url)


def test_an_unknown_port_is_a_failed_attempt_not_a_crash(queues, settings):
    ProductFactory(sku="MUG", stock=5)
    _place()
    settings.AWS_ENDPOINT_URL = f"http://127.0.0.1:{free_port()}"
    counts = relay_once()
    assert (counts.published, counts.failed) == (0, 1)
    assert OutboxMessage.objects.get().attempts == 1


# --- seeing it ----------------------------------------------------------------------------


def test_metrics_show_the_outbox_pending_oldest_and_failing(client, queues, proxy, settings):
    def gauges() -> tuple[float, float, float]:
        seen = scrape(client, REMOTE_ADDR="127.0.0.1")
        return (
            seen[("shop_outbox_pending", ())],
            seen[("shop_outbox_oldest_age_seconds", ())],
            seen[("shop_outbox_failing", ())],
        )

    assert gauges() == (0, 0, 0)
    ProductFactory(sku="MUG", stock=5)
    _place()
    _place()
    OutboxMessage.objects.update(created_at=timezone.now() - timedelta(seconds=90))
    pending, oldest, failing = gauges()
    assert (pending, failing) == (2, 0) and 90 <= oldest < 120
    proxy.down("sqs")
    relay_once()
    assert gauges()[::2] == (2, 2)  # both failing now
    proxy.up("sqs")
    OutboxMessage.objects.update(available_at=None)
    relay_once()
    assert gauges() == (0, 0, 0)


def test_the_operations_box_shows_the_outbox_and_its_failing_rows(client, queues, proxy):
    from django.contrib.auth.models import Permission

    user = StaffFactory(username="ops-viewer")
    user.user_permissions.add(Permission.objects.get(codename="view_orderemail"))
    client.force_login(user)
    ProductFactory(sku="MUG", stock=5)
    _place()
    html = client.get("/admin/").content.decode()
    assert '<tr id="outbox">' in html and "1 pending" in html and "failing" not in html
    proxy.refuse_entries(lambda entry: True)
    relay_once()
    html = client.get("/admin/").content.decode()
    assert "1 pending" in html and "1 failing" in html
    row = OutboxMessage.objects.get()
    assert f"#{row.pk} sqs_task after 1 attempt(s)" in html
    assert "InternalError: refused by the test&#x27;s proxy" in html  # escaped, as all text


def test_on_a_fifo_queue_the_order_is_the_group_and_the_row_the_deduplication_id(
    settings,
    fifo_queues,
):
    from shop.outbox.relay import outbox_publish

    url, _ = fifo_queues
    settings.ORDER_QUEUE_URL = url
    ProductFactory(sku="MUG", stock=5)
    order = _place()
    [row] = OutboxMessage.objects.all()
    assert row.destination == url
    assert relay_once().published == 1
    # A relay that crashed after SQS took the batch publishes the same row again: SQS (here
    # the emulator, while the first copy is still queued) drops it as a duplicate.
    assert outbox_publish(rows=[row]).published == 1
    messages = sqs().receive_message(
        QueueUrl=url,
        MaxNumberOfMessages=10,
        WaitTimeSeconds=0,
        VisibilityTimeout=30,
        MessageSystemAttributeNames=["All"],
    )["Messages"]
    [message] = messages
    assert message["Attributes"]["MessageGroupId"] == str(order.pk)
    assert message["Attributes"]["MessageDeduplicationId"] == str(row.pk)
    assert _order_of(message["Body"]) == order.pk
