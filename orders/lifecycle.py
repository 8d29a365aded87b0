"""After an order is placed: staff ship it or cancel it (services, for the admin and scripts).

The status moves themselves are ``orders.actions``'; this module adds what goes with them,
in the same transaction: a cancelled order's stock goes back on the shelf through recorded
stock adjustments (``product_stock_adjust``: who, why, the stock it left), under the row
locks orders take; the customer's email (shipped, cancelled) is recorded with its task in
the outbox (``notifications.services.email_request``), and so is the ``OrderShipped`` /
``OrderCancelled`` event when ``ORDER_EVENTS_TOPIC_ARN`` is set. A move that is refused
writes none of them; one that commits has all of them, published by the relay.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from django.conf import settings
from django.db import transaction

from notifications.services import EMAIL_CANCELLED, EMAIL_SHIPPED, email_request
from orders import actions, events
from orders.models import Order, StockReason
from orders.services import product_stock_adjust
from shop.exceptions import ApplicationError


@dataclass(frozen=True)
class Tracking:
    carrier: str = ""
    number: str = ""
    url: str = ""


def order_ship(*, order_id: int, actor: str, tracking: Tracking | None = None) -> Order:
    """Mark a confirmed order shipped, with its tracking details (each optional; the URL
    must be http or https). ``actions.TransitionRefused`` for any other status."""
    tracking = tracking or Tracking()
    with transaction.atomic():
        order = actions.order_shipped(
            order_id=order_id,
            actor=actor,
            carrier=tracking.carrier,
            tracking_number=tracking.number,
            tracking_url=tracking.url,
        )
        email_request(order=order, kind=EMAIL_SHIPPED)
        if settings.ORDER_EVENTS_TOPIC_ARN:
            events.order_shipped_record(topic_arn=settings.ORDER_EVENTS_TOPIC_ARN, order=order)
        return order


def order_cancel(*, order_id: int, actor: str, note: str = "") -> Order:
    """Cancel an order that has not shipped and put its stock back.

    The order's row is locked first (``actions.order_cancelled`` refuses a shipped or
    cancelled order, so two cancels cannot both return the stock), then each line's product
    in primary-key order, as ``order_place`` locks them, so a cancel and new orders for the
    same products queue up instead of deadlocking; each line's units are one recorded
    ``returned`` adjustment.
    """
    with transaction.atomic():
        order = actions.order_cancelled(order_id=order_id, actor=actor, note=note)
        reason = f"order #{order.pk} cancelled" + (f": {note}" if note else "")
        lines = list(order.lines.order_by("product_id"))
        for line in lines:
            product_stock_adjust(
                product_id=line.product_id,
                reason=StockReason.RETURNED,
                actor=actor,
                delta=line.quantity,
                note=reason,
            )
        email_request(order=order, kind=EMAIL_CANCELLED)
        if settings.ORDER_EVENTS_TOPIC_ARN:
            events.order_cancelled_record(
                topic_arn=settings.ORDER_EVENTS_TOPIC_ARN, order=order, lines=lines
            )
        return order


@dataclass
class BatchResult:
    done: list[int] = field(default_factory=list)
    #: order id -> why it was refused (a sentence staff can read).
    refused: dict[int, str] = field(default_factory=dict)


def orders_apply(*, order_ids: Iterable[int], apply: Callable[[int], Order]) -> BatchResult:
    """Run one of the services above for each order, each in its own transaction: a refused
    order (already shipped, say) does not stop the others."""
    result = BatchResult()
    for order_id in dict.fromkeys(order_ids):
        try:
            apply(order_id)
        except ApplicationError as exc:
            result.refused[order_id] = exc.message
        else:
            result.done.append(order_id)
    return result
