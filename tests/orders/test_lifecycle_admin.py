"""Staff ship and cancel orders in the admin: from an order's page or from the list.

Driven with Django's test client with CSRF checks on, posting the forms as the pages render
them; the outcome is read from the database (status, tracking, status changes, stock and its
adjustments) and from the messages staff see.
"""

from __future__ import annotations

import re
from html import unescape

import pytest
from django.contrib.auth.models import Permission
from django.test import Client

from orders import services
from orders.models import Order, OrderStatus, OrderStatusChange, Product, StockAdjustment
from tests.factories import ProductFactory, StaffFactory

pytestmark = pytest.mark.django_db

ADDRESS = services.ShippingAddress(
    name="A", line1="1 Main St", city="Town", postal_code="1", country="US"
)


def _order(status: str = OrderStatus.CONFIRMED, quantity: int = 1) -> Order:
    if not Product.objects.filter(sku="MUG").exists():
        ProductFactory(sku="MUG", stock=100)
    order = services.order_place(
        customer_id="c",
        customer_email="c@example.com",
        shipping_address=ADDRESS,
        lines=[services.LineRequest(sku="MUG", quantity=quantity)],
    )
    Order.objects.filter(pk=order.pk).update(status=status)
    return Order.objects.get(pk=order.pk)


def _staff(name: str, *permissions: str) -> Client:
    user = StaffFactory(username=name)
    for codename in ("view_order", *permissions):
        user.user_permissions.add(Permission.objects.get(codename=codename))
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    return client


def _csrf(html: str) -> str:
    return re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', html).group(1)


def _messages(response) -> list[str]:
    return [
        unescape(m)
        for m in re.findall(
            r'<li class="(?:success|error|warning)">(.*?)</li>', response.content.decode()
        )
    ]


def _stock() -> int:
    return Product.objects.get(sku="MUG").stock


def test_staff_ship_one_order_from_its_page_with_tracking_details():
    order = _order()
    client = _staff("shipper", "ship_order")
    page = client.get(f"/admin/orders/order/{order.pk}/change/").content.decode()
    assert f'href="/admin/orders/order/ship/?ids={order.pk}"' in page

    form = client.get(f"/admin/orders/order/ship/?ids={order.pk}")
    assert form.status_code == 200
    html = form.content.decode()
    for field in ("carrier", "tracking_number", "tracking_url"):
        assert f'name="o{order.pk}-{field}"' in html
    response = client.post(
        "/admin/orders/order/ship/",
        {
            "csrfmiddlewaretoken": _csrf(html),
            "ids": str(order.pk),
            f"o{order.pk}-carrier": "DHL",
            f"o{order.pk}-tracking_number": "JD014600",
            f"o{order.pk}-tracking_url": "https://dhl.example/track?n=JD014600",
        },
        follow=True,
    )

    assert response.redirect_chain[0][0] == f"/admin/orders/order/{order.pk}/change/"
    assert _messages(response) == [f"Marked shipped: order(s) #{order.pk}."]
    order.refresh_from_db()
    assert order.status == OrderStatus.SHIPPED
    assert (order.carrier, order.tracking_number, order.tracking_url) == (
        "DHL",
        "JD014600",
        "https://dhl.example/track?n=JD014600",
    )
    change = OrderStatusChange.objects.get(order=order)
    assert (change.from_status, change.to_status, change.actor) == (
        "confirmed",
        "shipped",
        "shipper",
    )
    # The order page now shows the tracking link and the change; no ship or cancel link.
    page = response.content.decode()
    assert 'href="https://dhl.example/track?n=JD014600"' in page
    assert "shipper" in page
    assert "/admin/orders/order/ship/?ids=" not in page
    assert "/admin/orders/order/cancel/?ids=" not in page


def test_bulk_ship_from_the_list_ships_the_confirmed_and_says_why_not_the_others():
    confirmed = [_order(), _order()]
    placed = _order(OrderStatus.PLACED)
    client = _staff("shipper", "ship_order")
    listing = client.get("/admin/orders/order/").content.decode()
    assert 'value="mark_shipped"' in listing
    ids = [o.pk for o in (*confirmed, placed)]
    action = client.post(
        "/admin/orders/order/",
        {
            "csrfmiddlewaretoken": _csrf(listing),
            "action": "mark_shipped",
            "_selected_action": [str(pk) for pk in ids],
        },
    )
    assert action.status_code == 302
    page = client.get(action["Location"])
    html = page.content.decode()
    assert "This order is placed: it will not be shipped." in html
    data = {"csrfmiddlewaretoken": _csrf(html), "ids": ",".join(map(str, sorted(ids)))}
    data[f"o{confirmed[0].pk}-tracking_number"] = "T-1"  # the other is shipped untracked

    response = client.post("/admin/orders/order/ship/", data, follow=True)

    assert response.redirect_chain[0][0] == "/admin/orders/order/"
    assert _messages(response) == [
        f"Marked shipped: order(s) #{confirmed[0].pk}, #{confirmed[1].pk}.",
        f"Order #{placed.pk} cannot be shipped: its confirmation email has not gone out yet "
        "(status placed); only a confirmed order can ship.",
    ]
    statuses = dict(Order.objects.filter(pk__in=ids).values_list("pk", "status"))
    assert statuses == {confirmed[0].pk: "shipped", confirmed[1].pk: "shipped", placed.pk: "placed"}
    assert Order.objects.get(pk=confirmed[0].pk).tracking_number == "T-1"
    assert Order.objects.get(pk=confirmed[1].pk).tracking_number == ""


@pytest.mark.parametrize(
    "url", ["javascript:alert(document.cookie)", "ftp://example.com/x", "track.example/x"]
)
def test_a_tracking_url_that_is_not_http_or_https_is_refused_on_the_page(url):
    order = _order()
    client = _staff("shipper", "ship_order")
    html = client.get(f"/admin/orders/order/ship/?ids={order.pk}").content.decode()
    response = client.post(
        "/admin/orders/order/ship/",
        {
            "csrfmiddlewaretoken": _csrf(html),
            "ids": str(order.pk),
            f"o{order.pk}-tracking_url": url,
        },
    )
    assert response.status_code == 200  # the page again, with the field's error
    assert "Enter a valid URL." in response.content.decode()
    order.refresh_from_db()
    assert order.status == OrderStatus.CONFIRMED and order.tracking_url == ""


def test_staff_cancel_an_order_from_its_page_and_its_stock_comes_back():
    order = _order(OrderStatus.CONFIRMED, quantity=3)
    assert _stock() == 97
    client = _staff("canceller", "cancel_order")
    page = client.get(f"/admin/orders/order/{order.pk}/change/").content.decode()
    assert f'href="/admin/orders/order/cancel/?ids={order.pk}"' in page
    html = client.get(f"/admin/orders/order/cancel/?ids={order.pk}").content.decode()
    assert "Yes, cancel" in html

    response = client.post(
        "/admin/orders/order/cancel/",
        {"csrfmiddlewaretoken": _csrf(html), "ids": str(order.pk), "note": "out of paint"},
        follow=True,
    )

    assert _messages(response) == [f"Cancelled order(s) #{order.pk}."]
    order.refresh_from_db()
    assert order.status == OrderStatus.CANCELLED
    assert _stock() == 100
    (returned,) = StockAdjustment.objects.filter(reason="returned")
    assert (returned.delta, returned.actor, returned.stock_after) == (3, "canceller", 100)
    assert returned.note == f"order #{order.pk} cancelled: out of paint"
    change = OrderStatusChange.objects.get(order=order)
    assert (change.from_status, change.to_status, change.actor, change.note) == (
        "confirmed",
        "cancelled",
        "canceller",
        "out of paint",
    )


def test_a_shipped_order_cannot_be_cancelled_and_the_admin_says_so():
    shipped, placed = _order(OrderStatus.SHIPPED), _order(OrderStatus.PLACED)
    stock = _stock()
    client = _staff("canceller", "cancel_order")
    page = client.get(f"/admin/orders/order/{shipped.pk}/change/").content.decode()
    assert "/admin/orders/order/cancel/?ids=" not in page  # no button for it
    listing = client.get("/admin/orders/order/").content.decode()
    action = client.post(
        "/admin/orders/order/",
        {
            "csrfmiddlewaretoken": _csrf(listing),
            "action": "cancel_orders",
            "_selected_action": [str(shipped.pk), str(placed.pk)],
        },
    )
    html = client.get(action["Location"]).content.decode()
    assert "(cannot be cancelled: it is shipped)" in html

    response = client.post(
        "/admin/orders/order/cancel/",
        {"csrfmiddlewaretoken": _csrf(html), "ids": f"{shipped.pk},{placed.pk}", "note": ""},
        follow=True,
    )

    assert _messages(response) == [
        f"Cancelled order(s) #{placed.pk}.",
        f"Order #{shipped.pk} cannot be cancelled: it has shipped already.",
    ]
    assert Order.objects.get(pk=shipped.pk).status == OrderStatus.SHIPPED
    assert Order.objects.get(pk=placed.pk).status == OrderStatus.CANCELLED
    assert _stock() == stock + 1  # the placed order's unit only


def test_shipping_and_cancelling_need_their_permission_and_a_csrf_token():
    order = _order()
    viewer = _staff("viewer")
    assert viewer.get(f"/admin/orders/order/ship/?ids={order.pk}").status_code == 403
    assert viewer.get(f"/admin/orders/order/cancel/?ids={order.pk}").status_code == 403
    listing = viewer.get("/admin/orders/order/").content.decode()
    assert 'value="mark_shipped"' not in listing and 'value="cancel_orders"' not in listing
    page = viewer.get(f"/admin/orders/order/{order.pk}/change/").content.decode()
    assert "/ship/?ids=" not in page and "/cancel/?ids=" not in page
    assert viewer.post("/admin/orders/order/ship/", {"ids": str(order.pk)}).status_code == 403

    shipper = _staff("shipper", "ship_order", "cancel_order")
    no_token = shipper.post("/admin/orders/order/cancel/", {"ids": str(order.pk)})
    assert no_token.status_code == 403  # CSRF
    order.refresh_from_db()
    assert order.status == OrderStatus.CONFIRMED
    assert not OrderStatusChange.objects.filter(order=order).exists()
