"""Guarantee 3: POST /api/orders/ with an Idempotency-Key is safe to retry."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from django.db import connection, connections
from django.utils import timezone
from rest_framework.test import APIClient

from notifications.models import OrderEmail
from orders.models import IdempotencyKey, Order, Product
from tests.factories import ProductFactory
from tests.helpers import auth, order_body


def _post(client, token, body, key):
    headers = auth(token) | ({"HTTP_IDEMPOTENCY_KEY": key} if key is not None else {})
    return client.post("/api/orders/", body, format="json", **headers)


@pytest.mark.django_db
def test_same_key_same_body_replays_the_first_answer(api_client, alice_token):
    ProductFactory(sku="MUG", stock=10)
    body = order_body(("MUG", 2))
    first = _post(api_client, alice_token, body, "key-1")
    again = _post(api_client, alice_token, body, "key-1")

    assert first.status_code == again.status_code == 201
    assert again.json() == first.json()
    assert again["Location"] == first["Location"]
    assert again["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in first
    assert Order.objects.count() == 1
    assert OrderEmail.objects.count() == 1
    assert Product.objects.get(sku="MUG").stock == 8


@pytest.mark.django_db
def test_same_key_other_body_is_a_422(api_client, alice_token):
    ProductFactory(sku="MUG", stock=10)
    assert _post(api_client, alice_token, order_body(("MUG", 1)), "key-2").status_code == 201
    response = _post(api_client, alice_token, order_body(("MUG", 3)), "key-2")
    assert response.status_code == 422
    assert response.json()["errors"][0]["code"] == "idempotency_key_reused"
    assert Order.objects.count() == 1
    assert Product.objects.get(sku="MUG").stock == 9


@pytest.mark.django_db
def test_keys_are_scoped_per_customer(api_client, alice_token, bob_token):
    ProductFactory(sku="MUG", stock=10)
    body = order_body(("MUG", 1))
    alices = _post(api_client, alice_token, body, "shared").json()
    bobs = _post(api_client, bob_token, body, "shared").json()
    assert alices["id"] != bobs["id"]
    assert bobs["customer_email"] == "bob@example.com"
    assert Order.objects.count() == 2


@pytest.mark.django_db
def test_expired_keys_are_forgotten(api_client, alice_token):
    ProductFactory(sku="MUG", stock=10)
    body = order_body(("MUG", 1))
    first = _post(api_client, alice_token, body, "old").json()
    IdempotencyKey.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
    second = _post(api_client, alice_token, body, "old").json()
    assert second["id"] != first["id"]
    assert Order.objects.count() == 2


@pytest.mark.django_db
def test_a_refused_request_does_not_burn_its_key(api_client, alice_token):
    product = ProductFactory(sku="MUG", stock=1)
    body = order_body(("MUG", 2))
    assert _post(api_client, alice_token, body, "retry-me").status_code == 409
    assert IdempotencyKey.objects.count() == 0
    Product.objects.filter(pk=product.pk).update(stock=5)
    assert _post(api_client, alice_token, body, "retry-me").status_code == 201


@pytest.mark.django_db
@pytest.mark.parametrize("key", ["", "x" * 256, "ключ", "tab\there"])
def test_malformed_keys_are_a_400(api_client, alice_token, key):
    ProductFactory(sku="MUG", stock=10)
    response = _post(api_client, alice_token, order_body(("MUG", 1)), key)
    assert response.status_code == 400
    assert response.json()["errors"][0]["attr"] == "Idempotency-Key"
    assert Order.objects.count() == 0


@pytest.mark.postgres
@pytest.mark.skipif(connection.vendor != "postgresql", reason="needs PostgreSQL (DATABASE_URL)")
@pytest.mark.django_db(transaction=True)
def test_concurrent_requests_with_one_key_create_one_order(alice_token):
    ProductFactory(sku="MUG", stock=100)
    body = order_body(("MUG", 1))
    barrier = threading.Barrier(8)
    answers: list[tuple[int, int]] = []

    def place() -> None:
        try:
            barrier.wait()
            response = _post(APIClient(), alice_token, body, "concurrent")
            answers.append((response.status_code, response.json()["id"]))
        finally:
            connections.close_all()

    threads = [threading.Thread(target=place) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)

    assert len(answers) == 8
    assert {status for status, _ in answers} == {201}
    assert len({order_id for _, order_id in answers}) == 1
    assert Order.objects.count() == 1
    assert Product.objects.get(sku="MUG").stock == 99


@pytest.mark.django_db
def test_prune_deletes_only_expired_keys(api_client, alice_token):
    from io import StringIO

    from django.core.management import call_command

    ProductFactory(sku="MUG", stock=10)
    _post(api_client, alice_token, order_body(("MUG", 1)), "fresh")
    _post(api_client, alice_token, order_body(("MUG", 1)), "stale")
    IdempotencyKey.objects.filter(key="stale").update(expires_at=timezone.now())
    out = StringIO()
    call_command("prune_idempotency_keys", stdout=out)
    assert "deleted 1 " in out.getvalue()
    assert list(IdempotencyKey.objects.values_list("key", flat=True)) == ["fresh"]
