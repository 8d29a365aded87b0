"""Orders and stock: order placement (the one place that writes orders and takes stock for
them) and stock adjustments outside an order (the one place that records them)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal

from django.conf import settings
from django.db import transaction
from django.db.models import Case, F, PositiveIntegerField, Value, When
from django.utils import timezone

from notifications.services import EMAIL_CONFIRMATION, email_request
from orders import events
from orders.models import (
    IdempotencyKey,
    Order,
    OrderLine,
    Product,
    StockAdjustment,
    StockReason,
)
from shop.exceptions import ApplicationError, ConflictError
from shop.observability.logging import context_bind
from shop.observability.metrics import ORDERS_PLACED


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

    The order comes back with ``line_list`` and ``email_list`` set to the lines and the email
    record just saved (the attributes ``selectors.order_list_for_customer`` prefetches), so
    that showing it costs no query.

    Products are locked in primary-key order, so concurrent orders over overlapping carts
    queue up instead of deadlocking, and stock can never go below zero (the database
    refuses it too). The confirmation email is recorded in the same transaction, its task
    and the ``OrderPlaced`` event (when ``ORDER_EVENTS_TOPIC_ARN`` is set, ``orders.events``)
    written to the outbox with it: the relay publishes them once it commits.
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
        context_bind(order_id=order.pk)  # this request's log lines carry order_id from here on
        for line in order_lines:
            line.order = order
        OrderLine.objects.bulk_create(order_lines)
        order.line_list = order_lines  # what the API shows, without reading it back
        # One UPDATE for all lines (the rows are locked above): as many queries for 50 lines
        # as for one.
        taken = Case(
            *[When(pk=products[sku].pk, then=Value(n)) for sku, n in wanted.items()],
            output_field=PositiveIntegerField(),
        )
        Product.objects.filter(pk__in=[products[sku].pk for sku in wanted]).update(
            stock=F("stock") - taken
        )
        order.email_list = [email_request(order=order, kind=EMAIL_CONFIRMATION)]
        transaction.on_commit(ORDERS_PLACED.inc)
        if settings.ORDER_EVENTS_TOPIC_ARN:
            # `OrderPlaced` for other services, in the outbox with the order.
            events.order_placed_record(
                topic_arn=settings.ORDER_EVENTS_TOPIC_ARN, order=order, lines=order_lines
            )
    return order


def idempotency_keys_prune() -> int:
    """Delete expired idempotency keys; returns how many."""
    deleted, _ = IdempotencyKey.objects.filter(expires_at__lte=timezone.now()).delete()
    return deleted


class StockAdjustmentRefused(ApplicationError):
    code = "stock_adjustment_refused"


class StaleStock(ConflictError):
    """A "set to N, expecting M" whose M is no longer the stock: the page was stale."""

    code = "stale_stock"


def product_stock_adjust(
    *,
    product_id: int,
    reason: str,
    actor: str,
    delta: int | None = None,
    set_to: int | None = None,
    expected: int | None = None,
    note: str = "",
) -> StockAdjustment:
    """Change a product's stock outside an order, and record it (who, why, the delta, the
    stock it left).

    Either a ``delta`` (received +n, damaged -n; later: units returned by a cancelled order)
    or ``set_to`` with ``expected`` (a count: "set to N, expecting M"). The product's row is
    locked as ``order_place`` locks it, so an order and an adjustment never overwrite each
    other: a delta applies to the stock as it is now, and a count is refused (``StaleStock``)
    when the stock is no longer ``expected``, i.e. when an order or another adjustment came
    in after the page that sent it was loaded. Stock never goes below zero.
    """
    if (delta is None) == (set_to is None):
        raise StockAdjustmentRefused("Give either a change of stock or the stock to set.")
    if reason not in StockReason.values:
        raise StockAdjustmentRefused(f"Unknown reason: {reason}.")
    if delta == 0:
        raise StockAdjustmentRefused("A change of stock must not be zero.")
    if set_to is not None and (set_to < 0 or expected is None):
        raise StockAdjustmentRefused("A count needs the stock to set (0 or more) and the one seen.")
    with transaction.atomic():
        product = Product.objects.select_for_update().get(pk=product_id)
        if set_to is not None:
            if product.stock != expected:
                raise StaleStock(
                    f"The stock of {product.sku} is now {product.stock}, not {expected} as on "
                    "your page: an order or another adjustment changed it since. Nothing was "
                    "changed; count again against the stock shown now."
                )
            delta = set_to - product.stock
        stock_after = product.stock + delta
        if stock_after < 0:
            raise StockAdjustmentRefused(
                f"Only {product.stock} of {product.sku} in stock: cannot take {-delta} away."
            )
        Product.objects.filter(pk=product.pk).update(stock=stock_after)
        return StockAdjustment.objects.create(
            product=product,
            delta=delta,
            reason=reason,
            note=note[:200],
            actor=actor[:150],
            stock_after=stock_after,
        )


def product_stock_history(*, product_id: int, limit: int = 50) -> list[StockAdjustment]:
    """The product's latest stock adjustments, newest first."""
    return list(StockAdjustment.objects.filter(product_id=product_id)[:limit])


def product_upsert(
    *, sku: str, name: str, price: Decimal, stock: int, actor: str = "import"
) -> tuple[Product, bool]:
    """Create or update a catalog product (demo data, imports); a change of its stock is
    recorded as an adjustment (``imported``), as every stock change outside an order is."""
    with transaction.atomic():
        product, created = Product.objects.update_or_create(
            sku=sku, defaults={"name": name, "price": price, "is_active": True}
        )
        # update_or_create locked the row (select_for_update): no order can move it now.
        current = Product.objects.values_list("stock", flat=True).get(pk=product.pk)
        if current != stock:
            product_stock_adjust(
                product_id=product.pk,
                reason=StockReason.IMPORTED,
                actor=actor,
                set_to=stock,
                expected=current,
            )
            product.stock = stock
    return product, created
