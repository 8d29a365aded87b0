from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import Count
from django.shortcuts import get_object_or_404, redirect
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join
from django.utils.safestring import mark_safe
from django.views.decorators.http import require_POST

from notifications import services as notification_services
from orders.models import Order, OrderLine, Product

RESEND_PERMISSION = "notifications.resend_confirmation"


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


class EmailStatusFilter(admin.ChoicesFieldListFilter):
    """The confirmation email's status, titled apart from the order's own status filter."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.title = "email status"


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
    list_filter = ["status", ("confirmation_email__status", EmailStatusFilter), "created_at"]
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
                    "email_ses_message_ids",
                    "email_sent_at",
                    "email_preview",
                ]
            },
        ),
        ("Email history", {"fields": ["email_history"]}),
    ]
    actions = ["resend_confirmation"]
    change_form_template = "admin/orders/order/change_form.html"

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

    def has_resend_confirmation_permission(self, request) -> bool:
        return request.user.has_perm(RESEND_PERMISSION)

    @admin.action(description="Resend confirmation email", permissions=["resend_confirmation"])
    def resend_confirmation(self, request, queryset):
        order_ids = list(queryset.order_by("pk").values_list("pk", flat=True))
        self._resend(request, order_ids, f"{len(order_ids)} order(s)")

    def _resend(self, request, order_ids: list[int], what: str) -> None:
        result = notification_services.confirmation_resend(
            order_ids=order_ids, actor=request.user.get_username()
        )
        if result.published:
            self.message_user(
                request, f"Queued the confirmation email again for {what}.", messages.SUCCESS
            )
        if result.failed:
            self.message_user(
                request,
                f"Could not queue {len(result.failed)} email(s) now (SQS did not answer): "
                "they stay pending and the confirmation sweep queues them.",
                messages.WARNING,
            )
        if result.missing:
            self.message_user(
                request,
                f"{len(result.missing)} order(s) have no confirmation email record.",
                messages.ERROR,
            )

    def get_urls(self):
        resend = self.admin_site.admin_view(require_POST(self.resend_view))
        return [
            path(
                "<int:order_id>/resend-confirmation/",
                resend,
                name="orders_order_resend_confirmation",
            ),
            *super().get_urls(),
        ]

    def resend_view(self, request, order_id: int):
        """The order page's "Resend confirmation email" button (a POST with CSRF token)."""
        order = get_object_or_404(Order, pk=order_id)
        if not self.has_resend_confirmation_permission(request):
            raise PermissionDenied
        self._resend(request, [order.pk], f"order #{order.pk}")
        return redirect("admin:orders_order_change", order.pk)

    def change_view(self, request, object_id, form_url="", extra_context=None):
        extra_context = {
            **(extra_context or {}),
            "can_resend_confirmation": self.has_resend_confirmation_permission(request),
        }
        return super().change_view(request, object_id, form_url, extra_context)

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

    @admin.display(description="SES message ids (latest first)")
    def email_ses_message_ids(self, obj: Order) -> str:
        messages = notification_services.confirmation_ses_messages(order_id=obj.pk)
        return (
            format_html_join(
                mark_safe("<br>"),
                "{} ({})",
                ((m.message_id, f"{m.sent_at:%Y-%m-%d %H:%M:%S}") for m in messages),
            )
            or "-"
        )

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

    @admin.display(description="Attempts, resends and SES reports")
    def email_history(self, obj: Order) -> str:
        events = notification_services.confirmation_history(order_id=obj.pk)
        if not events:
            return "-"
        rows = format_html_join(
            "",
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            (
                (
                    f"{event.created_at:%Y-%m-%d %H:%M:%S}",
                    event.get_kind_display(),
                    event.attempt or "",
                    event.detail,
                    event.actor,
                )
                for event in events
            ),
        )
        return format_html(
            '<table class="email-history"><thead><tr><th>Time (UTC)</th><th>Event</th>'
            "<th>Attempt</th><th>Detail</th><th>By</th></tr></thead><tbody>{}</tbody></table>",
            rows,
        )
