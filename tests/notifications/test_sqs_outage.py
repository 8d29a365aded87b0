"""Guarantee 1: no order without its email, even when SQS is down when the order is placed.

The web request makes no SQS call: the order and its outbox row commit together, and the
relay publishes the row when SQS answers again.
"""

from __future__ import annotations

import io

import pytest
from django.conf import settings
from django.core.management import call_command

from notifications.models import OrderEmail
from orders.models import Order, Product
from shop.models import OutboxMessage
from tests.aws_proxy import AwsProxy
from tests.factories import ProductFactory
from tests.helpers import order_body
from tests.outbox import Relay
from tests.pipeline import WebServer, free_port, queue_counts, subjects_by_order, wait_for

pytestmark = [
    pytest.mark.worker,
    pytest.mark.subprocess,
    pytest.mark.django_db(transaction=True),
]


@pytest.fixture
def web_without_aws(tmp_path):
    """The web app with AWS unreachable (a closed port); Cognito's keys still reachable."""
    server = WebServer(
        tmp_path / "web.log",
        env={
            "AWS_ENDPOINT_URL": f"http://127.0.0.1:{free_port()}",
            "COGNITO_JWKS_URL": settings.COGNITO_JWKS_URL,
        },
    )
    yield server.start()
    server.stop()


def test_order_placed_while_sqs_is_down_is_emailed_once_sqs_is_back(
    web_without_aws, alice_token, workers, tmp_path
):
    ProductFactory(sku="MUG", stock=5)
    status, body = web_without_aws.request(
        "POST", "/api/orders/", order_body(("MUG", 1)), token=alice_token
    )
    assert status == 201, body
    assert body["confirmation_email"]["status"] == "pending"
    order = Order.objects.get(pk=body["id"])
    assert OrderEmail.objects.get(order=order).status == "pending"
    assert Product.objects.get(sku="MUG").stock == 4
    [row] = OutboxMessage.objects.all()
    assert row.payload["kwargs"] == {"email_id": order.emails.get().pk}

    # A relay whose SQS is down: the row stays, with its error, backing off.
    with AwsProxy(settings.AWS_ENDPOINT_URL) as proxy:
        proxy.down("sqs")
        relay = Relay(
            tmp_path / "relay-without-sqs.log",
            env={"AWS_ENDPOINT_URL": proxy.url, "OUTBOX_RETRY_MAX_SECONDS": "1"},
        ).start()
        try:
            wait_for(
                lambda: OutboxMessage.objects.filter(attempts__gte=2).exists(),
                timeout=60,
                what="two failed publishes",
            )
            assert OutboxMessage.objects.get().last_error
            assert sum(queue_counts(settings.ORDER_QUEUE_URL)) == 0
            # SQS is back: the same relay publishes the row (and deletes it).
            proxy.up("sqs")
            wait_for(lambda: not OutboxMessage.objects.exists(), timeout=30, what="row published")
        finally:
            relay.kill()
    assert queue_counts(settings.ORDER_QUEUE_URL) == (1, 0)
    assert OrderEmail.objects.get(order=order).queued_at is not None
    workers(SES_SANDBOX="false")
    wait_for(
        lambda: OrderEmail.objects.get(order=order).status == "sent",
        timeout=60,
        what="email sent",
    )
    assert subjects_by_order("alice@").get(order.pk) == 1


def test_confirmation_sweep_is_one_relay_pass(queues):
    """``confirmation_sweep`` (kept for old schedules) publishes what the outbox holds."""
    ProductFactory(sku="MUG", stock=5)
    from orders import services

    order = services.order_place(
        customer_id="c",
        customer_email="c@example.com",
        shipping_address=services.ShippingAddress(
            name="A", line1="1", city="T", postal_code="1", country="US"
        ),
        lines=[services.LineRequest(sku="MUG", quantity=1)],
    )
    out = io.StringIO()
    call_command("confirmation_sweep", "--older-than", "600", stdout=out)
    assert "outbox: 1 published (sqs_task 1), 0 failed" in out.getvalue()
    assert sum(queue_counts(settings.ORDER_QUEUE_URL)) == 1
    assert OrderEmail.objects.get(order=order).queued_at is not None
    out = io.StringIO()
    call_command("confirmation_sweep", stdout=out)
    assert "outbox: 0 published (none), 0 failed" in out.getvalue()
    assert sum(queue_counts(settings.ORDER_QUEUE_URL)) == 1
