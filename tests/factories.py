"""Test data: factory_boy factories for the rows tests build (tests/factories.py, as
HackSoft's Styleguide-Example keeps them).

``ProductFactory(sku="MUG", stock=10)`` saves a product (a unique SKU, 10.00, 10 in stock,
active, unless the test says otherwise). ``OrderFactory`` and ``OrderLineFactory`` save order
rows as they are, for a test about what reads them: no stock is taken and no email recorded.
An order as the shop places it comes from ``orders.services.order_place``. ``UserFactory``
and ``StaffFactory`` save a user and a staff user (``StaffFactory(is_superuser=True)``: a
superuser), password "pw" unless given, hashed as ``set_password`` hashes it.

Helpers that are not rows (request bodies, tokens, headers) are in tests/helpers.py.
"""

from __future__ import annotations

import uuid
from decimal import Decimal

import factory
from django.conf import settings

from orders.models import Order, OrderLine, Product


class ProductFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Product

    # Unique without a counter: a database may already hold rows of another process.
    sku = factory.LazyFunction(lambda: f"SKU-{uuid.uuid4().hex[:8]}")
    name = factory.LazyAttribute(lambda product: f"Product {product.sku}")
    price = Decimal("10.00")
    stock = 10
    is_active = True


class OrderFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Order

    customer_id = factory.LazyFunction(lambda: f"sub-{uuid.uuid4()}")
    customer_email = "alice@example.com"
    shipping_name = "Alice Example"
    shipping_line1 = "1 Main Street"
    shipping_city = "Springfield"
    shipping_postal_code = "12345"
    shipping_country = "US"
    total = Decimal("0.00")
    currency = factory.LazyFunction(lambda: settings.SHOP_CURRENCY)


class OrderLineFactory(factory.django.DjangoModelFactory):
    """A line of ``order`` for ``product`` at its price (name and SKU copied, as the shop
    does)."""

    class Meta:
        model = OrderLine

    order = factory.SubFactory(OrderFactory)
    product = factory.SubFactory(ProductFactory)
    sku = factory.SelfAttribute("product.sku")
    name = factory.SelfAttribute("product.name")
    unit_price = factory.SelfAttribute("product.price")
    quantity = 1
    line_total = factory.LazyAttribute(lambda line: line.unit_price * line.quantity)


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = settings.AUTH_USER_MODEL

    username = factory.LazyFunction(lambda: f"user-{uuid.uuid4().hex[:8]}")
    password = factory.django.Password("pw")


class StaffFactory(UserFactory):
    username = factory.LazyFunction(lambda: f"staff-{uuid.uuid4().hex[:8]}")
    is_staff = True
