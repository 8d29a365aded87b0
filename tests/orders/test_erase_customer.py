"""manage.py erase_customer: one customer's personal data erased or anonymised, by Cognito sub
or email address, with totals and stock untouched and everyone else's data left alone."""

from __future__ import annotations

import io
import json
import uuid
from decimal import Decimal

import pytest
from django.contrib.admin.models import ADDITION, LogEntry
from django.contrib.contenttypes.models import ContentType
from django.core.management import CommandError, call_command

from notifications import feedback
from notifications.models import EmailEvent, OrderEmail, SesMessage, SuppressedAddress
from orders import idempotency, services
from orders.models import IdempotencyKey, Order, OrderLine, Product
from orders.privacy import ERASED_EMAIL, HOLDERS
from tests.factories import ProductFactory, StaffFactory

pytestmark = pytest.mark.django_db

ADDRESS = services.ShippingAddress(
    name="Carol Customer", line1="7 Privacy Lane", line2="Flat 2", city="Erfurt",
    postal_code="99084", country="DE",
)  # fmt: skip


DAVES = services.ShippingAddress(
    name="Dave Else", line1="1 Main St", city="Springfield", postal_code="12345", country="US"
)


def _order(customer_id: str, email: str, *, quantity: int = 2, address=ADDRESS) -> Order:
    return services.order_place(
        customer_id=customer_id,
        customer_email=email,
        shipping_address=address,
        lines=[services.LineRequest(sku="ERASE-1", quantity=quantity)],
    )


@pytest.fixture
def customers():
    """Carol (two orders, one under an older address; a bounce, a suppression, an
    idempotency key, an admin log entry) and Dave, who must be left alone."""
    ProductFactory(sku="ERASE-1", price=Decimal("10.00"), stock=100)
    carol, dave = f"sub-{uuid.uuid4()}", f"sub-{uuid.uuid4()}"
    first = _order(carol, "carol.old@example.com")

    def place() -> dict:
        order = _order(carol, "Carol@Example.com", quantity=3)
        return {"id": order.pk, "customer_email": order.customer_email}

    second = idempotency.order_answer_once(
        customer_id=carol, idempotency_key="k-1", fingerprint="f" * 64, answer=place
    )
    second_order = Order.objects.get(pk=second.body["id"])
    record = OrderEmail.objects.get(order=second_order)
    SesMessage.objects.create(message_id="ses-carol-1", email=record)
    record.status = "sent"
    record.last_error = "SES MessageRejected: ... failed the check: carol@example.com"
    record.save()
    bounce = {
        "bounceType": "Permanent",
        "bouncedRecipients": [{"emailAddress": "carol@example.com", "status": "5.1.1"}],
    }
    feedback.ses_bounce_record(
        ses_message_id="ses-carol-1", sns_message_id=str(uuid.uuid4()), bounce=bounce
    )
    suppression = SuppressedAddress.objects.get(email="carol@example.com")
    staff = StaffFactory(username="ops")
    LogEntry.objects.create(
        user=staff,
        content_type=ContentType.objects.get_for_model(SuppressedAddress),
        object_id=str(suppression.pk),
        object_repr=str(suppression),
        action_flag=ADDITION,
    )
    dave_order = _order(dave, "dave@example.com", quantity=1, address=DAVES)
    feedback.suppression_add(email="dave@example.com", reason="complaint")
    return {"carol": carol, "carol_orders": [first, second_order], "dave_order": dave_order}


def _run(*args: str) -> str:
    out = io.StringIO()
    call_command("erase_customer", *args, stdout=out)
    return out.getvalue()


def _snapshot() -> dict:
    return {
        "totals": dict(Order.objects.values_list("pk", "total")),
        "lines": sorted(OrderLine.objects.values_list("order_id", "sku", "quantity", "line_total")),
        "stock": dict(Product.objects.values_list("sku", "stock")),
    }


def _everything() -> str:
    """Every row the two apps hold (and the admin log), as text."""
    rows = [
        *Order.objects.values(),
        *OrderEmail.objects.values(),
        *SesMessage.objects.values(),
        *EmailEvent.objects.values(),
        *SuppressedAddress.objects.values(),
        *IdempotencyKey.objects.values(),
        *LogEntry.objects.values("object_repr", "change_message"),
    ]
    return json.dumps(rows, default=str).lower()


def test_erasing_by_sub_removes_the_customers_data_and_keeps_the_books(customers):
    before = _snapshot()
    dave = Order.objects.filter(pk=customers["dave_order"].pk).values().get()

    output = _run("--sub", customers["carol"], "--yes")

    assert "customer: 1 Cognito sub(s), 2 email address(es), 2 order(s)" in output
    for line in (
        "orders anonymised (totals, lines and stock unchanged): 2",
        "idempotency keys deleted: 1",
        "confirmation emails cleared: 1",
        "email history entries scrubbed: 1",
        "suppressed addresses removed: 1",
        "admin log entries scrubbed: 1",
    ):
        assert line in output, output
    # Nothing of Carol is left anywhere: not her sub, addresses, name or street.
    everything = _everything()
    for trace in (customers["carol"], "carol", "privacy lane", "flat 2", "99084", "erfurt"):
        assert trace.lower() not in everything, trace
    for order in customers["carol_orders"]:
        order.refresh_from_db()
        assert order.customer_email == ERASED_EMAIL
        assert order.shipping_name == order.shipping_line1 == order.shipping_city == ""
        assert order.shipping_country == "DE"  # kept for the tax records
        assert order.customer_id.startswith("erased-")
    assert (
        len({o.customer_id for o in Order.objects.exclude(customer_email="dave@example.com")}) == 1
    )
    # The books: totals, lines and stock exactly as they were.
    assert _snapshot() == before
    assert sum(Order.objects.values_list("total", flat=True)) == Decimal("60.00")
    # Dave is untouched, his suppression too.
    assert Order.objects.filter(pk=customers["dave_order"].pk).values().get() == dave
    assert SuppressedAddress.objects.filter(email="dave@example.com").exists()
    # The history keeps what happened, without the address; her SES message ids are gone.
    assert EmailEvent.objects.filter(detail__contains="[erased]").count() == 1
    assert not SesMessage.objects.filter(message_id="ses-carol-1").exists()

    # Erasing again finds nothing.
    again = _run("--sub", customers["carol"], "--yes")
    assert "customer: 1 Cognito sub(s), 0 email address(es), 0 order(s)" in again
    assert "nothing to erase" in again


def test_erasing_by_email_finds_the_orders_under_every_address_of_that_customer(customers):
    output = _run("--email", "CAROL@example.com", "--yes")
    # Found by the address, then by her sub: the order under her older address too.
    assert "customer: 1 Cognito sub(s), 2 email address(es), 2 order(s)" in output
    assert not Order.objects.filter(customer_id=customers["carol"]).exists()
    everything = _everything()
    assert "carol" not in everything, everything[max(0, everything.find("carol") - 300) :][:400]


def test_a_dry_run_counts_and_changes_nothing(customers):
    before = _everything()
    output = _run("--sub", customers["carol"], "--dry-run")
    assert "would change: orders anonymised (totals, lines and stock unchanged): 2" in output
    assert "would change: suppressed addresses removed: 1" in output
    assert _everything() == before


def test_it_asks_first(customers, monkeypatch):
    before = _everything()
    monkeypatch.setattr("builtins.input", lambda prompt: "no")
    with pytest.raises(CommandError, match="Cancelled: nothing was changed"):
        _run("--sub", customers["carol"])
    assert _everything() == before
    with pytest.raises(CommandError, match="give --sub, --email or both"):
        _run()


def test_every_holder_reports_what_it_changed():
    """The one place a new holder of personal data (an outbox's rows) is added."""
    assert len(HOLDERS) >= 3
    assert all(callable(holder) for holder in HOLDERS)
