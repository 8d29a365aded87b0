"""SES that answers late: one SendRawEmail per delivery, and the one window for a duplicate.

A proxy in front of the emulator's SES (``tests.aws_proxy``) forwards the worker's send,
so SES takes the email, then keeps the answer back past the worker's read timeout, or past
the task's soft time limit. The worker cannot know SES took it: the attempt fails, SQS
redelivers, and the email is sent again. That duplicate is the window docs/guarantees.md
states; what must never happen is botocore repeating the call inside one delivery (its
standard retry mode makes 3 attempts after a read timeout or a 5xx), so the proxy must see
exactly one send per delivery.
"""

from __future__ import annotations

import uuid

import pytest
from django.conf import settings

from notifications.models import OrderEmail
from orders import services
from orders.models import Order
from tests.aws_proxy import AwsProxy
from tests.factories import ProductFactory
from tests.pipeline import sent_emails, wait_for

pytestmark = [
    pytest.mark.worker,
    pytest.mark.subprocess,
    pytest.mark.django_db(transaction=True),
]

ADDRESS = services.ShippingAddress(
    name="Slow SES", line1="1 Main St", city="Town", postal_code="1", country="US"
)


def _order(email: str) -> Order:
    ProductFactory(sku="MUG", stock=10)
    return services.order_place(
        customer_id=email,
        customer_email=email,
        shipping_address=ADDRESS,
        lines=[services.LineRequest(sku="MUG", quantity=1)],
    )


@pytest.mark.parametrize(
    ("env", "withhold", "reason"),
    [
        # The worker's read timeout (2 s here, 10 s by default) ends the wait first.
        ({"SES_READ_TIMEOUT": "2"}, 3.5, "Read timeout"),
        # The task's soft time limit (6 s in the tests) ends it first.
        ({}, 7.5, "SoftTimeLimitExceeded"),
    ],
    ids=["read timeout", "soft time limit"],
)
def test_an_answer_lost_after_ses_took_the_email_is_retried_by_sqs_only(
    workers, env, withhold, reason
):
    recipient = f"slow-ses-{uuid.uuid4().hex[:8]}@example.com"
    with AwsProxy(settings.AWS_SES_ENDPOINT_URL) as proxy:
        proxy.withhold("SendRawEmail", seconds=withhold, times=1)
        worker = workers(SES_SANDBOX="false", AWS_ENDPOINT_URL_SES=proxy.url, **env)
        order = _order(recipient)
        wait_for(
            lambda: OrderEmail.objects.get(order=order).status == "sent",
            timeout=60,
            what="email sent on the redelivery",
        )
        sends = proxy.sends()

    # One SendRawEmail per delivery: the first, whose answer was lost, was not repeated.
    assert [send.outcome for send in sends] == ["withheld", "forwarded"]
    log = worker.text()
    assert f"confirmation order={order.pk} attempt=1 outcome=failed" in log
    assert reason in log
    assert f"confirmation order={order.pk} attempt=2 outcome=sent" in log
    # SES took both: the one duplicate this window allows (docs/guarantees.md).
    assert len(sent_emails(recipient)) == 2
    record = OrderEmail.objects.get(order=order)
    assert record.attempts == 2
    assert [(e.kind, e.attempt) for e in record.events.exclude(kind="queued")] == [
        ("failed", 1),
        ("sent", 2),
    ]
