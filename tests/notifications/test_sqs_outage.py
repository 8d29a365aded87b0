"""Guarantee 1: no order without its email, even when SQS is down at commit time."""

from __future__ import annotations

import io

import pytest
from django.conf import settings
from django.core.management import call_command

from notifications.models import ConfirmationEmail
from orders.models import Order, Product
from tests.conftest import make_product, order_body
from tests.notifications.test_delivery_guarantees import _subjects_by_order
from tests.pipeline import WebServer, free_port, queue_counts, wait_for

pytestmark = [
    pytest.mark.worker,
    pytest.mark.subprocess,
    pytest.mark.django_db(transaction=True),
]


@pytest.fixture
def web_without_sqs(tmp_path):
    """The web app with SQS unreachable (a closed port); Cognito's keys still reachable."""
    server = WebServer(
        tmp_path / "web.log",
        env={
            "AWS_ENDPOINT_URL": f"http://127.0.0.1:{free_port()}",
            "COGNITO_JWKS_URL": settings.COGNITO_JWKS_URL,
        },
    )
    yield server.start()
    server.stop()


def _sweep(*args: str) -> str:
    out = io.StringIO()
    call_command("confirmation_sweep", *args, stdout=out)
    return out.getvalue()


def test_order_placed_while_sqs_is_down_is_emailed_once_sqs_is_back(
    web_without_sqs,
    alice_token,
    workers,
):
    make_product(sku="MUG", stock=5)
    status, body = web_without_sqs.request(
        "POST", "/api/orders/", order_body(("MUG", 1)), token=alice_token
    )
    assert status == 201, body
    assert body["confirmation_email"]["status"] == "pending"
    order = Order.objects.get(pk=body["id"])
    notification = ConfirmationEmail.objects.get(order=order)
    assert notification.status == "pending"
    assert notification.queued_at is None
    assert not notification.events.exists()  # the "queued" mark written with the order, taken back
    assert Product.objects.get(sku="MUG").stock == 4
    assert sum(queue_counts(settings.ORDER_QUEUE_URL)) == 0
    assert "could not queue the confirmation of order" in web_without_sqs.log.read_text()

    # SQS is back (this process reaches it); the scheduled sweep re-publishes the order.
    workers(SES_SANDBOX="false")
    assert "1 queued" in _sweep("--older-than", "0")
    wait_for(
        lambda: ConfirmationEmail.objects.get(order=order).status == "sent",
        timeout=30,
        what="email sent",
    )
    assert _subjects_by_order("alice@").get(order.pk) == 1
    # A later sweep finds nothing to do, and the email is not sent again.
    assert "0 pending" in _sweep("--older-than", "0")


def test_sweep_leaves_recent_and_sent_records_alone(queues):
    make_product(sku="MUG", stock=5)
    from orders import services

    order = services.order_place(
        customer_id="c",
        customer_email="c@example.com",
        shipping_address=services.ShippingAddress(
            name="A", line1="1", city="T", postal_code="1", country="US"
        ),
        lines=[services.LineRequest(sku="MUG", quantity=1)],
    )
    assert ConfirmationEmail.objects.get(order=order).queued_at is not None
    assert "0 pending" in _sweep("--older-than", "600")
    assert sum(queue_counts(settings.ORDER_QUEUE_URL)) == 1
