"""Input and output shapes of the orders API. Validation only: no writes here."""

from __future__ import annotations

import pycountry
from rest_framework import serializers

from orders.models import Order, OrderLine, Product

MAX_LINES = 50
MAX_QUANTITY = 100


class StrictIntegerField(serializers.IntegerField):
    """A JSON integer: DRF's IntegerField would also take "3", 3.0 and true."""

    default_error_messages = {"invalid": "A JSON integer is required."}

    def to_internal_value(self, data):
        if isinstance(data, bool) or not isinstance(data, int):
            self.fail("invalid")
        return super().to_internal_value(data)


class StrictCharField(serializers.CharField):
    """A JSON string: DRF's CharField would also take numbers. Control characters refused."""

    default_error_messages = {
        "invalid": "A string is required.",
        "control": "Control characters are not allowed.",
    }

    def to_internal_value(self, data):
        if not isinstance(data, str):
            self.fail("invalid")
        value = super().to_internal_value(data)
        if any(ord(ch) < 32 or 127 <= ord(ch) < 160 for ch in value):
            self.fail("control")
        return value


class ShippingAddressSerializer(serializers.Serializer):
    name = StrictCharField(max_length=200)
    line1 = StrictCharField(max_length=200)
    line2 = StrictCharField(max_length=200, required=False, allow_blank=True, default="")
    city = StrictCharField(max_length=100)
    postal_code = StrictCharField(max_length=20)
    country = StrictCharField(
        min_length=2, max_length=2, help_text="ISO 3166-1 alpha-2 code, e.g. US or DE."
    )

    def validate_country(self, value: str) -> str:
        code = value.upper()
        if pycountry.countries.get(alpha_2=code) is None:
            raise serializers.ValidationError(
                f"{value!r} is not an ISO 3166-1 alpha-2 country code."
            )
        return code


class OrderItemInputSerializer(serializers.Serializer):
    sku = StrictCharField(max_length=64)
    quantity = StrictIntegerField(min_value=1, max_value=MAX_QUANTITY)


class OrderInputSerializer(serializers.Serializer):
    shipping_address = ShippingAddressSerializer()
    items = OrderItemInputSerializer(many=True, min_length=1, max_length=MAX_LINES)

    def validate_items(self, items: list[dict]) -> list[dict]:
        seen: set[str] = set()
        duplicates = []
        for item in items:
            if item["sku"] in seen:
                duplicates.append(item["sku"])
            seen.add(item["sku"])
        if duplicates:
            raise serializers.ValidationError(
                "Each SKU may appear once; repeated: " + ", ".join(sorted(set(duplicates)))
            )
        return items


class ProductSerializer(serializers.ModelSerializer):
    class Meta:
        model = Product
        fields = ["sku", "name", "price", "stock"]


class ShippingAddressOutputSerializer(serializers.Serializer):
    name = serializers.CharField(source="shipping_name")
    line1 = serializers.CharField(source="shipping_line1")
    line2 = serializers.CharField(source="shipping_line2")
    city = serializers.CharField(source="shipping_city")
    postal_code = serializers.CharField(source="shipping_postal_code")
    country = serializers.CharField(source="shipping_country")


class OrderLineOutputSerializer(serializers.ModelSerializer):
    class Meta:
        model = OrderLine
        fields = ["sku", "name", "quantity", "unit_price", "line_total"]


class CustomerOutputSerializer(serializers.Serializer):
    id = serializers.CharField(help_text="The customer's id: the ID token's `sub`.")
    email = serializers.EmailField()
    order_count = serializers.IntegerField(min_value=0)


class ConfirmationEmailOutputSerializer(serializers.Serializer):
    status = serializers.CharField()
    sent_at = serializers.DateTimeField(allow_null=True)


class OrderOutputSerializer(serializers.ModelSerializer):
    shipping_address = ShippingAddressOutputSerializer(source="*")
    items = OrderLineOutputSerializer(source="lines", many=True)
    confirmation_email = ConfirmationEmailOutputSerializer()

    class Meta:
        model = Order
        fields = [
            "id",
            "status",
            "customer_email",
            "shipping_address",
            "items",
            "total",
            "currency",
            "created_at",
            "confirmation_email",
        ]
