"""Stock edited in the admin is never a lost update.

The fault, injected from outside: a staff member's page (the product list, the product
form, the adjustment form) is loaded, an order is placed, and then the page is posted exactly
as it was rendered, with Django's test client. Stock must never come back up by itself: it
changes by orders and by recorded adjustments only (who, when, delta, reason, resulting
stock). The race of an adjustment and an order runs on PostgreSQL's row locks.
"""

from __future__ import annotations

import threading
from decimal import Decimal
from html.parser import HTMLParser

import pytest
from django.contrib.auth.models import Permission
from django.db import connection, connections
from django.test import Client

from orders import services
from orders.models import Product, StockAdjustment
from tests.factories import ProductFactory, StaffFactory

pytestmark = pytest.mark.django_db

ADDRESS = services.ShippingAddress(
    name="A", line1="1 Main St", city="Town", postal_code="1", country="US"
)


class _Form(HTMLParser):
    """The fields of one <form> as a browser would submit them (inputs, selects, textareas)."""

    def __init__(self, form_id: str | None = None, action: str | None = None):
        super().__init__()
        self.form_id, self.action = form_id, action
        self.inside = False
        self.data: dict[str, str] = {}
        self._select: str | None = None
        self._first_option: str | None = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "form":
            self.inside = (self.form_id and a.get("id") == self.form_id) or (
                self.action and a.get("action") == self.action
            )
        if not self.inside:
            return
        if tag == "input" and a.get("name"):
            kind = a.get("type", "text")
            if kind in ("checkbox", "radio") and "checked" not in a:
                return
            if kind in ("submit", "button", "file"):
                return
            self.data[a["name"]] = a.get("value", "on" if kind == "checkbox" else "")
        elif tag == "select":
            self._select, self._first_option = a.get("name"), None
        elif tag == "option" and self._select:
            value = a.get("value", "")
            if self._first_option is None:
                self._first_option = value
                self.data.setdefault(self._select, value)
            if "selected" in a:
                self.data[self._select] = value

    def handle_endtag(self, tag):
        if tag == "form":
            self.inside = False
        elif tag == "select":
            self._select = None


def rendered_form(html: str, *, form_id: str | None = None, action: str | None = None) -> dict:
    parser = _Form(form_id, action)
    parser.feed(html)
    assert parser.data, f"no form {form_id or action} on the page"
    return parser.data


def place(sku: str, quantity: int) -> None:
    services.order_place(
        customer_id="c",
        customer_email="c@example.com",
        shipping_address=ADDRESS,
        lines=[services.LineRequest(sku=sku, quantity=quantity)],
    )


def staff(name: str, *permissions: str, superuser: bool = False) -> Client:
    user = StaffFactory(username=name, is_superuser=superuser)
    for codename in permissions:
        user.user_permissions.add(Permission.objects.get(codename=codename))
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    return client


def stock(product: Product) -> int:
    return Product.objects.get(pk=product.pk).stock


def explained(product: Product, initial: int, ordered: int) -> bool:
    """Stock never rises by itself: what it is now is the initial stock, minus what orders
    took, plus the recorded adjustments."""
    deltas = sum(a.delta for a in StockAdjustment.objects.filter(product=product))
    return stock(product) == initial - ordered + deltas


def test_the_stale_product_list_saved_after_an_order_puts_no_stock_back():
    product = ProductFactory(sku="LIST", stock=10)
    admin = staff("alice", superuser=True)
    page = admin.get("/admin/orders/product/").content.decode()
    assert 'name="form-0-stock"' not in page  # not editable in the list
    stale = rendered_form(page, form_id="changelist-form")

    place("LIST", 3)
    del stale["form-0-is_active"]  # the list's one editable column, unticked
    response = admin.post("/admin/orders/product/", {**stale, "_save": "Save"})

    assert response.status_code == 302, response.content.decode()[-2000:]
    product.refresh_from_db()
    assert product.is_active is False  # the change staff made was saved...
    assert product.stock == 7  # ...and the 3 units the order took stay taken
    assert explained(product, 10, 3)


def test_the_stale_product_page_saved_after_an_order_puts_no_stock_back():
    product = ProductFactory(sku="PAGE", price=Decimal("10.00"), stock=10)
    admin = staff("alice", superuser=True)
    page = admin.get(f"/admin/orders/product/{product.pk}/change/").content.decode()
    stale = rendered_form(page, form_id="product_form")
    assert "stock" not in stale  # read-only in the form

    place("PAGE", 4)
    stale["price"] = "12.00"
    stale["stock"] = "10"  # even a forged field is ignored
    response = admin.post(f"/admin/orders/product/{product.pk}/change/", stale)

    assert response.status_code == 302, response.content.decode()[-2000:]
    product.refresh_from_db()
    assert str(product.price) == "12.00"
    assert product.stock == 6
    assert explained(product, 10, 4)


def test_adjustments_are_applied_to_the_stock_as_it_is_and_recorded():
    product = ProductFactory(sku="ADJ", stock=10)
    admin = staff("bob", "view_product", "change_product", "adjust_stock")
    url = f"/admin/orders/product/{product.pk}/adjust-stock/"
    page = admin.get(f"/admin/orders/product/{product.pk}/change/").content.decode()
    stale = rendered_form(page, action=url)  # rendered with stock 10
    place("ADJ", 2)

    # Received +5 and damaged -1 from the stale page: deltas, applied to the stock now.
    for kind, quantity in (("received", 5), ("damaged", 1)):
        response = admin.post(url, {**stale, "kind": kind, "quantity": quantity, "note": "box"})
        assert response.status_code == 302
    assert stock(product) == 12

    page = admin.get(f"/admin/orders/product/{product.pk}/change/").content.decode()
    assert "Stock of ADJ: 13 -&gt; 12 (damaged or lost, -1)." in page
    assert "+5" in page and "Received" in page and "bob" in page  # the history
    assert [
        (a.delta, a.reason, a.stock_after, a.actor, a.note) for a in product.adjustments.all()
    ] == [
        (-1, "damaged", 12, "bob", "box"),
        (5, "received", 13, "bob", "box"),
    ]
    assert explained(product, 10, 2)


def test_a_count_from_a_stale_page_is_refused_with_a_clear_message():
    product = ProductFactory(sku="COUNT", stock=10)
    admin = staff("alice", superuser=True)
    url = f"/admin/orders/product/{product.pk}/adjust-stock/"
    page = admin.get(f"/admin/orders/product/{product.pk}/change/").content.decode()
    stale = rendered_form(page, action=url)
    assert stale["expected"] == "10"
    place("COUNT", 3)

    response = admin.post(url, {**stale, "kind": "counted", "quantity": 20}, follow=True)

    text = response.content.decode()
    assert "Stock not changed: The stock of COUNT is now 7, not 10 as on your page" in text
    assert stock(product) == 7
    assert not product.adjustments.exists()

    fresh = rendered_form(text, action=url)  # the page now shows 7
    admin.post(url, {**fresh, "kind": "counted", "quantity": 20, "note": "stocktake"})
    assert stock(product) == 20
    [count] = product.adjustments.all()
    assert (count.delta, count.reason, count.stock_after) == (13, "counted", 20)
    assert explained(product, 10, 3)


def test_an_adjustment_below_zero_or_malformed_changes_nothing():
    product = ProductFactory(sku="LOW", stock=2)
    admin = staff("alice", superuser=True)
    url = f"/admin/orders/product/{product.pk}/adjust-stock/"
    page = admin.get(f"/admin/orders/product/{product.pk}/change/").content.decode()
    form = rendered_form(page, action=url)
    for data, message in (
        ({"kind": "damaged", "quantity": 3}, "Only 2 of LOW in stock: cannot take 3 away."),
        ({"kind": "received", "quantity": 0}, "Add or take away at least 1."),
        ({"kind": "received", "quantity": -4}, "Stock not changed"),
        ({"kind": "imported", "quantity": 4}, "Stock not changed"),
        ({"kind": "received", "quantity": "ten"}, "Stock not changed"),
    ):
        text = admin.post(url, {**form, **data}, follow=True).content.decode()
        assert message in text, data
    assert stock(product) == 2
    assert not product.adjustments.exists()


def test_adjusting_needs_the_permission_and_a_csrf_token():
    product = ProductFactory(sku="PERM", stock=5)
    url = f"/admin/orders/product/{product.pk}/adjust-stock/"
    editor = staff("editor", "view_product", "change_product")
    page = editor.get(f"/admin/orders/product/{product.pk}/change/").content.decode()
    assert url not in page  # no form for them
    token = rendered_form(page, form_id="product_form")["csrfmiddlewaretoken"]
    data = {"csrfmiddlewaretoken": token, "kind": "received", "quantity": 1, "expected": 5}
    assert editor.post(url, data).status_code == 403
    assert editor.get(url).status_code == 405  # POST only

    adjuster = staff("adjuster", "view_product", "change_product", "adjust_stock")
    assert adjuster.post(url, {"kind": "received", "quantity": 1, "expected": 5}).status_code == 403
    assert stock(product) == 5


def test_demo_data_reload_records_its_stock_change():
    product, created = services.product_upsert(
        sku="DEMO", name="Demo", price="1.00", stock=5, actor="load_demo_products"
    )
    assert created and product.stock == 5
    place("DEMO", 2)
    product, created = services.product_upsert(
        sku="DEMO", name="Demo", price="1.00", stock=5, actor="load_demo_products"
    )
    assert not created and product.stock == 5
    assert [(a.delta, a.reason, a.actor) for a in product.adjustments.all()] == [
        (2, "imported", "load_demo_products"),
        (5, "imported", "load_demo_products"),
    ]
    assert explained(product, 0, 2)


def _race(product: Product) -> dict[str, str]:
    """An order for 3, a count "set to 20, expecting 10", received +4 and damaged -1, each from
    its own thread and connection, released at once: what became of each."""
    barrier = threading.Barrier(4)
    results: dict[str, str] = {}

    def run(name: str, action) -> None:
        try:
            barrier.wait()
            action()
            results[name] = "done"
        except (services.StaleStock, services.InsufficientStock) as exc:
            results[name] = type(exc).__name__
        except Exception as exc:  # anything else is a bug the test must show
            results[name] = f"error: {exc!r}"
        finally:
            connections.close_all()

    def adjust(**kwargs):
        return lambda: services.product_stock_adjust(product_id=product.pk, actor="racer", **kwargs)

    actions = {
        "order": lambda: place(product.sku, 3),
        "count": adjust(reason="counted", set_to=20, expected=10),
        "received": adjust(reason="received", delta=4),
        "damaged": adjust(reason="damaged", delta=-1),
    }
    threads = [threading.Thread(target=run, args=item) for item in actions.items()]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    return results


@pytest.mark.postgres
@pytest.mark.skipif(connection.vendor != "postgresql", reason="needs PostgreSQL's row locks")
@pytest.mark.django_db(transaction=True)
def test_an_adjustment_racing_an_order_is_never_a_lost_update():
    """Many rounds of ``_race`` on a product with 10: the count lands first (20, then the
    rest: 20) or is refused as stale (10 - 3 + 4 - 1 = 10), never "20" after an order took
    its units; the deltas always add up, and every recorded "stock after" is exact."""
    outcomes = set()
    for round_ in range(12):
        product = ProductFactory(sku=f"RACE-{round_}", stock=10)
        results = _race(product)

        assert not [r for r in results.values() if r.startswith("error")], results
        assert results["order"] == results["received"] == results["damaged"] == "done"
        assert results["count"] in ("done", "StaleStock")
        assert explained(product, 10, 3), results
        if results["count"] == "done":
            # The count saw exactly 10: it ran first, everything else after it.
            assert stock(product) == 20 - 3 + 4 - 1
        else:
            assert stock(product) == 10 - 3 + 4 - 1
        # Each recorded "stock after" is the stock the adjustment really left: each one
        # started from the previous one's, or from that less the order's 3 units.
        previous, order_seen = 10, False
        for adjustment in product.adjustments.order_by("id"):
            start = adjustment.stock_after - adjustment.delta
            if start == previous - 3 and not order_seen:
                order_seen = True
            else:
                assert start == previous, (results, start, previous)
            previous = adjustment.stock_after
        assert stock(product) == previous - (0 if order_seen else 3)
        outcomes.add(results["count"])
    assert outcomes <= {"done", "StaleStock"}  # which way a round goes is the scheduler's
