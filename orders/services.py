"""Order placement: the one place that writes orders and takes stock."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal

from django.conf import settings
from django.db import transaction
from django.db.models import F

from notifications.services import confirmation_request
from orders.models import Order, OrderLine, Product
from shop.exceptions import ApplicationError, ConflictError


@dataclass(frozen=True)
class ShippingAddress:
    name: str
    line1: str
    city: str
    postal_code: str
    country: str
    line2: str = ""


@dataclass(frozen=True)
class LineRequest:
    sku: str
    quantity: int


class UnknownProducts(ApplicationError):
    code = "unknown_sku"


class InsufficientStock(ConflictError):
    code = "insufficient_stock"


def order_place(
    *,
    customer_id: str,
    customer_email: str,
    shipping_address: ShippingAddress,
    lines: Sequence[LineRequest],
) -> Order:
    """Save an order with server-side prices and take its stock, all or nothing.

    Products are locked in primary-key order, so concurrent orders over overlapping carts
    queue up instead of deadlocking, and stock can never go below zero (the database
    refuses it too). The confirmation email is recorded in the same transaction and queued
    only once it commits.
    """
    wanted = {line.sku: line.quantity for line in lines}
    if not lines or len(wanted) != len(lines):
        raise ApplicationError("An order needs at least one line and each SKU at most once.")
    position = {line.sku: index for index, line in enumerate(lines)}
    with transaction.atomic():
        products = {
            product.sku: product
            for product in Product.objects.select_for_update()
            .filter(sku__in=wanted, is_active=True)
            .order_by("pk")
        }
        missing = [sku for sku in wanted if sku not in products]
        if missing:
            raise UnknownProducts(
                "Unknown or unavailable products: " + ", ".join(missing),
                errors={
                    f"items.{position[sku]}.sku": [f"Unknown or unavailable product: {sku}."]
                    for sku in missing
                },
            )
        short = [sku for sku, quantity in wanted.items() if products[sku].stock < quantity]
        if short:
            raise InsufficientStock(
                "Not enough stock for: " + ", ".join(short),
                errors={
                    f"items.{position[sku]}.quantity": [
                        f"Not enough stock for {sku}: requested {wanted[sku]}, "
                        f"available {products[sku].stock}."
                    ]
                    for sku in short
                },
            )

        order_lines = [
            OrderLine(
                product=products[line.sku],
                sku=line.sku,
                name=products[line.sku].name,
                unit_price=products[line.sku].price,
                quantity=line.quantity,
                line_total=products[line.sku].price * line.quantity,
            )
            for line in lines
        ]
        order = Order.objects.create(
            customer_id=customer_id,
            customer_email=customer_email,
            shipping_name=shipping_address.name,
            shipping_line1=shipping_address.line1,
            shipping_line2=shipping_address.line2,
            shipping_city=shipping_address.city,
            shipping_postal_code=shipping_address.postal_code,
            shipping_country=shipping_address.country,
            total=sum((line.line_total for line in order_lines), Decimal("0")),
            currency=settings.SHOP_CURRENCY,
        )
        for line in order_lines:
            line.order = order
        OrderLine.objects.bulk_create(order_lines)
        for sku, quantity in sorted(wanted.items(), key=lambda item: products[item[0]].pk):
            Product.objects.filter(pk=products[sku].pk).update(stock=F("stock") - quantity)
        confirmation_request(order=order)
    return order


def product_upsert(*, sku: str, name: str, price: Decimal, stock: int) -> tuple[Product, bool]:
    """Create or update a catalog product (demo data, imports)."""
    product, created = Product.objects.update_or_create(
        sku=sku, defaults={"name": name, "price": price, "stock": stock, "is_active": True}
    )
    return product, created
