"""Staff browse orders in the admin; everyone else is sent to the login page."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from orders import services
from orders.models import Product
from tests.factories import ProductFactory, StaffFactory, UserFactory

pytestmark = pytest.mark.django_db

ADDRESS = services.ShippingAddress(
    name="Zoë <b>O'Brien</b>", line1="1 Main St", city="Town", postal_code="1", country="IE"
)


def _orders(n: int) -> list:
    if not Product.objects.filter(sku="MUG").exists():
        ProductFactory(sku="MUG", stock=1000)
    return [
        services.order_place(
            customer_id=f"cust-{i}",
            customer_email=f"c{i}@example.com",
            shipping_address=ADDRESS,
            lines=[services.LineRequest(sku="MUG", quantity=1)],
        )
        for i in range(n)
    ]


@pytest.fixture
def staff_client(client):
    user = StaffFactory(username="staff", is_superuser=True)
    client.force_login(user)
    return client


def test_staff_sees_order_list_and_order_page(staff_client):
    order = _orders(1)[0]
    listing = staff_client.get("/admin/orders/order/")
    assert listing.status_code == 200
    body = listing.content.decode()
    assert "c0@example.com" in body
    assert "Pending" in body  # the email status column
    page = staff_client.get(f"/admin/orders/order/{order.pk}/change/")
    assert page.status_code == 200
    html = page.content.decode()
    assert "MUG" in html
    assert "Confirmation email" in html
    assert "&lt;b&gt;O&#x27;Brien&lt;/b&gt;" in html  # user text escaped in the admin too


def test_order_list_filters_and_search(staff_client):
    orders = _orders(3)
    assert (
        staff_client.get(
            "/admin/orders/order/?confirmation_email__status__exact=pending"
        ).status_code
        == 200
    )
    by_id = staff_client.get(f"/admin/orders/order/?q=%23{orders[1].pk}").content.decode()
    assert f"/admin/orders/order/{orders[1].pk}/change/" in by_id
    by_email = staff_client.get("/admin/orders/order/?q=c2@example").content.decode()
    assert f"/admin/orders/order/{orders[2].pk}/change/" in by_email
    assert f"/admin/orders/order/{orders[1].pk}/change/" not in by_email
    by_sku = staff_client.get("/admin/orders/order/?q=MUG").content.decode()
    assert "3 orders" in by_sku or "3 results" in by_sku
    assert staff_client.get("/admin/orders/order/?q=hello").status_code == 200


def test_order_list_query_count_does_not_grow(staff_client):
    _orders(2)
    with CaptureQueriesContext(connection) as few:
        assert staff_client.get("/admin/orders/order/").status_code == 200
    _orders(20)
    with CaptureQueriesContext(connection) as many:
        assert staff_client.get("/admin/orders/order/").status_code == 200
    assert len(many) == len(few)


def test_non_staff_is_sent_to_login(client):
    user = UserFactory(username="customer")
    client.force_login(user)
    response = client.get("/admin/orders/order/")
    assert response.status_code == 302
    assert "/admin/login/" in response["Location"]
    assert client.logout() is None
    assert "/admin/login/" in client.get("/admin/orders/order/")["Location"]
