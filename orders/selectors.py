"""Reads of orders and products."""

from __future__ import annotations

from django.db import connection
from django.db.models import Prefetch, QuerySet

from orders.models import Order, Product


def product_list_active() -> QuerySet[Product]:
    return Product.objects.filter(is_active=True).order_by("sku")


def order_count_for_customer(*, customer_id: str) -> int:
    """How many orders the customer has placed: one COUNT over the customer's index.

    Written as SQL (the table and column named by the model) because Django builds and
    compiles a ``count()`` anew on every call, and that cost several times the query itself
    on ``GET /api/me/``, every request (bench/http_bench.py, docs/performance.md).
    """
    table = connection.ops.quote_name(Order._meta.db_table)
    column = connection.ops.quote_name(Order._meta.get_field("customer_id").column)
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT COUNT(*) FROM {table} WHERE {column} = %s", [customer_id])  # noqa: S608
        return cursor.fetchone()[0]


def order_list_for_customer(*, customer_id: str) -> QuerySet[Order]:
    """The customer's own orders, newest first, with what the API shows of each: its lines
    in ``line_list`` and its email records in ``email_list`` (as ``services.order_place``
    returns a new order)."""
    return (
        Order.objects.filter(customer_id=customer_id)
        .prefetch_related(
            Prefetch("lines", to_attr="line_list"), Prefetch("emails", to_attr="email_list")
        )
        .order_by("-created_at", "-id")
    )
