"""Hostile input gets a clean 4xx, never a 500, and saves nothing.

Property-based: schemathesis generates requests (schema-valid and schema-violating) from the
project's own OpenAPI schema and sends them to the in-process WSGI app, authenticated with a
real ID token of the emulator's Cognito. Every response must pass schemathesis' checks.
"""

from __future__ import annotations

import pytest
import schemathesis
from django.core import signals
from django.core.cache import cache
from django.db import close_old_connections
from hypothesis import HealthCheck, settings

from orders.models import Order, OrderLine, Product
from shop.wsgi import application
from tests.conftest import emulator_token, make_product

schema = schemathesis.openapi.from_wsgi("/api/schema/?format=json", application)


@pytest.fixture(scope="module")
def token() -> str:
    return emulator_token()


@pytest.fixture
def wsgi_db(db):
    """The test's database transaction, kept open across requests to the raw WSGI app.

    Django's test client does the same: on PostgreSQL, ``close_old_connections`` at the end
    of a request would otherwise drop the connection that holds the test's transaction.
    """
    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    try:
        make_product(sku="MUG", price="12.50", stock=1_000_000)
        make_product(sku="TEE", price="24.00", stock=3)
        yield
    finally:
        signals.request_started.connect(close_old_connections)
        signals.request_finished.connect(close_old_connections)


def _state():
    return (
        Order.objects.count(),
        OrderLine.objects.count(),
        dict(Product.objects.values_list("sku", "stock")),
    )


@schema.parametrize()
@settings(
    max_examples=50,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
def test_api_conforms_to_its_schema(case, token, wsgi_db):
    cache.clear()  # the order-placement rate limit is not under test here
    before = _state()
    response = case.call_and_validate(headers={"Authorization": f"Bearer {token}"})
    if response.status_code != 201:
        assert _state() == before
