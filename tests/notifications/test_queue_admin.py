"""The admin's queue health and dead-letter queue pages, through Django's test client.

SQS is the session's emulator; the DLQ holds the app's real Celery messages
(``tests.pipeline.dead_letter``) and poison bodies.
"""

from __future__ import annotations

import uuid

import pytest
from django.conf import settings
from django.contrib.auth.models import Permission, User
from django.test import Client
from django.urls import reverse

from notifications.models import EmailEvent, EmailEventKind, EmailStatus, OrderEmail
from orders import services as order_services
from orders.models import Order
from tests.factories import ProductFactory, UserFactory
from tests.pipeline import DLQ_URL, dead_letter, free_port, queue_counts, sqs

pytestmark = pytest.mark.django_db

HEALTH = "admin:notifications_queue_health"
DLQ = "admin:notifications_dead_letters"


def _user(name: str, *permissions: str, staff: bool = True) -> User:
    user = UserFactory(username=name, password="not-used", is_staff=staff)
    for codename in permissions:
        user.user_permissions.add(
            Permission.objects.get(content_type__app_label="notifications", codename=codename)
        )
    return user


def _client(user: User | None, **kwargs) -> Client:
    client = Client(**kwargs)
    if user is not None:
        client.force_login(user)
    return client


@pytest.fixture
def viewer() -> Client:
    return _client(_user("viewer", "view_orderemail"))


@pytest.fixture
def operator() -> Client:
    return _client(_user("operator", "view_orderemail", "operate_queues"))


@pytest.fixture
def sqs_down(settings):
    settings.AWS_ENDPOINT_URL = f"http://127.0.0.1:{free_port()}"


def _failed_order(last_error: str = "recipient not verified in the SES sandbox") -> Order:
    product = ProductFactory(stock=5)
    order = order_services.order_place(
        customer_id=f"c-{uuid.uuid4().hex[:8]}",
        customer_email=f"erin-{uuid.uuid4().hex[:8]}@example.com",
        shipping_address=order_services.ShippingAddress(
            name="Erin", line1="1 Main St", city="Springfield", postal_code="1", country="US"
        ),
        lines=[order_services.LineRequest(sku=product.sku, quantity=1)],
    )
    OrderEmail.objects.filter(order=order).update(
        status=EmailStatus.FAILED, attempts=3, last_error=last_error
    )
    return order


def _messages(response) -> list[str]:
    return [str(message) for message in response.context["messages"]]


def _in_dlq() -> int:
    return sum(queue_counts(DLQ_URL))


# --- who may see what ---------------------------------------------------------------------


def test_admin_index_has_the_operations_box_for_staff_who_may_see_emails(viewer):
    html = viewer.get(reverse("admin:index")).content.decode()
    assert '<div class="module" id="operations">' in html
    assert f'href="{reverse(HEALTH)}">Queue health</a>' in html
    assert f'href="{reverse(DLQ)}">Dead-letter queue</a>' in html

    other = _client(_user("clerk"))  # staff, but not allowed to see emails
    assert 'id="operations"' not in other.get(reverse("admin:index")).content.decode()


@pytest.mark.parametrize("name", [HEALTH, DLQ])
def test_pages_are_for_staff_with_view_permission_only(queues, name):
    url = reverse(name)
    anonymous = _client(None).get(url)
    assert anonymous.status_code == 302 and "/login/" in anonymous["Location"]
    customer = _client(_user("customer", "view_orderemail", staff=False)).get(url)
    assert customer.status_code == 302 and "/login/" in customer["Location"]
    assert _client(_user("clerk")).get(url).status_code == 403


def test_viewer_sees_the_dlq_but_cannot_act(queues, viewer):
    order = _failed_order()
    dead_letter(order.pk)
    html = viewer.get(reverse(DLQ)).content.decode()
    assert str(order.customer_email) in html
    assert 'name="action"' not in html and 'name="message_id"' not in html

    for action in ("redrive_selected", "redrive_all", "delete_selected"):
        response = viewer.post(reverse(DLQ), {"action": action, "message_id": ["x"]})
        assert response.status_code == 403
    assert _in_dlq() == 1
    assert sum(queue_counts(settings.ORDER_QUEUE_URL)) == 0


# --- pages --------------------------------------------------------------------------------


def test_queue_health_page(queues, viewer):
    dead_letter(_failed_order().pk)
    response = viewer.get(reverse(HEALTH))
    assert response.status_code == 200
    html = response.content.decode()
    assert settings.ORDER_QUEUE_URL in html and DLQ_URL in html
    assert '<div class="breadcrumbs">' in html
    orders, dlq = response.context["queues"]
    assert (orders.role, dlq.role, dlq.visible) == ("orders", "dead-letter", 1)
    assert "after 3 receives (maxReceiveCount)" in html
    assert "ApproximateAgeOfOldestMessage" in html  # says why the age is not shown
    assert f'<td class="visibility-timeout">{queues.visibility_timeout} s</td>' in html


def test_dlq_page_lists_messages_with_their_orders(queues, operator):
    order = _failed_order(last_error="<script>alert(1)</script> refused")
    dead_id = dead_letter(order.pk)
    poison_id = sqs().send_message(QueueUrl=DLQ_URL, MessageBody="<b>poison</b>")["MessageId"]

    response = operator.get(reverse(DLQ))
    assert response.status_code == 200
    html = response.content.decode()
    assert html.count('<form method="post"') == 1
    for message_id in (dead_id, poison_id):
        assert f'<input type="checkbox" name="message_id" value="{message_id}"' in html
    assert reverse("admin:orders_order_change", args=[order.pk]) in html
    assert order.customer_email in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt; refused" in html
    assert "<script>alert(1)" not in html
    assert "not a Celery message" in html
    for value, label in [
        ("redrive_selected", "Redrive selected"),
        ("redrive_all", "Redrive all"),
        ("delete_selected", "Delete selected"),
    ]:
        assert f'<button type="submit" name="action" value="{value}">{label}</button>' in html
    assert _in_dlq() == 2  # looking moved nothing


# --- actions ------------------------------------------------------------------------------


def test_redrive_selected(queues, operator):
    order, other = _failed_order(), _failed_order()
    dead_id = dead_letter(order.pk)
    dead_letter(other.pk)

    response = operator.post(reverse(DLQ), {"action": "redrive_selected", "message_id": dead_id})
    assert response.status_code == 302 and response["Location"] == reverse(DLQ)
    page = operator.get(response["Location"])
    assert "Redrove 1 message(s) to the order queue." in _messages(page)
    assert _in_dlq() == 1
    assert queue_counts(settings.ORDER_QUEUE_URL)[0] == 1
    [event] = EmailEvent.objects.filter(notification__order=order, kind=EmailEventKind.REDRIVEN)
    assert event.actor == "operator"


def test_redrive_all_and_a_message_already_gone(queues, operator):
    dead_letter(_failed_order().pk)
    sqs().send_message(QueueUrl=DLQ_URL, MessageBody="poison")

    response = operator.post(reverse(DLQ), {"action": "redrive_all"}, follow=True)
    assert "Redrove 2 message(s) to the order queue." in _messages(response)
    assert _in_dlq() == 0
    assert queue_counts(settings.ORDER_QUEUE_URL)[0] == 2

    response = operator.post(
        reverse(DLQ), {"action": "redrive_selected", "message_id": str(uuid.uuid4())}, follow=True
    )
    assert "1 message(s) were no longer in the dead-letter queue." in _messages(response)


def test_delete_asks_for_confirmation_first(queues, operator):
    order = _failed_order()
    dead_id = dead_letter(order.pk)
    kept_id = dead_letter(_failed_order().pk)

    response = operator.post(reverse(DLQ), {"action": "delete_selected", "message_id": dead_id})
    assert response.status_code == 200
    html = response.content.decode()
    assert '<button type="submit" name="confirm" value="yes">Yes, delete</button>' in html
    assert f'<input type="hidden" name="message_id" value="{dead_id}">' in html
    assert kept_id not in html
    assert _in_dlq() == 2  # nothing deleted yet

    response = operator.post(
        reverse(DLQ), {"action": "delete_selected", "message_id": dead_id, "confirm": "yes"}
    )
    assert response.status_code == 302
    page = operator.get(response["Location"])
    assert "Deleted 1 message(s) from the dead-letter queue." in _messages(page)
    assert _in_dlq() == 1
    assert dead_id not in page.content.decode() and kept_id in page.content.decode()
    assert EmailEvent.objects.filter(
        notification__order=order, kind=EmailEventKind.DELETED, actor="operator"
    ).exists()


def test_acting_without_a_selection_does_nothing(queues, operator):
    dead_letter(_failed_order().pk)
    for action in ("redrive_selected", "delete_selected"):
        response = operator.post(reverse(DLQ), {"action": action}, follow=True)
        assert "Select at least one message first." in _messages(response)
    assert _in_dlq() == 1


def test_actions_need_the_csrf_token(queues):
    client = _client(
        _user("operator", "view_orderemail", "operate_queues"), enforce_csrf_checks=True
    )
    dead_letter(_failed_order().pk)
    response = client.post(reverse(DLQ), {"action": "redrive_all"})
    assert response.status_code == 403
    assert _in_dlq() == 1

    page = client.get(reverse(DLQ))
    token = page.context["csrf_token"]
    response = client.post(reverse(DLQ), {"action": "redrive_all", "csrfmiddlewaretoken": token})
    assert response.status_code == 302
    assert _in_dlq() == 0


# --- SQS down -----------------------------------------------------------------------------


def test_pages_say_so_when_sqs_cannot_be_reached(sqs_down, operator):
    for name in (HEALTH, DLQ):
        response = operator.get(reverse(name))
        assert response.status_code == 503
        assert "SQS cannot be reached" in response.content.decode()
        assert "Could not connect to the endpoint URL" in response.content.decode()

    response = operator.post(reverse(DLQ), {"action": "redrive_all"})
    assert response.status_code == 302
    messages = _messages(operator.get(reverse(HEALTH)))
    assert any(m.startswith("SQS cannot be reached, nothing was done") for m in messages)
