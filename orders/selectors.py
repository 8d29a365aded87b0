"""Reads of orders and products."""

from __future__ import annotations

from django.db.models import QuerySet

from orders.models import Order, Product


def product_list_active() -> QuerySet[Product]:
    return Product.objects.filter(is_active=True).order_by("sku")


def order_count_for_customer(*, customer_id: str) -> int:
    """How many orders the customer has placed (one COUNT query)."""
    return Order.objects.filter(customer_id=customer_id).count()


def order_list_for_customer(*, customer_id: str) -> QuerySet[Order]:
    """The customer's own orders, newest first, with what the API shows of each."""
    return (
        Order.objects.filter(customer_id=customer_id)
        .prefetch_related("lines", "emails")
        .order_by("-created_at", "-id")
    )
