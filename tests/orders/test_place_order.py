"""POST /api/orders/: server-side prices, stock taken, every refusal clean and side-effect free."""

from __future__ import annotations

from decimal import Decimal

import pytest

from notifications.models import OrderEmail
from orders.models import Order, OrderLine, Product
from tests.factories import ProductFactory
from tests.helpers import order_body

pytestmark = pytest.mark.django_db


@pytest.fixture
def catalog():
    return {
        "MUG": ProductFactory(sku="MUG", price=Decimal("12.50"), stock=10),
        "TEE": ProductFactory(sku="TEE", price=Decimal("24.00"), stock=3),
        "OLD": ProductFactory(sku="OLD", price=Decimal("5.00"), stock=10, is_active=False),
    }


def _stock() -> dict[str, int]:
    return dict(Product.objects.values_list("sku", "stock"))


def test_order_is_priced_on_the_server_and_takes_stock(alice, catalog):
    body = order_body(("MUG", 2), ("TEE", 3))
    body["items"][0]["unit_price"] = "0.01"  # ignored: prices are the server's
    response = alice.post("/api/orders/", body, format="json")

    assert response.status_code == 201, response.content
    data = response.json()
    order = Order.objects.get()
    assert response["Location"].endswith(f"/api/orders/{order.pk}/")
    assert data["id"] == order.pk
    assert data["status"] == "placed"
    assert data["customer_email"] == "alice@example.com"
    assert data["total"] == "97.00"
    assert data["currency"] == "USD"
    assert data["items"] == [
        {
            "sku": "MUG",
            "name": "Product MUG",
            "quantity": 2,
            "unit_price": "12.50",
            "line_total": "25.00",
        },
        {
            "sku": "TEE",
            "name": "Product TEE",
            "quantity": 3,
            "unit_price": "24.00",
            "line_total": "72.00",
        },
    ]
    assert data["shipping_address"] == {
        "name": "Alice Example",
        "line1": "1 Main Street",
        "line2": "",
        "city": "Springfield",
        "postal_code": "12345",
        "country": "US",
    }
    assert data["confirmation_email"] == {"status": "pending", "sent_at": None}
    assert _stock() == {"MUG": 8, "TEE": 0, "OLD": 10}
    assert order.total == Decimal("97.00")
    assert OrderEmail.objects.get(order=order).status == "pending"


def test_order_can_be_read_back(alice, catalog):
    created = alice.post("/api/orders/", order_body(("MUG", 1)), format="json").json()
    detail = alice.get(f"/api/orders/{created['id']}/")
    assert detail.status_code == 200
    assert detail.json() == created


def test_lowercase_country_is_normalised(alice, catalog):
    response = alice.post("/api/orders/", order_body(("MUG", 1), country="de"), format="json")
    assert response.status_code == 201
    assert response.json()["shipping_address"]["country"] == "DE"


def _assert_bad_request(alice, body, *, attr: str | None = None, status: int = 400, **kwargs):
    before = _stock()
    response = alice.post("/api/orders/", body, **({"format": "json"} | kwargs))
    assert response.status_code == status, response.content
    data = response.json()
    assert set(data) == {"type", "errors"}
    assert data["errors"], data
    if attr is not None:
        attrs = [error["attr"] or "" for error in data["errors"]]
        assert any(a == attr or a.startswith(f"{attr}.") for a in attrs), data
    assert Order.objects.count() == 0
    assert OrderLine.objects.count() == 0
    assert OrderEmail.objects.count() == 0
    assert _stock() == before
    return data


def test_unknown_sku_is_a_400_naming_it(alice, catalog):
    data = _assert_bad_request(alice, order_body(("MUG", 1), ("NOPE", 1)), attr="items.1.sku")
    assert "NOPE" in data["errors"][0]["detail"]
    assert data["errors"][0]["code"] == "unknown_sku"


def test_inactive_product_is_a_400_naming_it(alice, catalog):
    data = _assert_bad_request(alice, order_body(("OLD", 1)), attr="items.0.sku")
    assert "OLD" in data["errors"][0]["detail"]


@pytest.mark.parametrize("quantity", [0, -1, 101, 10**30, "2", 2.0, 1.5, True, None, [1], {"n": 1}])
def test_bad_quantities_are_refused(alice, catalog, quantity):
    _assert_bad_request(alice, order_body(("MUG", quantity)), attr="items.0.quantity")


def test_duplicate_skus_are_refused(alice, catalog):
    data = _assert_bad_request(alice, order_body(("MUG", 1), ("MUG", 2)), attr="items")
    assert "MUG" in data["errors"][0]["detail"]


def test_too_many_items_are_refused(alice, catalog):
    for n in range(51):
        ProductFactory(sku=f"BULK-{n}")
    _assert_bad_request(alice, order_body(*[(f"BULK-{n}", 1) for n in range(51)]), attr="items")


def test_empty_items_are_refused(alice, catalog):
    _assert_bad_request(alice, order_body(), attr="items")


@pytest.mark.parametrize("field", ["name", "line1", "city", "postal_code", "country"])
def test_missing_address_fields_are_refused(alice, catalog, field):
    body = order_body(("MUG", 1))
    del body["shipping_address"][field]
    _assert_bad_request(alice, body, attr=f"shipping_address.{field}")


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("country", "XX"),
        ("country", "USA"),
        ("country", 12),
        ("name", "x" * 201),
        ("postal_code", "1" * 21),
        ("name", "   "),
        ("line1", "line\nbreak"),
        ("city", "nul\x00byte"),
        ("name", 123),
    ],
)
def test_invalid_address_values_are_refused(alice, catalog, field, value):
    body = order_body(("MUG", 1), **{field: value})
    _assert_bad_request(alice, body, attr=f"shipping_address.{field}")


def test_missing_body_parts_are_refused(alice, catalog):
    _assert_bad_request(alice, {}, attr="shipping_address")
    _assert_bad_request(alice, [], attr="non_field_errors")
    _assert_bad_request(alice, {"items": "MUG", "shipping_address": "here"}, attr="items")


def test_non_json_body_is_a_400(alice, catalog):
    data = _assert_bad_request(alice, "{not json", format=None, content_type="application/json")
    assert data["errors"][0]["code"] == "parse_error"


def test_nan_is_not_json(alice, catalog):
    _assert_bad_request(
        alice,
        '{"items": [{"sku": "MUG", "quantity": NaN}]}',
        format=None,
        content_type="application/json",
    )


def test_deeply_nested_json_is_a_400_not_a_500(alice, catalog):
    _assert_bad_request(
        alice, "[" * 100_000 + "]" * 100_000, format=None, content_type="application/json"
    )


def test_wrong_content_type_is_a_415(alice, catalog):
    data = _assert_bad_request(
        alice,
        "sku=MUG",
        format=None,
        content_type="application/x-www-form-urlencoded",
        status=415,
    )
    assert data["errors"][0]["code"] == "unsupported_media_type"


def test_oversized_body_is_a_413(alice, catalog):
    body = order_body(("MUG", 1), line2="x" * 300_000)
    data = _assert_bad_request(alice, body, status=413)
    assert data["errors"][0]["code"] == "payload_too_large"


def test_insufficient_stock_is_a_409_naming_each_short_sku(alice, catalog):
    data = _assert_bad_request(alice, order_body(("MUG", 11), ("TEE", 4)), status=409)
    details = {error["attr"]: error["detail"] for error in data["errors"]}
    assert "MUG" in details["items.0.quantity"]
    assert "requested 11" in details["items.0.quantity"]
    assert "available 10" in details["items.0.quantity"]
    assert "requested 4" in details["items.1.quantity"]
    assert "available 3" in details["items.1.quantity"]
    assert {error["code"] for error in data["errors"]} == {"insufficient_stock"}


def test_exact_remaining_stock_can_be_bought_then_it_is_gone(alice, catalog):
    assert alice.post("/api/orders/", order_body(("TEE", 3)), format="json").status_code == 201
    assert alice.post("/api/orders/", order_body(("TEE", 1)), format="json").status_code == 409
    assert _stock()["TEE"] == 0
    assert Order.objects.count() == 1
