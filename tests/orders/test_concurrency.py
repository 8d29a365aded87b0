"""Concurrent orders on PostgreSQL never oversell: row locks, taken in a fixed order."""

from __future__ import annotations

import threading

import pytest
from django.db import connection, connections

from orders import services
from orders.models import Order, Product
from tests.factories import ProductFactory

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.skipif(
        connection.vendor != "postgresql",
        reason="needs PostgreSQL's row locks (set DATABASE_URL, as .ci/run does)",
    ),
    pytest.mark.django_db(transaction=True),
]

ADDRESS = services.ShippingAddress(
    name="A", line1="1 Main St", city="Town", postal_code="1", country="US"
)


def _race(carts: list[list[tuple[str, int]]]) -> list[str]:
    """Place each cart from its own thread and connection, all released at once."""
    barrier = threading.Barrier(len(carts))
    outcomes: list[str] = []
    lock = threading.Lock()

    def place(n: int, cart: list[tuple[str, int]]) -> None:
        try:
            barrier.wait()
            services.order_place(
                customer_id=f"customer-{n}",
                customer_email=f"c{n}@example.com",
                shipping_address=ADDRESS,
                lines=[services.LineRequest(sku=sku, quantity=q) for sku, q in cart],
            )
            outcome = "placed"
        except services.InsufficientStock:
            outcome = "short"
        except Exception as exc:  # anything else is a bug the test must show
            outcome = f"error: {exc!r}"
        finally:
            connections.close_all()
        with lock:
            outcomes.append(outcome)

    threads = [threading.Thread(target=place, args=(n, c)) for n, c in enumerate(carts)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    return outcomes


def test_many_orders_for_the_last_units(settings):
    ProductFactory(sku="LAST", stock=5)
    outcomes = _race([[("LAST", 1)]] * 20)
    assert outcomes.count("placed") == 5, outcomes
    assert outcomes.count("short") == 15, outcomes
    assert Product.objects.get(sku="LAST").stock == 0
    assert Order.objects.count() == 5


def test_mixed_carts_locking_products_in_varying_order_never_oversell():
    """Carts over overlapping products, listed in different orders, raced against each other.

    Products are locked in primary-key order whatever the cart's order, so no deadlock
    error can reach a client, and no product goes below zero.
    """
    stock = {"A": 4, "B": 3, "C": 5, "D": 2}
    for sku, units in stock.items():
        ProductFactory(sku=sku, stock=units)
    shapes = [
        [("A", 1), ("B", 1)],
        [("B", 1), ("A", 1)],
        [("C", 2), ("A", 1), ("D", 1)],
        [("D", 1), ("C", 1), ("B", 1)],
        [("B", 1), ("D", 1), ("A", 1), ("C", 1)],
    ]
    carts = [shapes[n % len(shapes)] for n in range(25)]
    outcomes = _race(carts)

    assert len(outcomes) == len(carts)
    assert all(outcome in ("placed", "short") for outcome in outcomes), outcomes
    remaining = dict(Product.objects.values_list("sku", "stock"))
    assert all(units >= 0 for units in remaining.values()), remaining
    placed = Order.objects.prefetch_related("lines")
    taken = {sku: 0 for sku in stock}
    for order in placed:
        for line in order.lines.all():
            taken[line.sku] += line.quantity
    # Every unit that left the shelf is on exactly one placed order, and vice versa.
    assert {sku: stock[sku] - remaining[sku] for sku in stock} == taken
    assert outcomes.count("placed") == placed.count() > 0
