"""Per-request work: queries do not grow with what is placed or listed (issue 6, figure 2).

A count is not a timing, so it is a test; ``bench/http_bench.py`` reports the same counts on
PostgreSQL. Order placement is counted the way production runs it: no test transaction
around it (``transaction=True``), so its own transaction is the outermost one, no savepoints
are counted, and what runs once it commits (the confirmation's SQS publish) is counted too.
"""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.pagination import PageNumberPagination

from orders import services
from orders.models import Order, OrderLine, Product
from tests.factories import ProductFactory, StaffFactory
from tests.helpers import auth, order_body

MAX_PLACEMENT_QUERIES = 10
ADDRESS = services.ShippingAddress(
    name="Alice Example", line1="1 Main St", city="Springfield", postal_code="12345", country="US"
)


def _queries(call) -> tuple[int, object]:
    with CaptureQueriesContext(connection) as queries:
        response = call()
    return len(queries), response


def _orders_for(customer_id: str, count: int, *, lines: int = 3) -> None:
    skus = [ProductFactory(stock=1000).sku for _ in range(lines)]
    for _ in range(count):
        services.order_place(
            customer_id=customer_id,
            customer_email="someone@example.com",
            shipping_address=ADDRESS,
            lines=[services.LineRequest(sku=sku, quantity=1) for sku in skus],
        )


def _subject(client, token: str) -> str:
    return client.get("/api/me/", **auth(token)).json()["id"]


@pytest.mark.django_db
def test_me_names_the_caller_and_counts_their_orders_in_one_query(
    api_client, alice_token, django_assert_num_queries
):
    customer_id = _subject(api_client, alice_token)
    _orders_for(customer_id, 2)
    _orders_for("someone-else", 1)

    with django_assert_num_queries(1):
        response = api_client.get("/api/me/", **auth(alice_token))

    assert response.status_code == 200
    assert response.json() == {
        "id": customer_id,
        "email": "alice@example.com",
        "order_count": 2,
    }


@pytest.mark.django_db
def test_me_needs_a_token(api_client):
    response = api_client.get("/api/me/")
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == "Bearer"


@pytest.mark.django_db(transaction=True)
def test_placing_an_order_costs_the_same_queries_for_1_and_50_lines(
    api_client, alice_token, queues, django_assert_max_num_queries
):
    skus = [ProductFactory(sku=f"Q-{n:02d}", stock=100).sku for n in range(50)]

    def place(lines: int):
        body = order_body(*[(sku, 2) for sku in skus[:lines]])
        return api_client.post("/api/orders/", body, format="json", **auth(alice_token))

    place(1)  # the first request of the process warms what is done once (not queries)
    one, first = _queries(lambda: place(1))
    with django_assert_max_num_queries(MAX_PLACEMENT_QUERIES):
        fifty, second = _queries(lambda: place(50))

    assert first.status_code == second.status_code == 201, second.content
    assert len(second.json()["items"]) == 50
    assert OrderLine.objects.filter(order_id=second.json()["id"]).count() == 50
    assert one == fifty <= MAX_PLACEMENT_QUERIES
    # Stock is taken per line all the same.
    assert dict(Product.objects.values_list("sku", "stock")) == {
        sku: 100 - 2 * (3 if n == 0 else 1) for n, sku in enumerate(skus)
    }


@pytest.mark.django_db
def test_order_list_costs_the_same_queries_for_1_and_50_orders(
    api_client, alice_token, bob_token, monkeypatch
):
    monkeypatch.setattr(PageNumberPagination, "page_size", 50)
    _orders_for(_subject(api_client, alice_token), 1)
    _orders_for(_subject(api_client, bob_token), 50)

    one, alice = _queries(lambda: api_client.get("/api/orders/", **auth(alice_token)))
    fifty, bob = _queries(lambda: api_client.get("/api/orders/", **auth(bob_token)))

    assert len(alice.json()["results"]) == 1
    assert len(bob.json()["results"]) == 50
    assert all(len(order["items"]) == 3 for order in bob.json()["results"])
    assert one == fifty


@pytest.mark.django_db
def test_admin_order_list_costs_the_same_queries_for_1_and_100_orders(client):
    staff = StaffFactory(username="staff", is_superuser=True)
    client.force_login(staff)
    _orders_for("customer-1", 1)
    client.get("/admin/orders/order/")  # the first page of the process warms caches
    one, first = _queries(lambda: client.get("/admin/orders/order/"))
    _orders_for("customer-2", 99)
    hundred, second = _queries(lambda: client.get("/admin/orders/order/"))

    assert Order.objects.count() == 100
    assert first.status_code == second.status_code == 200
    assert second.content.decode().count("/change/") >= 100  # all on one page
    assert one == hundred
