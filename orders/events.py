"""Order events for other services: ``OrderPlaced``, ``OrderShipped`` and ``OrderCancelled``
on an SNS topic (fan-out).

Off unless ``ORDER_EVENTS_TOPIC_ARN`` is set. ``order_place`` writes the event to the outbox
(``shop.outbox``) in the order's transaction, so a rolled-back order announces nothing, a
committed one always does, and an idempotent replay (which places nothing) writes nothing.
The relay (``manage.py outbox_relay``) publishes it with ``PublishBatch``. Subscribers (SQS
queues, Lambdas...) pick events by the ``event_type`` message attribute in a filter policy.

The event says what another service needs to react to a sale: ids, lines, money, time.
Never the shipping address or the customer's email: a subscriber that needs them asks the
shop. It is built from the objects ``order_place`` already holds, without a query.

Delivery is at least once: SNS unreachable when the order is placed changes nothing for the
request (no SNS call is made there); the relay publishes the event when SNS is back. A relay
that died between SNS's answer and deleting the row publishes the event again, with the
same ``event_id``: consumers deduplicate on it (on a FIFO topic SNS does, for 5 minutes).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from orders.models import Order, OrderLine
from shop import outbox
from shop.models import OutboxMessage

ORDER_PLACED = "OrderPlaced"
ORDER_SHIPPED = "OrderShipped"
ORDER_CANCELLED = "OrderCancelled"
#: Bumped only for changes a consumer could trip on (a field removed or its meaning changed).
EVENT_VERSION = 1
_CENT = Decimal("0.01")


def order_placed_event(
    *, order: Order, lines: Sequence[OrderLine], event_id: str
) -> dict[str, Any]:
    """The ``OrderPlaced`` message for a saved order and its lines (pure: no query, no I/O).

    Money is a decimal string with two places, as in the API; ``placed_at`` is ISO 8601 UTC.
    """
    return {
        "event_type": ORDER_PLACED,
        "event_version": EVENT_VERSION,
        "event_id": event_id,
        "order_id": order.pk,
        "customer_id": order.customer_id,
        "lines": [
            {
                "sku": line.sku,
                "name": line.name,
                "quantity": line.quantity,
                "unit_price": _money(line.unit_price),
                "line_total": _money(line.line_total),
            }
            for line in lines
        ],
        "total": _money(order.total),
        "currency": order.currency,
        "placed_at": _utc_iso(order.created_at),
    }


def order_placed_record(
    *, topic_arn: str, order: Order, lines: Sequence[OrderLine]
) -> OutboxMessage:
    """Write the ``OrderPlaced`` event of a saved order to the outbox, in the order's
    transaction: the relay publishes it to the topic once the order has committed, at least
    once (a relay that died after SNS took it publishes it again, same ``event_id``)."""
    event = order_placed_event(order=order, lines=lines, event_id=str(uuid.uuid4()))
    return outbox.outbox_event_add(
        topic_arn=topic_arn,
        message=event,
        attributes={"event_type": event["event_type"]},
        # FIFO topics: one group per order, and SNS drops a re-publish of the same event.
        group_id=f"order-{order.pk}",
        deduplication_id=event["event_id"],
    )


def _money(value: Decimal) -> str:
    return str(Decimal(value).quantize(_CENT))


def _utc_iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def order_shipped_event(*, order: Order, event_id: str) -> dict[str, Any]:
    """The ``OrderShipped`` message (pure): the order, who it is for, the tracking details
    staff gave (each may be empty), when. Same conventions as ``OrderPlaced``."""
    return {
        "event_type": ORDER_SHIPPED,
        "event_version": EVENT_VERSION,
        "event_id": event_id,
        "order_id": order.pk,
        "customer_id": order.customer_id,
        "carrier": order.carrier,
        "tracking_number": order.tracking_number,
        "tracking_url": order.tracking_url,
        "shipped_at": _utc_iso(order.shipped_at),
    }


def order_cancelled_event(
    *, order: Order, lines: Sequence[OrderLine], event_id: str
) -> dict[str, Any]:
    """The ``OrderCancelled`` message (pure): the order and the units that went back into
    stock (per SKU), when. Same conventions as ``OrderPlaced``."""
    return {
        "event_type": ORDER_CANCELLED,
        "event_version": EVENT_VERSION,
        "event_id": event_id,
        "order_id": order.pk,
        "customer_id": order.customer_id,
        "lines": [{"sku": line.sku, "quantity": line.quantity} for line in lines],
        "total": _money(order.total),
        "currency": order.currency,
        "cancelled_at": _utc_iso(order.cancelled_at),
    }


def _record(*, topic_arn: str, order: Order, event: dict[str, Any]) -> OutboxMessage:
    return outbox.outbox_event_add(
        topic_arn=topic_arn,
        message=event,
        attributes={"event_type": event["event_type"]},
        # FIFO topics: one group per order (its events stay in order), and SNS drops a
        # re-publish of the same event.
        group_id=f"order-{order.pk}",
        deduplication_id=event["event_id"],
    )


def order_shipped_record(*, topic_arn: str, order: Order) -> OutboxMessage:
    """Write ``OrderShipped`` to the outbox, in the transaction that ships the order."""
    event = order_shipped_event(order=order, event_id=str(uuid.uuid4()))
    return _record(topic_arn=topic_arn, order=order, event=event)


def order_cancelled_record(
    *, topic_arn: str, order: Order, lines: Sequence[OrderLine]
) -> OutboxMessage:
    """Write ``OrderCancelled`` to the outbox, in the transaction that cancels the order."""
    event = order_cancelled_event(order=order, lines=lines, event_id=str(uuid.uuid4()))
    return _record(topic_arn=topic_arn, order=order, event=event)
