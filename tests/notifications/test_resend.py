"""Resending a confirmation (admin action, order page button, command) and the email history."""

from __future__ import annotations

import io

import pytest
from celery import current_app
from django.conf import settings as django_settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.core import mail
from django.core.management import call_command
from kombu import pools as kombu_pools

from notifications import services
from notifications.models import (
    ConfirmationEmail,
    EmailEvent,
    EmailStatus,
    SuppressedAddress,
)
from orders import services as order_services
from orders.models import Order
from tests.conftest import make_product
from tests.pipeline import free_port, queue_counts, sent_emails, wait_for

ADDRESS = order_services.ShippingAddress(
    name="Resend Test", line1="1 Main St", city="Town", postal_code="1", country="US"
)


def _order(email: str = "alice@example.com") -> Order:
    if not Order.objects.exists():
        make_product(sku="MUG", stock=1000)
    return order_services.order_place(
        customer_id=email,
        customer_email=email,
        shipping_address=ADDRESS,
        lines=[order_services.LineRequest(sku="MUG", quantity=1)],
    )


def _kinds(order: Order) -> list[str]:
    return [event.kind for event in services.confirmation_history(order_id=order.pk)]


def _celery_pools_drop() -> None:
    """Close and forget Celery's connection and producer pools (as after a fork)."""
    app = current_app._get_current_object()
    kombu_pools.reset()  # closes and forgets kombu's process-wide connection/producer pools
    app._pool = None
    amqp = app.__dict__.get("amqp")
    if amqp is not None:
        amqp._producer_pool = None


@pytest.fixture
def staff(client):
    user = get_user_model().objects.create_user(
        "ops", password="pw", is_staff=True, is_superuser=True
    )
    client.force_login(user)
    return client


@pytest.mark.worker
@pytest.mark.subprocess
@pytest.mark.django_db(transaction=True)
def test_resend_from_the_admin_sends_a_sent_email_again_and_records_it(staff, workers):
    workers()
    order = _order()
    wait_for(
        lambda: ConfirmationEmail.objects.get(order=order).status == EmailStatus.SENT,
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
        lambda: ConfirmationEmail.objects.get(order=order).status == EmailStatus.SENT,
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
    url = f"/admin/orders/order/{order.pk}/resend-confirmation/"
    page = staff.get(f"/admin/orders/order/{order.pk}/change/").content.decode()
    assert url in page and "Resend confirmation email" in page

    assert staff.get(url).status_code == 405
    response = staff.post(url, follow=True)
    assert response.redirect_chain[-1][0] == f"/admin/orders/order/{order.pk}/change/"
    assert f"Queued the confirmation email again for order #{order.pk}." in (
        response.content.decode()
    )
    assert _kinds(order) == ["queued", "resend", "queued"]
    # The original message and the resend are both on the queue; the send is idempotent.
    assert queue_counts(django_settings.ORDER_QUEUE_URL)[0] == 2


@pytest.mark.django_db
def test_staff_without_the_permission_cannot_resend(client):
    user = get_user_model().objects.create_user("viewer", password="pw", is_staff=True)
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
    assert "resend: 2 requested, 1 queued, 0 failed, 1 unknown" in text
    assert ConfirmationEmail.objects.get(order=order).queued_at is not None


@pytest.mark.django_db(transaction=True)
def test_resend_while_sqs_is_down_leaves_the_email_pending_for_the_sweep(queues, monkeypatch):
    order = _order()
    out = io.StringIO()
    # kombu's SQS client follows the broker URL (the host and port of AWS_ENDPOINT_URL_SQS or
    # AWS_ENDPOINT_URL, settings): point it at a closed port. Celery's connection and producer
    # pools are dropped before and after, so that the publish connects anew to it.
    monkeypatch.setitem(current_app.conf, "broker_url", f"sqs://127.0.0.1:{free_port()}")
    _celery_pools_drop()
    try:
        with pytest.raises(SystemExit):
            call_command("resend_confirmation", str(order.pk), stdout=out)
    finally:
        monkeypatch.undo()
        _celery_pools_drop()
    assert "FAILED to queue" in out.getvalue()
    record = ConfirmationEmail.objects.get(order=order)
    assert record.status == EmailStatus.PENDING
    assert record.queued_at is None  # the sweep's criterion
    # ...and publishing works again afterwards.
    assert services.confirmation_publish(order_id=order.pk) is True


@pytest.mark.django_db
def test_a_suppressed_address_is_not_sent_to(settings):
    settings.EMAIL_BACKEND = "django_ses.SESBackend"
    order = _order("gone@example.com")
    SuppressedAddress.objects.create(email="gone@example.com", reason="bounce")
    before = len(sent_emails())

    outcome = services.confirmation_send(order_id=order.pk, attempt=1)

    assert outcome.outcome == "suppressed"
    record = ConfirmationEmail.objects.get(order=order)
    assert record.status == EmailStatus.SUPPRESSED
    assert "bounce" in record.last_error
    assert len(sent_emails()) == before
    assert mail.outbox == []
    assert _kinds(order) == ["queued", "suppressed"]
    # A later delivery of the same message does nothing more.
    assert services.confirmation_send(order_id=order.pk).outcome == "skipped"
