"""Staff operate the confirmation emails in a real browser: resend, and redrive the DLQ.

A headless Chromium logs into the admin of a live server (in this process's thread), clicks
through the pages as staff would and reads what they show; the order queue and its
dead-letter queue are the session emulator's, checked with boto3 behind the browser's back.
"""

from __future__ import annotations

import pytest
from django.conf import settings
from django.urls import reverse
from selenium.webdriver.support.ui import Select

from notifications.models import EmailStatus, OrderEmail
from orders import services
from orders.models import Order, Product
from shop.aws.sqs.envelope import envelope_decode
from tests.factories import ProductFactory, StaffFactory
from tests.outbox import relay_once
from tests.pipeline import DLQ_URL, queue_counts, sqs, task_order_id, wait_for

pytestmark = [pytest.mark.browser, pytest.mark.subprocess]  # Chromium and its driver

USERNAME = "opsboss"
PASSWORD = "Browser-Passw0rd!"
RESEND_LABEL = "Resend confirmation email"
REJECTED = "MessageRejected: Email address is not verified: nobody@example.com"


@pytest.fixture
def staff(browser):
    """A superuser, logged in through the admin's own login form."""
    StaffFactory(
        username=USERNAME, email="opsboss@example.com", password=PASSWORD, is_superuser=True
    )
    browser.login(USERNAME, PASSWORD)
    return browser


def _order(email: str) -> Order:
    if not Product.objects.filter(sku="MUG-001").exists():
        ProductFactory(sku="MUG-001", stock=100)
    return services.order_place(
        customer_id=f"cust-{email}",
        customer_email=email,
        shipping_address=services.ShippingAddress(
            name="Alice Example", line1="1 Main St", city="Springfield", postal_code="12345",
            country="US",
        ),
        lines=[services.LineRequest(sku="MUG-001", quantity=1)],
    )  # fmt: skip


def _fail(order: Order) -> None:
    OrderEmail.objects.filter(order=order).update(
        status=EmailStatus.FAILED, attempts=3, last_error=REJECTED
    )


def _order_id(body: str) -> int:
    """The order id of a confirmation task, from an SQS body as kombu's transport encodes it."""
    envelope = envelope_decode(body)
    assert envelope.task_name in (settings.EMAIL_TASK_NAME, settings.CONFIRMATION_TASK_NAME)
    return task_order_id(envelope.args, envelope.kwargs)


def _receive(queue_url: str, **options) -> list[dict]:
    """One ReceiveMessage call that returns at once (the queues long-poll by default)."""
    return (
        sqs().receive_message(QueueUrl=queue_url, WaitTimeSeconds=0, **options).get("Messages", [])
    )


def _take(queue_url: str) -> list[int]:
    """Publish the outbox (as the relay does), then receive and delete every message of a
    queue; the order ids they carry, sorted."""
    relay_once()
    order_ids = []
    while batch := _receive(queue_url, MaxNumberOfMessages=10, VisibilityTimeout=30):
        for message in batch:
            order_ids.append(_order_id(message["Body"]))
            sqs().delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])
    return sorted(order_ids)


def _dead_letter(order: Order) -> str:
    """Let SQS itself move the order's queued task to the DLQ; returns its MessageId there.

    The message is received from the order queue (and released at once) until SQS has
    counted more than the queue's maxReceiveCount receives and moved it, as it does after a
    worker failed that often.
    """

    relay_once()  # the order's task on the queue, as the relay publishes it

    def moved() -> list[dict]:
        _receive(settings.ORDER_QUEUE_URL, MaxNumberOfMessages=1, VisibilityTimeout=0)
        return _receive(DLQ_URL, MaxNumberOfMessages=10, VisibilityTimeout=0)

    [message] = wait_for(moved, timeout=20, what="the order's task in the DLQ", every=0.1)
    assert _order_id(message["Body"]) == order.pk
    assert queue_counts(settings.ORDER_QUEUE_URL) == (0, 0)
    assert queue_counts(DLQ_URL) == (1, 0)
    message_id = message["MessageId"]
    return message_id


def _success(browser, expected: str) -> None:
    messages = browser.messages()
    assert expected in messages, f"expected the admin message {expected!r}, got {messages!r}"


def test_staff_filter_open_and_resend_confirmation(staff, queues):
    browser = staff
    pending = _order("patty@example.com")
    failed = _order("fred@example.com")
    _fail(failed)
    assert _take(settings.ORDER_QUEUE_URL) == sorted([pending.pk, failed.pk])  # placed

    # The order list, filtered by email status.
    browser.get("/admin/orders/order/")
    browser.find("#result_list")
    browser.shot("order-list")
    failed_filter = browser.find(
        '#changelist-filter a[href*="confirmation_email__status__exact=failed"]'
    )
    title = failed_filter.find_element("xpath", "ancestor::details[1]/summary").text
    browser.submit(failed_filter)
    browser.shot("order-list-failed")
    assert "confirmation_email__status__exact=failed" in browser.path
    rows = browser.find("#result_list tbody").text
    assert "fred@example.com" in rows
    assert "patty@example.com" not in rows

    # The failed order's page, and its resend button.
    browser.submit(browser.find(f'#result_list a[href*="/admin/orders/order/{failed.pk}/change/"]'))
    browser.find("#order_form")
    assert REJECTED in browser.text()
    browser.shot("order-page")
    button = browser.xpath(
        f"//form[.//*[normalize-space()='{RESEND_LABEL}' or @value='{RESEND_LABEL}']]"
        f"//*[(self::button or self::input) and (normalize-space()='{RESEND_LABEL}'"
        f" or @value='{RESEND_LABEL}')]"
    )
    form = button.find_element("xpath", "ancestor::form[1]")
    assert form.get_attribute("method").lower() == "post"
    assert form.get_attribute("action").endswith(
        f"/admin/orders/order/{failed.pk}/resend-confirmation/"
    )
    browser.submit(button)
    browser.shot("order-page-resent")
    _success(browser, f"Queued the confirmation email again for order #{failed.pk}.")
    assert browser.path.startswith(f"/admin/orders/order/{failed.pk}/change/")
    history = browser.find("table.email-history").text
    assert "resend" in history.lower(), history
    assert OrderEmail.objects.get(order=failed).status == EmailStatus.PENDING
    assert _take(settings.ORDER_QUEUE_URL) == [failed.pk]  # published again, once

    # Both orders at once, with the changelist action.
    browser.get("/admin/orders/order/")
    for order in (pending, failed):
        browser.find(f'#result_list input.action-select[value="{order.pk}"]').click()
    action = Select(browser.find("#changelist-form select[name=action]"))
    action.select_by_value("resend_confirmation")
    assert action.first_selected_option.text == RESEND_LABEL
    browser.shot("order-list-action")
    browser.submit(browser.find("#changelist-form button[name=index]"))
    browser.shot("order-list-resent")
    _success(browser, "Queued the confirmation email again for 2 order(s).")
    assert _take(settings.ORDER_QUEUE_URL) == sorted([pending.pk, failed.pk])
    assert queue_counts(DLQ_URL) == (0, 0)
    # The contract names the filter "By email status" (the field alone would say "By status").
    assert title.strip().lower() == "by email status", f"the filter is titled {title!r}"


def test_staff_redrive_a_dead_lettered_confirmation(staff, queues):
    browser = staff
    order = _order("dora@example.com")
    _fail(order)
    message_id = _dead_letter(order)

    # From the admin index's operations box to the DLQ page.
    dead_letters = reverse("admin:notifications_dead_letters")
    browser.get("/admin/")
    operations = browser.find("div.module#operations")
    health = operations.find_element("link text", "Queue health")
    assert health.get_attribute("href").endswith(reverse("admin:notifications_queue_health"))
    browser.shot("admin-index")
    browser.submit(operations.find_element("link text", "Dead-letter queue"))
    assert browser.path == dead_letters
    checkbox = browser.find(
        f'form[method=post] input[type=checkbox][name=message_id][value="{message_id}"]'
    )
    row = checkbox.find_element("xpath", "ancestor::tr[1]")
    cells = [cell.text.strip() for cell in row.find_elements("css selector", "td, th")]
    browser.shot("dead-letters")
    assert str(order.pk) in cells, cells
    assert "dora@example.com" in cells, cells
    assert any(cell.startswith(REJECTED[:40]) for cell in cells), cells

    checkbox.click()
    browser.submit(browser.find('button[type=submit][name=action][value="redrive_selected"]'))
    browser.shot("dead-letters-redriven")
    assert browser.path == dead_letters
    _success(browser, "Redrove 1 message(s) to the order queue.")
    assert not browser.find_all(f'input[name=message_id][value="{message_id}"]')

    # Behind the browser's back: the task is on the order queue again, the DLQ is empty.
    assert queue_counts(DLQ_URL) == (0, 0)
    assert _take(settings.ORDER_QUEUE_URL) == [order.pk]
    # The contract's path for the page.
    assert dead_letters == "/admin/notifications/dead-letters/", dead_letters


def test_staff_ship_an_order_with_its_tracking_details(staff, queues):
    browser = staff
    order = _order("sam@example.com")
    Order.objects.filter(pk=order.pk).update(status="confirmed")  # its email went out

    browser.get(f"/admin/orders/order/{order.pk}/change/")
    browser.submit(browser.find("a.ship-order"))
    assert browser.path == f"/admin/orders/order/ship/?ids={order.pk}"
    browser.find(f"input[name=o{order.pk}-carrier]").send_keys("DHL")
    browser.find(f"input[name=o{order.pk}-tracking_number]").send_keys("JD014600")
    browser.find(f"input[name=o{order.pk}-tracking_url]").send_keys("javascript:alert(1)")
    browser.shot("ship-page")
    browser.submit(browser.find("#ship-orders input[type=submit][name=ship]"))
    assert "Enter a valid URL." in browser.text()  # refused on the page, nothing shipped
    order.refresh_from_db()
    assert order.status == "confirmed"

    url = browser.find(f"input[name=o{order.pk}-tracking_url]")
    url.clear()
    url.send_keys("https://dhl.example/track?n=JD014600")
    browser.submit(browser.find("#ship-orders input[type=submit][name=ship]"))
    browser.shot("order-shipped")
    _success(browser, f"Marked shipped: order(s) #{order.pk}.")
    assert browser.path.startswith(f"/admin/orders/order/{order.pk}/change/")
    link = browser.find('.field-tracking_link a[href^="https://dhl.example/"]')
    assert link.get_attribute("href") == "https://dhl.example/track?n=JD014600"
    history = browser.find("table.status-history").text
    assert "Confirmed" in history and "Shipped" in history and USERNAME in history, history
    assert not browser.find_all("a.ship-order") and not browser.find_all("a.cancel-order")
    order.refresh_from_db()
    assert (order.status, order.carrier, order.tracking_number) == ("shipped", "DHL", "JD014600")
    # The customer's "your order has shipped" email is recorded, its task in the outbox.
    shipped = OrderEmail.objects.get(order=order, kind="shipped")
    assert shipped.status == EmailStatus.PENDING
    relay_once()
    assert _take(settings.ORDER_QUEUE_URL) == [order.pk, order.pk]  # confirmation, shipped
