"""docs/operations.md's walkthrough, end to end with a real worker and the management commands.

An unverified customer's email fails three times and lands in the dead-letter queue; the
operator verifies the address, redrives the DLQ, and the email goes out.
"""

from __future__ import annotations

import io
import uuid

import pytest
from django.conf import settings
from django.core.management import call_command

from notifications import selectors
from notifications.models import EmailStatus, OrderEmail
from orders import services as order_services
from orders.models import Order
from tests.factories import ProductFactory
from tests.pipeline import DLQ_URL, queue_counts, sent_emails, wait_for

pytestmark = [
    pytest.mark.worker,
    pytest.mark.subprocess,
    pytest.mark.django_db(transaction=True),
]


def _command(*args: str) -> str:
    out = io.StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


def test_unverified_email_dead_lettered_then_verified_redriven_and_sent(workers):
    # A fresh address: verifying it must not change what other tests see.
    address = f"walkthrough-{uuid.uuid4().hex[:8]}@example.com"
    ProductFactory(sku="MUG", stock=10)
    workers()
    order: Order = order_services.order_place(
        customer_id="walkthrough",
        customer_email=address,
        shipping_address=order_services.ShippingAddress(
            name="Walk Through", line1="1 Main St", city="Town", postal_code="1", country="US"
        ),
        lines=[order_services.LineRequest(sku="MUG", quantity=1)],
    )

    # 1. Three refused attempts (the SES sandbox), then SQS moves the message to the DLQ.
    wait_for(lambda: queue_counts(DLQ_URL)[0] == 1, timeout=90, what="message in the DLQ")
    record = OrderEmail.objects.get(order=order)
    assert record.status == EmailStatus.FAILED
    assert "not verified" in record.last_error
    assert queue_counts(settings.ORDER_QUEUE_URL) == (0, 0)
    listing = _command("dlq_list")
    assert str(order.pk) in listing and address in listing

    # 2. The operator verifies the address (the emulator verifies at once).
    assert f"verification of {address} requested" in _command("ses_verify", address)

    # 3. ...and redrives: the worker sends the email.
    redrive = _command("dlq_redrive")
    assert "1" in redrive
    wait_for(
        lambda: OrderEmail.objects.get(order=order).status == EmailStatus.SENT,
        timeout=30,
        what="email sent after the redrive",
    )
    assert len(sent_emails(address)) == 1
    assert queue_counts(DLQ_URL) == (0, 0)
    kinds = [event.kind for event in selectors.confirmation_history(order_id=order.pk)]
    assert kinds == ["queued", "failed", "failed", "failed", "redriven", "sent"]
