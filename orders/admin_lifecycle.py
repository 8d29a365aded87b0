"""The order admin's ship and cancel pages (a mixin of ``OrderAdmin``): forms in, one
service call per order (``orders.lifecycle``), a message per outcome out.

Both start from the order's page (one order) or from the list's actions (the selected
orders) and show a page of their own first: shipping asks for each order's carrier, tracking
number and URL (all optional), cancelling for a note and a confirmation. Every change is a
CSRF-protected POST and needs its permission ("Can mark orders shipped", "Can cancel orders").
"""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.core.validators import URLValidator
from django.http import HttpResponseRedirect
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join

from orders import actions, lifecycle
from orders.models import Order, OrderStatus

SHIP_PERMISSION = "orders.ship_order"
CANCEL_PERMISSION = "orders.cancel_order"
#: At most this many orders on one ship or cancel page.
MAX_ORDERS = 100


class ShipForm(forms.Form):
    """One order's tracking details; each may be left blank."""

    carrier = forms.CharField(max_length=100, required=False)
    tracking_number = forms.CharField(max_length=100, required=False)
    tracking_url = forms.CharField(
        max_length=500,
        required=False,
        label="Tracking URL",
        validators=[URLValidator(schemes=["http", "https"])],
        help_text="http:// or https:// only: it becomes a link in the customer's email.",
    )

    def tracking(self) -> lifecycle.Tracking:
        data = self.cleaned_data
        return lifecycle.Tracking(
            carrier=data["carrier"], number=data["tracking_number"], url=data["tracking_url"]
        )


class CancelForm(forms.Form):
    note = forms.CharField(
        max_length=300, required=False, help_text="Why (kept with the order and its stock)."
    )


def _ids(request) -> list[int]:
    raw = request.POST.get("ids") if request.method == "POST" else request.GET.get("ids")
    ids = [int(part) for part in (raw or "").split(",") if part.strip().isdigit()]
    return list(dict.fromkeys(ids))[:MAX_ORDERS]


class OrderLifecycleAdmin:
    """Mixed into ``OrderAdmin`` (a ``ModelAdmin``)."""

    def has_ship_order_permission(self, request) -> bool:
        return request.user.has_perm(SHIP_PERMISSION)

    def has_cancel_order_permission(self, request) -> bool:
        return request.user.has_perm(CANCEL_PERMISSION)

    def lifecycle_urls(self) -> list:
        ship = self.admin_site.admin_view(self.ship_view)
        cancel = self.admin_site.admin_view(self.cancel_view)
        return [
            path("ship/", ship, name="orders_order_ship"),
            path("cancel/", cancel, name="orders_order_cancel"),
        ]

    # --- list actions: to the page that asks for details ---------------------------------
    @admin.action(description="Mark shipped (tracking details next)", permissions=["ship_order"])
    def mark_shipped(self, request, queryset) -> HttpResponseRedirect:
        ids = ",".join(str(pk) for pk in queryset.order_by("pk").values_list("pk", flat=True))
        return redirect(f"{reverse('admin:orders_order_ship')}?ids={ids}")

    @admin.action(description="Cancel orders (stock goes back)", permissions=["cancel_order"])
    def cancel_orders(self, request, queryset) -> HttpResponseRedirect:
        ids = ",".join(str(pk) for pk in queryset.order_by("pk").values_list("pk", flat=True))
        return redirect(f"{reverse('admin:orders_order_cancel')}?ids={ids}")

    # --- the pages -------------------------------------------------------------------------
    def _orders(self, request) -> list[Order]:
        ids = _ids(request)
        orders = {o.pk: o for o in self.get_queryset(request).filter(pk__in=ids)}
        return [orders[pk] for pk in ids if pk in orders]

    def _back(self, orders: list[Order]) -> HttpResponseRedirect:
        if len(orders) == 1:
            return redirect("admin:orders_order_change", orders[0].pk)
        return redirect("admin:orders_order_changelist")

    def _report(self, request, result: lifecycle.BatchResult, done: str) -> None:
        if result.done:
            numbers = ", ".join(f"#{pk}" for pk in result.done)
            self.message_user(request, f"{done} {numbers}.", messages.SUCCESS)
        for message in result.refused.values():
            self.message_user(request, message, messages.ERROR)

    def ship_view(self, request):
        if not self.has_ship_order_permission(request):
            raise PermissionDenied
        orders = self._orders(request)
        if not orders:
            self.message_user(request, "No order to ship was selected.", messages.WARNING)
            return redirect("admin:orders_order_changelist")
        forms_ = [
            (order, ShipForm(request.POST or None, prefix=f"o{order.pk}")) for order in orders
        ]
        if request.method == "POST" and all(form.is_valid() for _, form in forms_):
            tracking = {order.pk: form.tracking() for order, form in forms_}
            actor = request.user.get_username()
            result = lifecycle.orders_apply(
                order_ids=tracking,
                apply=lambda pk: lifecycle.order_ship(
                    order_id=pk, actor=actor, tracking=tracking[pk]
                ),
            )
            self._report(request, result, "Marked shipped: order(s)")
            return self._back(orders)
        return self._page(
            request,
            template="admin/orders/order/ship.html",
            title="Mark orders shipped" if len(orders) > 1 else f"Ship order #{orders[0].pk}",
            rows=forms_,
            can=lambda o: actions.transition_allowed(
                from_status=o.status, to_status=OrderStatus.SHIPPED
            ),
        )

    def cancel_view(self, request):
        if not self.has_cancel_order_permission(request):
            raise PermissionDenied
        orders = self._orders(request)
        if not orders:
            self.message_user(request, "No order to cancel was selected.", messages.WARNING)
            return redirect("admin:orders_order_changelist")
        form = CancelForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            actor, note = request.user.get_username(), form.cleaned_data["note"]
            result = lifecycle.orders_apply(
                order_ids=[o.pk for o in orders],
                apply=lambda pk: lifecycle.order_cancel(order_id=pk, actor=actor, note=note),
            )
            self._report(request, result, "Cancelled order(s)")
            return self._back(orders)
        return self._page(
            request,
            template="admin/orders/order/cancel.html",
            title="Cancel orders" if len(orders) > 1 else f"Cancel order #{orders[0].pk}",
            rows=[(order, None) for order in orders],
            can=lambda o: actions.transition_allowed(
                from_status=o.status, to_status=OrderStatus.CANCELLED
            ),
            form=form,
        )

    def _page(self, request, *, template: str, title: str, rows, can, form=None):
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": title,
            "rows": [(order, order_form, can(order)) for order, order_form in rows],
            "ids": ",".join(str(order.pk) for order, _ in rows),
            "form": form,
        }
        return TemplateResponse(request, template, context)

    # --- the order page's read-only fields -----------------------------------------------
    @admin.display(description="Status changes (oldest first)")
    def status_history(self, obj: Order) -> str:
        changes = actions.order_status_history(order_id=obj.pk) if obj.pk else []
        if not changes:
            return "-"
        rows = format_html_join(
            "",
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            (
                (
                    f"{c.created_at:%Y-%m-%d %H:%M:%S}",
                    c.get_from_status_display(),
                    c.get_to_status_display(),
                    c.actor,
                    c.note,
                )
                for c in changes
            ),
        )
        return format_html(
            '<table class="status-history"><thead><tr><th>Time (UTC)</th><th>From</th>'
            "<th>To</th><th>By</th><th>Note</th></tr></thead><tbody>{}</tbody></table>",
            rows,
        )

    @admin.display(description="Tracking URL")
    def tracking_link(self, obj: Order) -> str:
        if not obj.tracking_url:
            return "-"
        return format_html(
            '<a href="{}" rel="noopener noreferrer" target="_blank">{}</a>',
            obj.tracking_url,
            obj.tracking_url,
        )
