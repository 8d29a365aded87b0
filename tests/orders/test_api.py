"""Reading orders and products; isolation between customers; the error shape everywhere."""

from __future__ import annotations

from decimal import Decimal

import pytest
from rest_framework.test import APIClient

from tests.factories import ProductFactory
from tests.helpers import auth, order_body

pytestmark = pytest.mark.django_db


def _place(client, token, sku="MUG"):
    response = client.post("/api/orders/", order_body((sku, 1)), format="json", **auth(token))
    assert response.status_code == 201, response.content
    return response.json()


def test_customers_see_only_their_own_orders(api_client, alice_token, bob_token):
    ProductFactory(sku="MUG", stock=10)
    alices = [_place(api_client, alice_token) for _ in range(3)]
    bobs = _place(api_client, bob_token)

    listing = api_client.get("/api/orders/", **auth(alice_token)).json()
    assert listing["count"] == 3
    assert [o["id"] for o in listing["results"]] == [o["id"] for o in reversed(alices)]
    assert set(listing) == {"count", "next", "previous", "results"}

    response = api_client.get(f"/api/orders/{bobs['id']}/", **auth(alice_token))
    assert response.status_code == 404
    assert response.json()["errors"][0]["code"] == "not_found"
    assert api_client.get(f"/api/orders/{bobs['id']}/", **auth(bob_token)).status_code == 200
    bob_list = api_client.get("/api/orders/", **auth(bob_token)).json()
    assert [o["id"] for o in bob_list["results"]] == [bobs["id"]]


def test_orders_need_a_token(api_client):
    assert api_client.get("/api/orders/").status_code == 401
    assert api_client.get("/api/orders/1/").status_code == 401


def test_order_list_is_paginated(api_client, alice_token):
    ProductFactory(sku="MUG", stock=100)
    for _ in range(21):
        _place(api_client, alice_token)
    page = api_client.get("/api/orders/", **auth(alice_token)).json()
    assert page["count"] == 21
    assert len(page["results"]) == 20
    assert page["next"]


def test_huge_order_id_is_a_404(api_client, alice_token):
    response = api_client.get(f"/api/orders/{10**30}/", **auth(alice_token))
    assert response.status_code == 404


def test_products_are_public_and_only_active(api_client):
    ProductFactory(sku="A", price=Decimal("1.50"), stock=2)
    ProductFactory(sku="B", is_active=False)
    response = APIClient().get("/api/products/")
    assert response.status_code == 200
    data = response.json()
    assert data["count"] == 1
    assert data["results"] == [{"sku": "A", "name": "Product A", "price": "1.50", "stock": 2}]


def test_unknown_api_path_is_a_json_404(api_client):
    response = api_client.get("/api/nope/")
    assert response.status_code == 404
    assert response.json() == {
        "type": "client_error",
        "errors": [{"code": "not_found", "detail": "No API endpoint at this path.", "attr": None}],
    }


def test_wrong_method_is_a_json_405(api_client, alice_token):
    response = api_client.delete("/api/orders/", **auth(alice_token))
    assert response.status_code == 405
    assert response.json()["errors"][0]["code"] == "method_not_allowed"
    assert api_client.post("/api/products/", {}, format="json").status_code == 405


def test_schema_and_docs_are_served(api_client):
    schema = api_client.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert schema.status_code == 200
    document = schema.json()
    assert "/api/orders/" in document["paths"]
    assert "CognitoIdToken" in document["components"]["securitySchemes"]
    post = document["paths"]["/api/orders/"]["post"]
    assert {"201", "400", "401", "409"} <= set(post["responses"])
    assert api_client.get("/api/docs/").status_code == 200


def test_healthz(api_client):
    response = api_client.get("/healthz")
    assert response.status_code == 200
    assert response.json()["database"] == "ok"


def test_healthz_needs_no_allowed_host(api_client, settings):
    settings.ALLOWED_HOSTS = ["shop.example.com"]
    settings.SECURE_SSL_REDIRECT = True
    response = api_client.get("/healthz", HTTP_HOST="10.0.0.7:8000")
    assert response.status_code == 200


def test_openapi_schema_is_valid_and_warning_free(tmp_path):
    from django.core.management import call_command

    target = tmp_path / "schema.yaml"
    call_command("spectacular", "--fail-on-warn", "--validate", "--file", str(target))
    assert "/api/orders/{id}/" in target.read_text()


def test_order_placement_is_rate_limited_per_customer(
    api_client, alice_token, bob_token, monkeypatch
):
    from orders.apis import OrderPlacementThrottle
    from orders.models import Order

    monkeypatch.setattr(OrderPlacementThrottle, "THROTTLE_RATES", {"order_placement": "3/min"})
    ProductFactory(sku="MUG", stock=100)
    for _ in range(3):
        _place(api_client, alice_token)
    response = api_client.post(
        "/api/orders/", order_body(("MUG", 1)), format="json", **auth(alice_token)
    )
    assert response.status_code == 429
    assert 0 < int(response["Retry-After"]) <= 60
    assert response.json()["errors"][0]["code"] == "throttled"
    assert Order.objects.count() == 3
    # Reading is not limited, and another customer has a budget of their own.
    assert api_client.get("/api/orders/", **auth(alice_token)).status_code == 200
    _place(api_client, bob_token)
