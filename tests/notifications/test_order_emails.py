"""Every email of an order goes through one pipeline: confirmation, shipped, cancelled.

Shipping or cancelling writes the email's record, its task (the email's id only) and the
order's event in the outbox, in the transaction that moves the order; a refused move writes
nothing. A real relay and real workers then send them through the emulator's SES, with the
same retries, DLQ and redrive as the confirmation. The first version's confirmation task
(an order id) still runs: messages already queued when the shop is upgraded are sent.
"""

from __future__ import annotations

import email as email_lib
import json
import uuid
from email import policy

import pytest
from django.conf import settings

from notifications import dead_letters
from notifications.models import EmailEvent, EmailEventKind, EmailKind, EmailStatus, OrderEmail
from orders import actions, lifecycle
from orders import services as order_services
from orders.models import Order, OrderStatus
from shop import aws, outbox
from shop.aws import provisioning
from shop.aws.sqs import confirmation_enqueue
from shop.models import OutboxKind, OutboxMessage
from tests.factories import ProductFactory
from tests.helpers import auth
from tests.outbox import relay_once
from tests.pipeline import DLQ_URL, drain, queue_counts, sent_emails, wait_for

ADDRESS = order_services.ShippingAddress(
    name="Sam O'Shipper", line1="1 Main St", city="Springfield", postal_code="1", country="US"
)


def _order(email: str) -> Order:
    product = ProductFactory(stock=10)
    return order_services.order_place(
        customer_id=f"c-{uuid.uuid4().hex[:8]}",
        customer_email=email,
        shipping_address=ADDRESS,
        lines=[order_services.LineRequest(sku=product.sku, quantity=2)],
    )


def _confirmed(email: str) -> Order:
    """An order whose confirmation went out (set up directly: its task is not published)."""
    order = _order(email)
    OutboxMessage.objects.all().delete()
    OrderEmail.objects.filter(order=order).update(status=EmailStatus.SENT)
    Order.objects.filter(pk=order.pk).update(status=OrderStatus.CONFIRMED)
    return Order.objects.get(pk=order.pk)


def _tasks() -> list[dict]:
    return [r.payload for r in OutboxMessage.objects.filter(kind=OutboxKind.SQS_TASK)]


def _events() -> list[dict]:
    return [r.payload for r in OutboxMessage.objects.filter(kind=OutboxKind.SNS_EVENT)]


@pytest.fixture
def topic(settings):
    arn = aws.client("sns").create_topic(Name=f"order-events-{uuid.uuid4().hex[:8]}")["TopicArn"]
    settings.ORDER_EVENTS_TOPIC_ARN = arn
    yield arn
    aws.client("sns").delete_topic(TopicArn=arn)


# --- in the transaction, through the outbox -------------------------------------------------


@pytest.mark.django_db
def test_shipping_writes_the_email_its_task_and_order_shipped_in_one_transaction(topic):
    order = _confirmed("sam@example.com")
    lifecycle.order_ship(
        order_id=order.pk,
        actor="staffer",
        tracking=lifecycle.Tracking(carrier="DHL", number="JD1", url="https://dhl.example/JD1"),
    )
    email = OrderEmail.objects.get(order=order, kind=EmailKind.SHIPPED)
    assert email.status == EmailStatus.PENDING
    assert _tasks() == [
        {
            "task": settings.EMAIL_TASK_NAME,
            "args": [],
            "kwargs": {"email_id": email.pk},  # the email's id only
            "task_id": _tasks()[0]["task_id"],
        }
    ]
    [event] = _events()
    message = event["message"]
    assert event["attributes"] == {"event_type": "OrderShipped"}
    assert event["deduplication_id"] == message["event_id"]
    uuid.UUID(message["event_id"])
    assert {k: v for k, v in message.items() if k not in ("event_id", "shipped_at")} == {
        "event_type": "OrderShipped",
        "event_version": 1,
        "order_id": order.pk,
        "customer_id": order.customer_id,
        "carrier": "DHL",
        "tracking_number": "JD1",
        "tracking_url": "https://dhl.example/JD1",
    }
    assert message["shipped_at"].endswith("Z")
    assert "sam@example.com" not in json.dumps(message)  # no personal data in events


@pytest.mark.django_db
def test_cancelling_writes_the_email_and_order_cancelled_with_the_units_returned(topic):
    order = _confirmed("sam@example.com")
    lifecycle.order_cancel(order_id=order.pk, actor="staffer", note="asked")
    email = OrderEmail.objects.get(order=order, kind=EmailKind.CANCELLED)
    assert [t["kwargs"] for t in _tasks()] == [{"email_id": email.pk}]
    [event] = _events()
    message = event["message"]
    assert message["event_type"] == "OrderCancelled"
    assert message["lines"] == [{"sku": order.lines.get().sku, "quantity": 2}]
    assert (message["order_id"], message["total"], message["currency"]) == (
        order.pk,
        str(order.total),
        order.currency,
    )


@pytest.mark.django_db
def test_a_refused_move_writes_no_email_no_task_and_no_event(topic):
    shipped = _confirmed("sam@example.com")
    lifecycle.order_ship(order_id=shipped.pk, actor="staffer")
    OutboxMessage.objects.all().delete()
    with pytest.raises(actions.TransitionRefused):
        lifecycle.order_cancel(order_id=shipped.pk, actor="staffer")
    placed = _order("sam@example.com")
    OutboxMessage.objects.all().delete()
    with pytest.raises(actions.TransitionRefused):
        lifecycle.order_ship(order_id=placed.pk, actor="staffer")
    assert OutboxMessage.objects.count() == 0
    assert not OrderEmail.objects.filter(kind=EmailKind.CANCELLED).exists()
    assert not OrderEmail.objects.filter(order=placed, kind=EmailKind.SHIPPED).exists()


@pytest.mark.django_db
def test_the_relay_publishes_the_events_to_subscribers(topic, queues):
    sqs = aws.client("sqs")
    url = sqs.create_queue(QueueName=f"events-{uuid.uuid4().hex[:8]}")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    aws.client("sns").subscribe(
        TopicArn=topic,
        Protocol="sqs",
        Endpoint=arn,
        Attributes={
            "RawMessageDelivery": "true",
            "FilterPolicy": json.dumps({"event_type": ["OrderShipped", "OrderCancelled"]}),
        },
    )
    try:
        shipped, cancelled = _confirmed("a@example.com"), _confirmed("b@example.com")
        lifecycle.order_ship(order_id=shipped.pk, actor="staffer")
        lifecycle.order_cancel(order_id=cancelled.pk, actor="staffer")
        relay_once()
        bodies = []
        while batch := sqs.receive_message(
            QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=0
        ).get("Messages", []):
            bodies += [json.loads(m["Body"]) for m in batch]
            for m in batch:
                sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
        assert sorted((b["event_type"], b["order_id"]) for b in bodies) == sorted(
            [("OrderShipped", shipped.pk), ("OrderCancelled", cancelled.pk)]
        )  # OrderPlaced filtered out by the subscription; each event exactly once
        # Both emails were queued by the same pass (their history says so).
        for order, kind in ((shipped, "shipped"), (cancelled, "cancelled")):
            email = OrderEmail.objects.get(order=order, kind=kind)
            assert email.queued_at is not None
            assert list(email.events.values_list("kind", flat=True)) == ["queued"]
    finally:
        sqs.delete_queue(QueueUrl=url)
        drain(settings.ORDER_QUEUE_URL)


@pytest.mark.django_db
def test_the_api_lists_each_email_with_its_kind_and_status(api_client, alice_token):
    ProductFactory(sku="MUG", stock=5)
    body = {
        "shipping_address": {
            "name": "A",
            "line1": "1 Main St",
            "city": "T",
            "postal_code": "1",
            "country": "US",
        },
        "items": [{"sku": "MUG", "quantity": 1}],
    }
    created = api_client.post("/api/orders/", body, format="json", **auth(alice_token)).json()
    assert [(e["kind"], e["status"]) for e in created["emails"]] == [("confirmation", "pending")]
    OrderEmail.objects.filter(order_id=created["id"]).update(status=EmailStatus.SENT)
    actions.order_confirmed(order_id=created["id"])
    lifecycle.order_ship(order_id=created["id"], actor="staffer")
    detail = api_client.get(f"/api/orders/{created['id']}/", **auth(alice_token)).json()
    assert [(e["kind"], e["status"]) for e in detail["emails"]] == [
        ("confirmation", "sent"),
        ("shipped", "pending"),
    ]
    assert detail["confirmation_email"]["status"] == "sent"


# --- through real workers -------------------------------------------------------------------


@pytest.mark.worker
@pytest.mark.subprocess
@pytest.mark.django_db(transaction=True)
def test_a_shipped_email_to_an_unverified_address_ends_in_the_dlq_and_is_redriven(workers):
    """The shipped email is refused by the SES sandbox (an unverified recipient) on each of
    the queue's maxReceiveCount deliveries, SQS moves it to the DLQ, the DLQ page names it
    (order, kind, last error); once the address is verified, a redrive sends it, once."""
    address = f"sam-{uuid.uuid4().hex[:8]}@example.com"
    order = _confirmed(address)
    first = workers("failing")
    lifecycle.order_ship(
        order_id=order.pk,
        actor="staffer",
        tracking=lifecycle.Tracking(url="https://track.example/p/1"),
    )
    email = OrderEmail.objects.get(order=order, kind=EmailKind.SHIPPED)
    wait_for(lambda: queue_counts(DLQ_URL)[0] == 1, timeout=90, what="shipped email in the DLQ")
    email.refresh_from_db()
    assert email.status == EmailStatus.FAILED and "not verified" in email.last_error
    failures = EmailEvent.objects.filter(notification=email, kind=EmailEventKind.FAILED)
    assert failures.count() >= 3
    [row] = dead_letters.dlq_list(limit=10)
    assert (row.order_id, row.email_kind, row.email_id, row.email_status) == (
        order.pk,
        "shipped",
        email.pk,
        "failed",
    )
    assert row.task == settings.EMAIL_TASK_NAME and row.problem == ""
    first.stop()

    ses = aws.client("ses")
    ses.verify_email_identity(EmailAddress=address)
    try:
        workers("rescuer")
        result = dead_letters.dlq_redrive(actor="tester")
        assert (result.done, result.failed, result.ok) == (1, 0, True)
        wait_for(
            lambda: OrderEmail.objects.get(pk=email.pk).status == EmailStatus.SENT,
            timeout=60,
            what="the redriven shipped email sent",
        )
    finally:
        ses.delete_identity(Identity=address)
    [sent] = sent_emails(address)
    mime = email_lib.message_from_string(sent["raw_data"], policy=policy.default)
    assert mime["Subject"] == f"Your order #{order.pk} has shipped"
    html = mime.get_body(("html",)).get_content()
    text = mime.get_body(("plain",)).get_content()
    assert 'href="https://track.example/p/1"' in html
    assert "Track your parcel: https://track.example/p/1" in text
    assert "Sam O&#x27;Shipper" in html and "Hello Sam O'Shipper," in text
    assert queue_counts(DLQ_URL) == (0, 0)
    redriven = EmailEvent.objects.get(notification=email, kind=EmailEventKind.REDRIVEN)
    assert redriven.actor == "tester"
    order.refresh_from_db()
    assert order.status == OrderStatus.SHIPPED  # an email moves no order but the confirmation


@pytest.mark.worker
@pytest.mark.subprocess
@pytest.mark.django_db(transaction=True)
def test_the_first_versions_confirmation_task_still_sends(workers):
    """Messages written before the upgrade carry an order id under the old task name: one
    already on the queue, one still in the outbox (as the outbox's data migration wrote it).
    The worker still has that task: both confirmations go out, once each."""
    on_queue = _order(provisioning.VERIFIED_CUSTOMER)
    in_outbox = _order(provisioning.VERIFIED_CUSTOMER)
    OutboxMessage.objects.all().delete()  # neither has a message of the new kind
    before = len(sent_emails(provisioning.VERIFIED_CUSTOMER))
    confirmation_enqueue(order_id=on_queue.pk)  # the first version's publish
    outbox.outbox_task_add(
        queue_url=settings.ORDER_QUEUE_URL,
        task_name=settings.CONFIRMATION_TASK_NAME,
        kwargs={"order_id": in_outbox.pk},
    )
    worker = workers()
    for order in (on_queue, in_outbox):
        wait_for(
            lambda order=order: OrderEmail.objects.get(order=order).status == EmailStatus.SENT,
            timeout=60,
            what=f"order {order.pk}'s confirmation sent by the old task",
        )
        assert f"confirmation order={order.pk} attempt=1 outcome=sent" in worker.text()
        order.refresh_from_db()
        assert order.status == OrderStatus.CONFIRMED
    assert len(sent_emails(provisioning.VERIFIED_CUSTOMER)) == before + 2
    # The outbox row of the old kind marked its email queued, as a new one does.
    assert OrderEmail.objects.get(order=in_outbox).events.filter(kind="queued").exists()


@pytest.mark.django_db
def test_a_confirmation_unsent_when_the_order_was_cancelled_is_not_sent(settings):
    """Cancelled while its confirmation was still failing: a later delivery (a redrive, a
    resend) does not tell the customer the order is confirmed; the cancellation goes out."""
    settings.EMAIL_BACKEND = "django_ses.SESBackend"
    order = _order(provisioning.VERIFIED_CUSTOMER)
    OrderEmail.objects.filter(order=order).update(status=EmailStatus.FAILED, attempts=3)
    lifecycle.order_cancel(order_id=order.pk, actor="staffer")
    before = len(sent_emails(provisioning.VERIFIED_CUSTOMER))
    confirmation = OrderEmail.objects.get(order=order, kind=EmailKind.CONFIRMATION)
    cancelled = OrderEmail.objects.get(order=order, kind=EmailKind.CANCELLED)

    from notifications import sending

    assert sending.email_send(email_id=confirmation.pk).outcome == "suppressed"
    assert sending.email_send(email_id=cancelled.pk).outcome == "sent"

    confirmation.refresh_from_db()
    assert confirmation.status == EmailStatus.SUPPRESSED
    assert "cancelled before its confirmation went out" in confirmation.last_error
    assert len(sent_emails(provisioning.VERIFIED_CUSTOMER)) == before + 1
    order.refresh_from_db()
    assert order.status == OrderStatus.CANCELLED
    drain(settings.ORDER_QUEUE_URL)
