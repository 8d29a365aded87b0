"""The confirmation pipeline end to end: API -> SQS -> a real Celery worker -> SES (emulator)."""

from __future__ import annotations

import email
import socket
import threading
from decimal import Decimal
from email import policy

import pytest
from django.conf import settings
from django.db import transaction

from notifications.models import OrderEmail
from orders import services
from orders.models import Order
from shop.models import OutboxMessage
from tests.factories import ProductFactory
from tests.helpers import auth, order_body
from tests.outbox import relay_once
from tests.pipeline import DLQ_URL, dlq_messages, queue_counts, sent_emails, wait_for

pytestmark = [
    pytest.mark.worker,
    pytest.mark.subprocess,
    pytest.mark.django_db(transaction=True),
]

NOT_VERIFIED = "recipient not verified in the SES sandbox"


def _place(api_client, token, **address) -> Order:
    ProductFactory(sku="MUG", price=Decimal("12.50"), stock=10)
    ProductFactory(sku="PEN", price=Decimal("3.25"), stock=10)
    response = api_client.post(
        "/api/orders/",
        order_body(("MUG", 2), ("PEN", 1), **address),
        format="json",
        **auth(token),
    )
    assert response.status_code == 201, response.content
    return Order.objects.get(pk=response.json()["id"])


def _notification(order: Order) -> OrderEmail:
    return OrderEmail.objects.get(order=order)


def _mime(message: dict) -> email.message.EmailMessage:
    return email.message_from_string(message["raw_data"], policy=policy.default)


def test_verified_customer_gets_exactly_one_email(api_client, alice_token, workers):
    before = len(sent_emails("alice@example.com"))
    worker = workers()
    order = _place(api_client, alice_token, name="Alice O'Brien <script>x</script>")

    wait_for(lambda: _notification(order).status == "sent", timeout=30, what="email sent")
    notification = _notification(order)
    assert notification.attempts == 1
    assert notification.ses_messages.count() == 1
    assert notification.sent_at is not None
    order.refresh_from_db()
    assert order.status == "confirmed"

    mails = sent_emails("alice@example.com")[before:]
    assert len(mails) == 1
    mime = _mime(mails[0])
    assert mime["To"] == "alice@example.com"
    assert mime["From"] == settings.DEFAULT_FROM_EMAIL
    assert str(order.pk) in mime["Subject"]
    html = mime.get_body(("html",)).get_content()
    text = mime.get_body(("plain",)).get_content()
    for part in (html, text):
        assert str(order.pk) in part
        assert "Product MUG" in part and "Product PEN" in part
        assert "28.25" in part  # 2 x 12.50 + 3.25
    assert "&lt;script&gt;" in html and "<script>" not in html
    assert "Alice O'Brien" in text and "&#x27;" not in text

    wait_for(
        lambda: queue_counts(settings.ORDER_QUEUE_URL) == (0, 0), timeout=15, what="queue empty"
    )
    assert f"confirmation order={order.pk} attempt=1 outcome=sent" in worker.text()
    detail = api_client.get(f"/api/orders/{order.pk}/", **auth(alice_token)).json()
    assert detail["confirmation_email"]["status"] == "sent"
    assert detail["status"] == "confirmed"


def test_unverified_customer_goes_to_the_dlq_after_max_receive_count(
    api_client, bob_token, workers
):
    before = len(sent_emails("bob@example.com"))
    worker = workers()
    order = _place(api_client, bob_token)

    dead = wait_for(lambda: dlq_messages(DLQ_URL), timeout=60, what="message in the DLQ")
    assert [m.task_name for m in dead] == [settings.EMAIL_TASK_NAME]
    notification = _notification(order)
    assert notification.status == "failed"
    assert notification.attempts == 3
    assert NOT_VERIFIED in notification.last_error
    assert len(sent_emails("bob@example.com")) == before
    assert queue_counts(settings.ORDER_QUEUE_URL) == (0, 0)
    for attempt in (1, 2, 3):
        assert f"confirmation order={order.pk} attempt={attempt} outcome=failed" in worker.text()
    assert "attempt=4" not in worker.text()
    order.refresh_from_db()
    assert order.status == "placed"


def test_ses_message_rejected_takes_the_same_path(api_client, alice_token, workers):
    """Real SES refuses with MessageRejected; the emulator does for an unverified sender."""
    workers(DEFAULT_FROM_EMAIL="unverified-sender@example.com", SES_SANDBOX="false")
    order = _place(api_client, alice_token)
    wait_for(lambda: dlq_messages(DLQ_URL), timeout=60, what="message in the DLQ")
    notification = _notification(order)
    assert notification.status == "failed"
    assert notification.attempts == 3
    assert "MessageRejected" in notification.last_error


def test_rolled_back_order_publishes_nothing(queues):
    ProductFactory(sku="MUG", stock=10)
    address = services.ShippingAddress(
        name="A", line1="1 Main St", city="Town", postal_code="1", country="US"
    )
    place = lambda: services.order_place(  # noqa: E731
        customer_id="c",
        customer_email="c@example.com",
        shipping_address=address,
        lines=[services.LineRequest(sku="MUG", quantity=1)],
    )
    with pytest.raises(RuntimeError), transaction.atomic():
        place()
        raise RuntimeError("something after the order failed")
    assert Order.objects.count() == 0
    assert OutboxMessage.objects.count() == 0
    assert relay_once().published == 0
    assert sum(queue_counts(settings.ORDER_QUEUE_URL)) == 0
    place()  # the same call, committed, does publish: the checks above can fail
    assert OutboxMessage.objects.count() == 1
    assert relay_once().published == 1
    # (visible or in flight: a stopped worker's last long poll may still be open on the server)
    assert sum(queue_counts(settings.ORDER_QUEUE_URL)) == 1


@pytest.mark.visibility_timeout(1)  # the killed worker's message comes back after it
def test_sigkilled_worker_loses_nothing(api_client, alice_token, workers):
    """Kill -9 a worker in the middle of sending: SQS redelivers, the email goes out once."""
    connected = threading.Event()
    stall = socket.socket()
    stall.bind(("127.0.0.1", 0))
    stall.listen()
    held = []

    def accept() -> None:
        while True:
            try:
                conn, _ = stall.accept()
            except OSError:
                return
            held.append(conn)  # never answered: the task hangs mid-send
            connected.set()

    threading.Thread(target=accept, daemon=True).start()
    before = len(sent_emails("alice@example.com"))
    stuck = workers("stuck", AWS_ENDPOINT_URL_SES=f"http://127.0.0.1:{stall.getsockname()[1]}")
    order = _place(api_client, alice_token)
    assert connected.wait(30), "the worker never reached SES"
    stuck.kill()
    for conn in held:
        conn.close()
    stall.close()
    assert _notification(order).status == "pending"

    workers("rescuer")
    wait_for(lambda: _notification(order).status == "sent", timeout=60, what="email sent")
    assert len(sent_emails("alice@example.com")) == before + 1
