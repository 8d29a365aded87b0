"""Load the demo catalog (idempotent: existing SKUs are updated)."""

from decimal import Decimal

from django.core.management.base import BaseCommand

from orders.services import product_upsert

DEMO_PRODUCTS = [
    ("MUG-001", "Stoneware mug", Decimal("12.50"), 100),
    ("TEE-002", "Organic cotton T-shirt", Decimal("24.00"), 50),
    ("BAG-003", "Canvas tote bag", Decimal("18.90"), 30),
    ("PEN-004", "Fountain pen", Decimal("49.00"), 10),
    ("CAP-005", "Baseball cap", Decimal("21.00"), 3),
]


class Command(BaseCommand):
    help = "Create or update the demo products."

    def handle(self, *args, **options):
        created = 0
        for sku, name, price, stock in DEMO_PRODUCTS:
            _, was_created = product_upsert(sku=sku, name=name, price=price, stock=stock)
            created += was_created
        self.stdout.write(
            f"demo products: {created} created, {len(DEMO_PRODUCTS) - created} updated"
        )
