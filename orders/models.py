from decimal import Decimal

from django.core.serializers.json import DjangoJSONEncoder
from django.core.validators import MinValueValidator
from django.db import models
from django.utils import timezone


class Product(models.Model):
    sku = models.CharField(max_length=64, unique=True)
    name = models.CharField(max_length=200)
    price = models.DecimalField(
        max_digits=10, decimal_places=2, validators=[MinValueValidator(Decimal("0"))]
    )
    stock = models.PositiveIntegerField(default=0)
    is_active = models.BooleanField(default=True)

    class Meta:
        ordering = ["sku"]
        constraints = [
            models.CheckConstraint(condition=models.Q(stock__gte=0), name="product_stock_gte_0"),
            models.CheckConstraint(condition=models.Q(price__gte=0), name="product_price_gte_0"),
        ]
        permissions = [("adjust_stock", "Can adjust stock")]

    def __str__(self) -> str:
        return f"{self.sku} {self.name}"


class StockReason(models.TextChoices):
    # Staff booked goods in: +n.
    RECEIVED = "received", "Received"
    # Staff wrote units off (damaged, lost, stolen): -n.
    DAMAGED = "damaged", "Damaged or lost"
    # Staff counted the shelf and set the stock to what they found ("set to N, expecting M").
    COUNTED = "counted", "Counted"
    # Set by a catalog import (the demo data loader).
    IMPORTED = "imported", "Imported"
    # Units of a cancelled order put back on the shelf: +n per line.
    RETURNED = "returned", "Returned by a cancelled order"


class StockAdjustment(models.Model):
    """A change of a product's stock outside an order: who, when, how much, why, and the
    stock it left. Written only by ``orders.services.product_stock_adjust``, under the
    product's row lock (the one orders take), so ``stock_after`` is exact."""

    product = models.ForeignKey(Product, on_delete=models.PROTECT, related_name="adjustments")
    delta = models.IntegerField()
    reason = models.CharField(max_length=16, choices=StockReason.choices)
    note = models.CharField(max_length=200, blank=True, default="")
    # Who: the staff member's username, or the command that made it.
    actor = models.CharField(max_length=150)
    stock_after = models.PositiveIntegerField()
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["product", "-created_at"])]

    def __str__(self) -> str:
        return f"{self.product_id}: {self.delta:+d} ({self.reason}) -> {self.stock_after}"


class OrderStatus(models.TextChoices):
    """Where an order is. The only moves (``orders.actions``): placed -> confirmed ->
    shipped, and placed or confirmed -> cancelled. Shipped and cancelled are final."""

    # Saved with its lines and stock taken; the confirmation email is not sent yet.
    PLACED = "placed", "Placed"
    # The confirmation email went out.
    CONFIRMED = "confirmed", "Confirmed"
    # Staff handed it to a carrier (with the tracking details they had).
    SHIPPED = "shipped", "Shipped"
    # Staff cancelled it before it shipped; its stock went back on the shelf.
    CANCELLED = "cancelled", "Cancelled"


class Order(models.Model):
    """A customer's order. ``id`` is the order number customers see."""

    customer_id = models.CharField(max_length=128, db_index=True)
    customer_email = models.EmailField(max_length=254)
    shipping_name = models.CharField(max_length=200)
    shipping_line1 = models.CharField(max_length=200)
    shipping_line2 = models.CharField(max_length=200, blank=True, default="")
    shipping_city = models.CharField(max_length=100)
    shipping_postal_code = models.CharField(max_length=20)
    shipping_country = models.CharField(max_length=2)
    status = models.CharField(
        max_length=16, choices=OrderStatus.choices, default=OrderStatus.PLACED
    )
    total = models.DecimalField(max_digits=12, decimal_places=2)
    currency = models.CharField(max_length=3)
    # Set when the order ships (staff may leave each blank: not every parcel is tracked).
    # (Defaults in the database too: processes of the previous release, still running during
    # a deploy, insert orders without these columns.)
    carrier = models.CharField(max_length=100, blank=True, default="", db_default="")
    tracking_number = models.CharField(max_length=100, blank=True, default="", db_default="")
    # http or https only (checked by ``orders.actions.order_shipped``): it is a link in email.
    tracking_url = models.URLField(max_length=500, blank=True, default="", db_default="")
    shipped_at = models.DateTimeField(null=True, blank=True)
    cancelled_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["customer_id", "-created_at"])]
        constraints = [
            models.CheckConstraint(condition=models.Q(total__gte=0), name="order_total_gte_0"),
        ]
        permissions = [
            ("ship_order", "Can mark orders shipped"),
            ("cancel_order", "Can cancel orders"),
        ]

    def __str__(self) -> str:
        return f"Order {self.pk}"


class OrderStatusChange(models.Model):
    """One move of an order's status: from, to, who, when, why. Written only by
    ``orders.actions``, with the order's row locked, so the changes of an order chain exactly
    (each ``from_status`` is the previous ``to_status``)."""

    order = models.ForeignKey(Order, on_delete=models.CASCADE, related_name="status_changes")
    from_status = models.CharField(max_length=16, choices=OrderStatus.choices)
    to_status = models.CharField(max_length=16, choices=OrderStatus.choices)
    # Who: the staff member's username, or the process that made it (``worker``, ``system``).
    actor = models.CharField(max_length=150)
    note = models.CharField(max_length=500, blank=True, default="")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["created_at", "id"]
        indexes = [models.Index(fields=["order", "created_at"])]

    def __str__(self) -> str:
        return f"Order {self.order_id}: {self.from_status} -> {self.to_status} by {self.actor}"


class OrderLine(models.Model):
    order = models.ForeignKey(Order, on_delete=models.CASCADE, related_name="lines")
    product = models.ForeignKey(Product, on_delete=models.PROTECT, related_name="+")
    sku = models.CharField(max_length=64)
    name = models.CharField(max_length=200)
    unit_price = models.DecimalField(max_digits=10, decimal_places=2)
    quantity = models.PositiveIntegerField()
    line_total = models.DecimalField(max_digits=12, decimal_places=2)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(quantity__gte=1), name="orderline_quantity_gte_1"
            ),
            models.UniqueConstraint(fields=["order", "product"], name="orderline_unique_product"),
        ]

    def __str__(self) -> str:
        return f"{self.quantity} x {self.sku}"


class IdempotencyKey(models.Model):
    """A customer's ``Idempotency-Key`` for order placement and the answer it got.

    Scoped per customer and kept until ``expires_at``; a retry with the same key and body is
    answered from here instead of placing a second order.
    """

    customer_id = models.CharField(max_length=128)
    key = models.CharField(max_length=255)
    # SHA-256 of the request body (canonical JSON): the same key with another body is refused.
    fingerprint = models.CharField(max_length=64)
    order = models.ForeignKey(Order, on_delete=models.CASCADE, null=True, related_name="+")
    response_body = models.JSONField(null=True, encoder=DjangoJSONEncoder)
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField(db_index=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["customer_id", "key"], name="idempotency_key_unique")
        ]

    def __str__(self) -> str:
        return f"{self.customer_id}:{self.key}"
