"""Resending a confirmation (admin action, order page button, command) and the email history."""

from __future__ import annotations

import io
import os

import pytest
from django.conf import settings as django_settings
from django.contrib.auth.models import Permission
from django.core import mail
from django.core.management import call_command

from notifications import selectors, sending, services
from notifications.models import (
    EmailEvent,
    EmailStatus,
    OrderEmail,
    SuppressedAddress,
)
from orders import services as order_services
from orders.models import Order
from shop.models import OutboxMessage
from tests.factories import ProductFactory, StaffFactory
from tests.outbox import relay_once
from tests.pipeline import free_port, queue_counts, sent_emails, wait_for

ADDRESS = order_services.ShippingAddress(
    name="Resend Test", line1="1 Main St", city="Town", postal_code="1", country="US"
)


def _order(email: str = "alice@example.com") -> Order:
    if not Order.objects.exists():
        ProductFactory(sku="MUG", stock=1000)
    return order_services.order_place(
        customer_id=email,
        customer_email=email,
        shipping_address=ADDRESS,
        lines=[order_services.LineRequest(sku="MUG", quantity=1)],
    )


def _kinds(order: Order) -> list[str]:
    return [event.kind for event in selectors.confirmation_history(order_id=order.pk)]


@pytest.fixture
def staff(client):
    user = StaffFactory(username="ops", is_superuser=True)
    client.force_login(user)
    return client


@pytest.mark.worker
@pytest.mark.subprocess
@pytest.mark.django_db(transaction=True)
def test_resend_from_the_admin_sends_a_sent_email_again_and_records_it(staff, workers):
    workers()
    order = _order()
    wait_for(
        lambda: OrderEmail.objects.get(order=order).status == EmailStatus.SENT,
        timeout=30,
        what="first email sent",
    )
    before = len(sent_emails("alice@example.com"))

    response = staff.post(
        "/admin/orders/order/",
        {"action": "resend_confirmation", "_selected_action": [order.pk]},
        follow=True,
    )
    assert "Queued the confirmation email again for 1 order(s)." in response.content.decode()

    wait_for(
        lambda: len(sent_emails("alice@example.com")) == before + 1,
        timeout=30,
        what="the resent email",
    )
    wait_for(
        lambda: OrderEmail.objects.get(order=order).status == EmailStatus.SENT,
        timeout=10,
        what="record sent again",
    )
    assert _kinds(order) == ["queued", "sent", "resend", "queued", "sent"]
    resend = EmailEvent.objects.get(notification__order=order, kind="resend")
    assert resend.actor == "ops"
    assert resend.detail == "was sent"
    sent = EmailEvent.objects.filter(notification__order=order, kind="sent")
    assert [event.attempt for event in sent] == [1, 1]  # SQS's receive count of each message

    page = staff.get(f"/admin/orders/order/{order.pk}/change/").content.decode()
    assert '<table class="email-history">' in page
    assert "Resend requested" in page
    assert page.count("<td>Sent</td>") == 2


@pytest.mark.django_db(transaction=True)
def test_order_page_button_resends_with_csrf_post_only(staff, queues):
    order = _order()
    relay_once()
    url = f"/admin/orders/order/{order.pk}/resend-confirmation/"
    page = staff.get(f"/admin/orders/order/{order.pk}/change/").content.decode()
    assert url in page and "Resend confirmation email" in page

    assert staff.get(url).status_code == 405
    response = staff.post(url, follow=True)
    assert response.redirect_chain[-1][0] == f"/admin/orders/order/{order.pk}/change/"
    assert f"Queued the confirmation email again for order #{order.pk}." in (
        response.content.decode()
    )
    assert _kinds(order) == ["queued", "resend"]  # the resend's task is in the outbox...
    assert relay_once().published == 1  # ...until the relay publishes it
    assert _kinds(order) == ["queued", "resend", "queued"]
    # The original message and the resend are both on the queue; the send is idempotent.
    assert queue_counts(django_settings.ORDER_QUEUE_URL)[0] == 2


@pytest.mark.django_db
def test_staff_without_the_permission_cannot_resend(client):
    user = StaffFactory(username="viewer")
    user.user_permissions.add(Permission.objects.get(codename="view_order"))
    client.force_login(user)
    order = _order()
    page = client.get(f"/admin/orders/order/{order.pk}/change/")
    assert page.status_code == 200
    assert "Resend confirmation email" not in page.content.decode()
    assert client.post(f"/admin/orders/order/{order.pk}/resend-confirmation/").status_code == 403
    assert "resend" not in _kinds(order)


@pytest.mark.django_db
def test_history_is_escaped_on_the_order_page(staff):
    order = _order()
    services.confirmation_event_record(
        order_id=order.pk, kind="failed", detail="<script>alert(1)</script>", attempt=2
    )
    page = staff.get(f"/admin/orders/order/{order.pk}/change/").content.decode()
    assert "<script>alert(1)</script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page


@pytest.mark.django_db(transaction=True)
def test_resend_command_reports_each_order_and_totals(queues):
    order = _order()
    out = io.StringIO()
    with pytest.raises(SystemExit) as exit_:
        call_command("resend_confirmation", str(order.pk), "999999", stdout=out)
    assert exit_.value.code == 1
    text = out.getvalue()
    assert f"order {order.pk}: queued" in text
    assert "order 999999: no such order" in text
    assert "resend: 2 requested, 1 queued, 1 unknown" in text
    # The order's own row and the resend's: both published by the relay.
    email = OrderEmail.objects.get(order=order)
    assert OutboxMessage.objects.filter(payload__kwargs__email_id=email.pk).count() == 2
    assert relay_once().published == 2
    assert OrderEmail.objects.get(order=order).queued_at is not None


@pytest.mark.django_db(transaction=True)
def test_resend_while_sqs_is_down_is_published_once_sqs_is_back(queues, settings):
    """Replaces the old "left pending for the sweep": a resend makes no SQS call at all; its
    row waits in the outbox while SQS is down and is published once it is back."""
    order = _order()
    relay_once()
    settings.AWS_ENDPOINT_URL = f"http://127.0.0.1:{free_port()}"  # SQS unreachable
    out = io.StringIO()
    call_command("resend_confirmation", str(order.pk), stdout=out)
    assert "resend: 1 requested, 1 queued, 0 unknown" in out.getvalue()
    counts = relay_once()
    assert (counts.published, counts.failed) == (0, 1)
    record = OrderEmail.objects.get(order=order)
    assert record.status == EmailStatus.PENDING
    [row] = OutboxMessage.objects.all()
    assert row.attempts == 1 and row.last_error
    settings.AWS_ENDPOINT_URL = os.environ["AWS_ENDPOINT_URL"]  # back
    OutboxMessage.objects.update(available_at=None)  # its back-off is over
    assert relay_once().published == 1
    assert queue_counts(django_settings.ORDER_QUEUE_URL)[0] == 2
    assert _kinds(order) == ["queued", "resend", "queued"]


@pytest.mark.django_db
def test_a_suppressed_address_is_not_sent_to(settings):
    settings.EMAIL_BACKEND = "django_ses.SESBackend"
    order = _order("gone@example.com")
    SuppressedAddress.objects.create(email="gone@example.com", reason="bounce")
    before = len(sent_emails())

    outcome = sending.confirmation_send(order_id=order.pk, attempt=1)

    assert outcome.outcome == "suppressed"
    record = OrderEmail.objects.get(order=order)
    assert record.status == EmailStatus.SUPPRESSED
    assert "bounce" in record.last_error
    assert len(sent_emails()) == before
    assert mail.outbox == []
    assert _kinds(order) == ["suppressed"]  # never relayed: no "queued" entry
    # A later delivery of the same message does nothing more.
    assert sending.confirmation_send(order_id=order.pk).outcome == "skipped"
