from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import Count, F, FilteredRelation, Q
from django.shortcuts import get_object_or_404, redirect
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join
from django.utils.safestring import mark_safe
from django.views.decorators.http import require_POST

from notifications import selectors as notification_selectors
from notifications import services as notification_services
from orders import services
from orders.admin_lifecycle import OrderLifecycleAdmin
from orders.models import Order, OrderLine, Product, StockReason
from shop.exceptions import ApplicationError

RESEND_PERMISSION = "notifications.resend_confirmation"
ADJUST_STOCK_PERMISSION = "orders.adjust_stock"


class StockAdjustmentForm(forms.Form):
    """The product page's stock adjustment: received +n, damaged -n, or a count."""

    KINDS = [
        (StockReason.RECEIVED, "Received: add"),
        (StockReason.DAMAGED, "Damaged or lost: take away"),
        (StockReason.COUNTED, "Counted: set to"),
    ]
    kind = forms.ChoiceField(choices=KINDS)
    quantity = forms.IntegerField(min_value=0, max_value=1_000_000)
    # The stock shown when the page was rendered: a count made against it is refused if the
    # stock has moved since (an order, another adjustment).
    expected = forms.IntegerField(min_value=0, widget=forms.HiddenInput)
    note = forms.CharField(max_length=200, required=False)

    def clean(self):
        data = super().clean()
        if data.get("kind") != StockReason.COUNTED and data.get("quantity") == 0:
            self.add_error("quantity", "Add or take away at least 1.")
        return data


@admin.register(Product)
class ProductAdmin(admin.ModelAdmin):
    """Stock is read-only here: staff change it with an adjustment on the product page
    (``adjust_view``), applied under the row lock orders take and recorded. Saving the list or
    the form writes only the fields staff changed, never the stock loaded with the page."""

    list_display = ["sku", "name", "price", "stock", "is_active"]
    list_editable = ["is_active"]
    list_filter = ["is_active"]
    search_fields = ["sku", "name"]
    fields = ["sku", "name", "price", "is_active", "stock", "stock_history"]
    readonly_fields = ["stock", "stock_history"]
    change_form_template = "admin/orders/product/change_form.html"

    def save_model(self, request, obj, form, change):
        if not change:
            return super().save_model(request, obj, form, change)
        changed = [name for name in form.changed_data if name != "stock"]
        if changed:
            obj.save(update_fields=changed)

    def has_adjust_stock_permission(self, request) -> bool:
        return request.user.has_perm(ADJUST_STOCK_PERMISSION)

    def get_urls(self):
        adjust = self.admin_site.admin_view(require_POST(self.adjust_view))
        return [
            path("<int:product_id>/adjust-stock/", adjust, name="orders_product_adjust_stock"),
            *super().get_urls(),
        ]

    def adjust_view(self, request, product_id: int):
        """The product page's "Adjust stock" form (a POST with CSRF token)."""
        product = get_object_or_404(Product, pk=product_id)
        if not self.has_adjust_stock_permission(request):
            raise PermissionDenied
        form = StockAdjustmentForm(request.POST)
        if not form.is_valid():
            problems = "; ".join(f"{k}: {' '.join(v)}" for k, v in form.errors.items())
            self.message_user(request, f"Stock not changed: {problems}", messages.ERROR)
            return redirect("admin:orders_product_change", product.pk)
        data = form.cleaned_data
        counted = data["kind"] == StockReason.COUNTED
        sign = -1 if data["kind"] == StockReason.DAMAGED else 1
        try:
            adjustment = services.product_stock_adjust(
                product_id=product.pk,
                reason=data["kind"],
                actor=request.user.get_username(),
                delta=None if counted else sign * data["quantity"],
                set_to=data["quantity"] if counted else None,
                expected=data["expected"] if counted else None,
                note=data["note"],
            )
        except ApplicationError as exc:
            self.message_user(request, f"Stock not changed: {exc.message}", messages.ERROR)
        else:
            before = adjustment.stock_after - adjustment.delta
            self.message_user(
                request,
                f"Stock of {product.sku}: {before} -> {adjustment.stock_after} "
                f"({adjustment.get_reason_display().lower()}, {adjustment.delta:+d}).",
                messages.SUCCESS,
            )
        return redirect("admin:orders_product_change", product.pk)

    def change_view(self, request, object_id, form_url="", extra_context=None):
        extra_context = {
            **(extra_context or {}),
            "can_adjust_stock": self.has_adjust_stock_permission(request),
            "stock_form": StockAdjustmentForm(),
        }
        return super().change_view(request, object_id, form_url, extra_context)

    @admin.display(description="Stock changes outside orders (latest first)")
    def stock_history(self, obj: Product) -> str:
        adjustments = services.product_stock_history(product_id=obj.pk) if obj.pk else []
        if not adjustments:
            return "-"
        rows = format_html_join(
            "",
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            (
                (
                    f"{a.created_at:%Y-%m-%d %H:%M:%S}",
                    f"{a.delta:+d}",
                    a.get_reason_display(),
                    a.stock_after,
                    a.note,
                    a.actor,
                )
                for a in adjustments
            ),
        )
        return format_html(
            '<table class="stock-history"><thead><tr><th>Time (UTC)</th><th>Change</th>'
            "<th>Reason</th><th>Stock after</th><th>Note</th><th>By</th></tr></thead>"
            "<tbody>{}</tbody></table>",
            rows,
        )


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


class EmailStatusFilter(admin.SimpleListFilter):
    """The confirmation email's status, titled apart from the order's own status filter.
    (The parameter keeps the name it had when the confirmation was the order's only email.)"""

    title = "email status"
    parameter_name = "confirmation_email__status__exact"

    def lookups(self, request, model_admin):
        return notification_selectors.EMAIL_STATUSES

    def queryset(self, request, queryset):
        if self.value() is None:
            return queryset
        return queryset.filter(emails__kind="confirmation", emails__status=self.value())


@admin.register(Order)
class OrderAdmin(OrderLifecycleAdmin, admin.ModelAdmin):
    list_display = [
        "id",
        "customer_email",
        "status",
        "total_with_currency",
        "line_count",
        "email_status",
        "created_at",
    ]
    list_filter = ["status", EmailStatusFilter, "created_at"]
    search_fields = ["customer_email", "customer_id", "lines__sku"]
    search_help_text = "Order number, customer email, customer id or SKU."
    date_hierarchy = "created_at"
    inlines = [OrderLineInline]
    fieldsets = [
        (None, {"fields": ["id", "status", "total", "currency", "created_at", "updated_at"]}),
        (
            "Shipping and cancellation",
            {
                "fields": [
                    "carrier",
                    "tracking_number",
                    "tracking_link",
                    "shipped_at",
                    "cancelled_at",
                    "status_history",
                ]
            },
        ),
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
        ("Emails", {"fields": ["emails_table"]}),
        ("Email history", {"fields": ["email_history"]}),
    ]
    actions = ["resend_confirmation", "mark_shipped", "cancel_orders"]
    change_form_template = "admin/orders/order/change_form.html"

    def get_queryset(self, request):
        # One query for the page whatever its size: the confirmation email joined (one per
        # order: unique per kind), lines counted.
        return (
            super()
            .get_queryset(request)
            .annotate(
                confirmation=FilteredRelation("emails", condition=Q(emails__kind="confirmation")),
                confirmation_status=F("confirmation__status"),
                line_count=Count("lines", distinct=True),
            )
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
        if result.queued:
            self.message_user(
                request, f"Queued the confirmation email again for {what}.", messages.SUCCESS
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
            *self.lifecycle_urls(),
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
            "can_ship_order": self.has_ship_order_permission(request),
            "can_cancel_order": self.has_cancel_order_permission(request),
        }
        return super().change_view(request, object_id, form_url, extra_context)

    @admin.display(description="Total", ordering="total")
    def total_with_currency(self, obj: Order) -> str:
        return f"{obj.total} {obj.currency}"

    @admin.display(description="Lines", ordering="line_count")
    def line_count(self, obj: Order) -> int:
        return obj.line_count  # annotated in get_queryset

    @admin.display(description="Email status", ordering="confirmation_status")
    def email_status(self, obj: Order) -> str:
        """The confirmation email's (annotated in get_queryset)."""
        status = getattr(obj, "confirmation_status", None)
        return notification_selectors.email_status_label(status) if status else "-"

    @admin.display(description="Every email of the order")
    def emails_table(self, obj: Order) -> str:
        emails = notification_selectors.order_emails(order_id=obj.pk) if obj.pk else []
        if not emails:
            return "-"
        ids: dict[int, list] = {}
        for message in notification_selectors.order_ses_messages(order_id=obj.pk):
            ids.setdefault(message.email_id, []).append(message)
        rows = format_html_join(
            "",
            '<tr><td>{} email</td><td class="email-status">{}</td><td>{}</td><td>{}</td>'
            "<td>{}</td><td>{}</td>"
            '<td><a href="{}" target="_blank">preview the email</a></td></tr>',
            (
                (
                    email.get_kind_display(),
                    email.get_status_display(),
                    email.attempts,
                    email.last_error or "-",
                    f"{email.sent_at:%Y-%m-%d %H:%M:%S}" if email.sent_at else "-",
                    format_html_join(
                        mark_safe("<br>"),
                        "{} ({})",
                        (
                            (m.message_id, f"{m.sent_at:%Y-%m-%d %H:%M:%S}")
                            for m in ids.get(email.pk, [])
                        ),
                    )
                    or "-",
                    reverse("admin:notifications_orderemail_preview", args=[email.pk]),
                )
                for email in emails
            ),
        )
        return format_html(
            '<table class="order-emails"><thead><tr><th>Email</th><th>Status</th>'
            "<th>Attempts</th><th>Last error</th><th>Sent at (UTC)</th>"
            "<th>SES message ids (latest first)</th><th>Preview</th></tr></thead>"
            "<tbody>{}</tbody></table>",
            rows,
        )

    @admin.display(description="Attempts, resends and SES reports")
    def email_history(self, obj: Order) -> str:
        events = notification_selectors.order_email_history(order_id=obj.pk)
        if not events:
            return "-"
        rows = format_html_join(
            "",
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            (
                (
                    f"{event.created_at:%Y-%m-%d %H:%M:%S}",
                    event.notification.get_kind_display(),
                    event.get_kind_display(),
                    event.attempt or "",
                    event.detail,
                    event.actor,
                )
                for event in events
            ),
        )
        return format_html(
            '<table class="email-history"><thead><tr><th>Time (UTC)</th><th>Email</th>'
            "<th>Event</th><th>Attempt</th><th>Detail</th><th>By</th></tr></thead><tbody>{}</tbody></table>",
            rows,
        )
