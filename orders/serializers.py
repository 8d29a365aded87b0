"""Input and output shapes of the orders API. Validation only: no writes here."""

from __future__ import annotations

import unicodedata

import pycountry
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from orders.models import Order, OrderLine, OrderStatus, Product

MAX_LINES = 50
MAX_QUANTITY = 100


class StrictIntegerField(serializers.IntegerField):
    """A JSON integer: DRF's IntegerField would also take "3", 3.0 and true."""

    default_error_messages = {"invalid": "A JSON integer is required."}

    def to_internal_value(self, data):
        if isinstance(data, bool) or not isinstance(data, int):
            self.fail("invalid")
        return super().to_internal_value(data)


#: Format characters (Cf) that text in some scripts needs: ZERO WIDTH NON-JOINER (Persian,
#: Indic scripts) and ZERO WIDTH JOINER (Indic scripts, emoji sequences).
JOINERS = frozenset("\u200c\u200d")
#: Unicode categories never allowed in an order's text: controls (Cc), surrogates (Cs: not
#: text at all; PostgreSQL cannot store one), private use (Co: meaningless to anyone but the
#: sender's font), line and paragraph separators (Zl, Zp: they break a label's or an email's
#: lines as a newline would), and format characters (Cf) but the two joiners: the
#: bidirectional controls (U+202A-U+202E, U+2066-U+2069, U+200E, U+200F, U+061C) that can
#: make "1 Main St" display as something else, invisible ones (U+200B, U+2060, U+FEFF, soft
#: hyphen) and tag characters (U+E0000-U+E007F) that hide text.
REFUSED_CATEGORIES = frozenset({"Cc", "Cs", "Co", "Zl", "Zp", "Cf"})


def refused_character(ch: str) -> bool:
    """Whether an order's text may not contain ``ch`` (see ``REFUSED_CATEGORIES``).

    Also the noncharacters (U+FDD0-U+FDEF, U+xxFFFE, U+xxFFFF), never meant for interchange.
    Unassigned code points are allowed: Python's Unicode tables lag the clients' (a new
    emoji would otherwise be refused).
    """
    if ch in JOINERS:
        return False
    code = ord(ch)
    if 0xFDD0 <= code <= 0xFDEF or code & 0xFFFE == 0xFFFE:
        return True
    return unicodedata.category(ch) in REFUSED_CATEGORIES


class StrictCharField(serializers.CharField):
    """A JSON string: DRF's CharField would also take numbers. Controls, separators and
    invisible formatting characters are refused anywhere in it (``refused_character``),
    before surrounding whitespace is trimmed."""

    default_error_messages = {
        "invalid": "A string is required.",
        "control": "Control characters, line or paragraph separators and invisible "
        "formatting characters (such as bidirectional controls) are not allowed.",
    }

    def to_internal_value(self, data):
        if not isinstance(data, str):
            self.fail("invalid")
        if any(refused_character(ch) for ch in data):
            self.fail("control")
        return super().to_internal_value(data)


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
        """The ISO code of the record that matched (``us`` -> ``US``), never the client's
        spelling: only ASCII letters are looked up (pycountry compares lowercased, so the
        KELVIN SIGN in "\u212aE" would otherwise match Kenya and be stored as sent)."""
        country = None
        if value.isascii() and value.isalpha():
            country = pycountry.countries.get(alpha_2=value)
        if country is None:
            raise serializers.ValidationError(
                f"{value!r} is not an ISO 3166-1 alpha-2 country code."
            )
        return country.alpha_2


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


class EmailOutputSerializer(serializers.Serializer):
    kind = serializers.ChoiceField(
        choices=["confirmation", "shipped", "cancelled"], help_text="Which email of the order."
    )
    status = serializers.CharField(help_text="pending, failed, sent, delivered, bounced, ...")
    sent_at = serializers.DateTimeField(allow_null=True)


class TrackingOutputSerializer(serializers.Serializer):
    carrier = serializers.CharField(help_text="Empty when staff gave none.")
    number = serializers.CharField(source="tracking_number", help_text="Empty when none.")
    url = serializers.CharField(
        source="tracking_url", help_text="An http(s) link to the carrier's page, or empty."
    )
    shipped_at = serializers.DateTimeField()


class OrderOutputSerializer(serializers.ModelSerializer):
    shipping_address = ShippingAddressOutputSerializer(source="*")
    # An order from ``selectors.order_list_for_customer`` or ``services.order_place``: its
    # lines and emails are in ``line_list`` and ``email_list``.
    items = OrderLineOutputSerializer(source="line_list", many=True)
    confirmation_email = serializers.SerializerMethodField(
        help_text="The confirmation email (also in `emails`)."
    )
    emails = serializers.SerializerMethodField(
        help_text="Every email of the order, oldest first: confirmation, then shipped or cancelled."
    )
    tracking = serializers.SerializerMethodField(
        help_text="Once the order has shipped: its carrier and tracking details; else null."
    )
    cancelled_at = serializers.DateTimeField(
        allow_null=True, help_text="When the order was cancelled; null unless it was."
    )

    @extend_schema_field(ConfirmationEmailOutputSerializer(allow_null=True))
    def get_confirmation_email(self, order: Order) -> dict | None:
        email = next((e for e in order.email_list if e.kind == "confirmation"), None)
        return ConfirmationEmailOutputSerializer(email).data if email else None

    @extend_schema_field(EmailOutputSerializer(many=True))
    def get_emails(self, order: Order) -> list[dict]:
        emails = sorted(order.email_list, key=lambda e: (e.created_at, e.pk))
        return EmailOutputSerializer(emails, many=True).data

    @extend_schema_field(TrackingOutputSerializer(allow_null=True))
    def get_tracking(self, order: Order) -> dict | None:
        if order.status != OrderStatus.SHIPPED:
            return None
        return TrackingOutputSerializer(order).data

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
            "tracking",
            "cancelled_at",
            "confirmation_email",
            "emails",
        ]
