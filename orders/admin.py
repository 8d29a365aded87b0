from django.contrib import admin
from django.db.models import Count
from django.urls import reverse
from django.utils.html import format_html

from orders.models import Order, OrderLine, Product


@admin.register(Product)
class ProductAdmin(admin.ModelAdmin):
    list_display = ["sku", "name", "price", "stock", "is_active"]
    list_editable = ["stock", "is_active"]
    list_filter = ["is_active"]
    search_fields = ["sku", "name"]


class OrderLineInline(admin.TabularInline):
    model = OrderLine
    fields = ["sku", "name", "quantity", "unit_price", "line_total"]
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False


@admin.register(Order)
class OrderAdmin(admin.ModelAdmin):
    list_display = [
        "id",
        "customer_email",
        "status",
        "total_with_currency",
        "line_count",
        "email_status",
        "created_at",
    ]
    list_filter = ["status", "confirmation_email__status", "created_at"]
    search_fields = ["customer_email", "customer_id", "lines__sku"]
    search_help_text = "Order number, customer email, customer id or SKU."
    date_hierarchy = "created_at"
    inlines = [OrderLineInline]
    fieldsets = [
        (None, {"fields": ["id", "status", "total", "currency", "created_at", "updated_at"]}),
        ("Customer", {"fields": ["customer_id", "customer_email"]}),
        (
            "Shipping address",
            {
                "fields": [
                    "shipping_name",
                    "shipping_line1",
                    "shipping_line2",
                    "shipping_city",
                    "shipping_postal_code",
                    "shipping_country",
                ]
            },
        ),
        (
            "Confirmation email",
            {
                "fields": [
                    "email_status",
                    "email_attempts",
                    "email_last_error",
                    "email_ses_message_id",
                    "email_sent_at",
                    "email_preview",
                ]
            },
        ),
    ]

    def get_queryset(self, request):
        # One query for the page whatever its size: the email record joined, lines counted.
        return (
            super()
            .get_queryset(request)
            .select_related("confirmation_email")
            .annotate(line_count=Count("lines", distinct=True))
        )

    def get_search_results(self, request, queryset, search_term):
        queryset, may_have_duplicates = super().get_search_results(request, queryset, search_term)
        term = search_term.strip().lstrip("#")
        if term.isdigit() and len(term) < 19:
            queryset |= self.get_queryset(request).filter(pk=int(term))
        return queryset, may_have_duplicates

    def get_readonly_fields(self, request, obj=None):
        # Orders are records of what a customer bought: staff read them, services write them.
        return [field for fieldset in self.fieldsets for field in fieldset[1]["fields"]]

    def has_add_permission(self, request) -> bool:
        return False

    @admin.display(description="Total", ordering="total")
    def total_with_currency(self, obj: Order) -> str:
        return f"{obj.total} {obj.currency}"

    @admin.display(description="Lines", ordering="line_count")
    def line_count(self, obj: Order) -> int:
        return obj.line_count  # annotated in get_queryset

    def _email(self, obj: Order):
        return getattr(obj, "confirmation_email", None)

    @admin.display(description="Email status", ordering="confirmation_email__status")
    def email_status(self, obj: Order) -> str:
        email = self._email(obj)
        return email.get_status_display() if email else "-"

    @admin.display(description="Attempts")
    def email_attempts(self, obj: Order) -> int | str:
        email = self._email(obj)
        return email.attempts if email else "-"

    @admin.display(description="Last error")
    def email_last_error(self, obj: Order) -> str:
        email = self._email(obj)
        return (email.last_error or "-") if email else "-"

    @admin.display(description="SES message id")
    def email_ses_message_id(self, obj: Order) -> str:
        email = self._email(obj)
        return (email.ses_message_id or "-") if email else "-"

    @admin.display(description="Sent at")
    def email_sent_at(self, obj: Order):
        email = self._email(obj)
        return email.sent_at if email and email.sent_at else "-"

    @admin.display(description="Preview")
    def email_preview(self, obj: Order) -> str:
        if not self._email(obj):
            return "-"
        url = reverse("admin:notifications_confirmationemail_preview", args=[obj.pk])
        return format_html('<a href="{}" target="_blank">preview the email</a>', url)
