"""An order's status changes: the one place that moves ``Order.status`` (Saleor's
``order/actions.py``, kept small).

The only moves are placed -> confirmed -> shipped, and placed or confirmed -> cancelled;
shipped and cancelled are final. Each move locks the order's row (``SELECT ... FOR UPDATE``),
checks the move against the status it finds, and records it (``OrderStatusChange``: from, to,
who, when, note) in the caller's transaction. Anything else raises ``TransitionRefused``
with a sentence staff can read.

This module imports only ``orders.models`` of the apps (an import-linter contract says so),
so ``notifications`` can call it (the worker confirms an order once its email went out)
without a cycle through ``orders.services``. Stock, emails and events belong to the
services that call these functions (``orders.services.order_ship`` / ``order_cancel``).
"""

from __future__ import annotations

from urllib.parse import urlsplit

from django.db import transaction
from django.utils import timezone

from orders.models import Order, OrderStatus, OrderStatusChange
from shop.exceptions import ApplicationError, ConflictError

#: Every allowed move: status -> the statuses it may become.
TRANSITIONS: dict[str, frozenset[str]] = {
    OrderStatus.PLACED: frozenset({OrderStatus.CONFIRMED, OrderStatus.CANCELLED}),
    OrderStatus.CONFIRMED: frozenset({OrderStatus.SHIPPED, OrderStatus.CANCELLED}),
    OrderStatus.SHIPPED: frozenset(),
    OrderStatus.CANCELLED: frozenset(),
}

#: Who made a change that no staff member asked for.
WORKER = "worker"
SYSTEM = "system"

_WHY_NOT = {
    (OrderStatus.PLACED, OrderStatus.SHIPPED): (
        "its confirmation email has not gone out yet (status placed); only a confirmed order "
        "can ship"
    ),
    (OrderStatus.SHIPPED, OrderStatus.CANCELLED): "it has shipped already",
    (OrderStatus.CANCELLED, OrderStatus.SHIPPED): "it was cancelled",
}


class TransitionRefused(ConflictError):
    """The order's status does not allow the move (e.g. cancelling a shipped order)."""

    code = "order_transition_refused"


class TrackingRefused(ApplicationError):
    code = "tracking_refused"


def transition_allowed(*, from_status: str, to_status: str) -> bool:
    return to_status in TRANSITIONS.get(from_status, frozenset())


def _verb(status: str) -> str:
    return {
        OrderStatus.CONFIRMED: "confirmed",
        OrderStatus.SHIPPED: "shipped",
        OrderStatus.CANCELLED: "cancelled",
        OrderStatus.PLACED: "placed",
    }.get(status, status)


def _refusal(order: Order, to_status: str) -> TransitionRefused:
    why = _WHY_NOT.get((order.status, to_status))
    if why is None:
        why = (
            f"it is {_verb(order.status)} already"
            if order.status == to_status
            else f"it is {_verb(order.status)}, and a {_verb(order.status)} order cannot be "
            f"{_verb(to_status)}"
        )
    return TransitionRefused(f"Order #{order.pk} cannot be {_verb(to_status)}: {why}.")


def _locked(order_id: int) -> Order:
    try:
        return Order.objects.select_for_update().get(pk=order_id)
    except Order.DoesNotExist:
        raise TransitionRefused(f"There is no order #{order_id}.") from None


def _move(
    order: Order, *, to_status: str, actor: str, note: str = "", fields: tuple[str, ...] = ()
) -> OrderStatusChange:
    """Move a locked order (already checked) and record the change."""
    from_status = order.status
    order.status = to_status
    order.save(update_fields=["status", "updated_at", *fields])
    return OrderStatusChange.objects.create(
        order=order,
        from_status=from_status,
        to_status=to_status,
        actor=(actor or SYSTEM)[:150],
        note=note[:500],
    )


def order_status_change(*, order_id: int, to_status: str, actor: str, note: str = "") -> Order:
    """Move the order to ``to_status`` if its current status allows it, else
    ``TransitionRefused``. For moves that carry no data of their own; shipping goes through
    ``order_shipped`` (tracking details), cancelling through ``order_cancelled``."""
    if to_status == OrderStatus.SHIPPED:
        return order_shipped(order_id=order_id, actor=actor, note=note)
    if to_status == OrderStatus.CANCELLED:
        return order_cancelled(order_id=order_id, actor=actor, note=note)
    with transaction.atomic():
        order = _locked(order_id)
        if not transition_allowed(from_status=order.status, to_status=to_status):
            raise _refusal(order, to_status)
        _move(order, to_status=to_status, actor=actor, note=note)
        return order


def order_confirmed(*, order_id: int, actor: str = WORKER, note: str = "") -> Order | None:
    """The order's confirmation email went out: placed -> confirmed. The worker's entry
    point, called in its send's transaction.

    An order no longer ``placed`` is left alone and ``None`` returned: a confirmation sent
    again (a resend, a redrive) for an order already confirmed, shipped or cancelled is not a
    move, and must not fail the send that SES has already accepted.
    """
    with transaction.atomic():
        order = Order.objects.select_for_update().filter(pk=order_id).first()
        if order is None or order.status != OrderStatus.PLACED:
            return None
        _move(order, to_status=OrderStatus.CONFIRMED, actor=actor, note=note)
        return order


def tracking_url_check(url: str) -> str:
    """The tracking URL as stored: empty, or an absolute http(s) URL with a host (it becomes
    a link in the customer's email: no ``javascript:``, ``data:`` or relative links)."""
    url = url.strip()
    if not url:
        return ""
    parts = urlsplit(url)
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise TrackingRefused(
            "The tracking URL must be an http:// or https:// address with a host name."
        )
    if any(ch.isspace() or ord(ch) < 32 for ch in url) or len(url) > 500:
        raise TrackingRefused("The tracking URL must be at most 500 characters, without spaces.")
    return url


def order_shipped(
    *,
    order_id: int,
    actor: str,
    carrier: str = "",
    tracking_number: str = "",
    tracking_url: str = "",
    note: str = "",
) -> Order:
    """confirmed -> shipped, with the tracking details staff have (each may be blank)."""
    tracking_url = tracking_url_check(tracking_url)
    carrier, tracking_number = carrier.strip(), tracking_number.strip()
    if len(carrier) > 100 or len(tracking_number) > 100:
        raise TrackingRefused("Carrier and tracking number are at most 100 characters each.")
    with transaction.atomic():
        order = _locked(order_id)
        if not transition_allowed(from_status=order.status, to_status=OrderStatus.SHIPPED):
            raise _refusal(order, OrderStatus.SHIPPED)
        order.carrier, order.tracking_number = carrier, tracking_number
        order.tracking_url, order.shipped_at = tracking_url, timezone.now()
        _move(
            order,
            to_status=OrderStatus.SHIPPED,
            actor=actor,
            note=note,
            fields=("carrier", "tracking_number", "tracking_url", "shipped_at"),
        )
        return order


def order_cancelled(*, order_id: int, actor: str, note: str = "") -> Order:
    """placed or confirmed -> cancelled. The caller (``orders.services.order_cancel``) puts
    the stock back in the same transaction, under the lock taken here."""
    with transaction.atomic():
        order = _locked(order_id)
        if not transition_allowed(from_status=order.status, to_status=OrderStatus.CANCELLED):
            raise _refusal(order, OrderStatus.CANCELLED)
        order.cancelled_at = timezone.now()
        _move(
            order, to_status=OrderStatus.CANCELLED, actor=actor, note=note, fields=("cancelled_at",)
        )
        return order


def order_status_history(*, order_id: int) -> list[OrderStatusChange]:
    """The order's status changes, oldest first."""
    return list(OrderStatusChange.objects.filter(order_id=order_id).order_by("created_at", "id"))
