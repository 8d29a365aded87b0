"""Order events for other services: ``OrderPlaced`` on an SNS topic (fan-out).

Off unless ``ORDER_EVENTS_TOPIC_ARN`` is set. ``order_place`` registers the publish to run
once the order's transaction has committed, so a rolled-back order announces nothing, and
an idempotent replay (which places nothing) publishes nothing. Subscribers (SQS queues,
Lambdas...) pick events by the ``event_type`` message attribute in a filter policy.

The event says what another service needs to react to a sale: ids, lines, money, time.
Never the shipping address or the customer's email: a subscriber that needs them asks the
shop. It is built from the objects ``order_place`` already holds, without a query.

Delivery is at most once. The publish never raises into the request: if SNS cannot be
reached, or refuses, the error is logged (``order event lost``) and the event is NOT
retried; the order itself is unaffected. Recovering lost events would need an outbox row
written in the order's transaction and a sweep to publish it.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from orders.models import Order, OrderLine
from shop import aws

logger = logging.getLogger(__name__)

ORDER_PLACED = "OrderPlaced"
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


def event_publish(*, topic_arn: str, event: dict[str, Any]) -> str:
    """Publish one event to the topic; returns SNS's MessageId. Raises on any failure."""
    params: dict[str, Any] = {
        "TopicArn": topic_arn,
        "Message": json.dumps(event, separators=(",", ":")),
        "MessageAttributes": {
            "event_type": {"DataType": "String", "StringValue": event["event_type"]}
        },
    }
    if topic_arn.endswith(".fifo"):
        # FIFO topics: one group per order, and SNS drops a re-publish of the same event.
        params["MessageGroupId"] = f"order-{event['order_id']}"
        params["MessageDeduplicationId"] = event["event_id"]
    return aws.client("sns", bounded=True).publish(**params)["MessageId"]


def order_placed_publish(*, topic_arn: str, order: Order, lines: Sequence[OrderLine]) -> str | None:
    """Announce a committed order; returns the SNS MessageId, or None if it was lost.

    Never raises: it runs after the order committed, inside the request that placed it.
    """
    event_id = str(uuid.uuid4())
    try:
        event = order_placed_event(order=order, lines=lines, event_id=event_id)
        message_id = event_publish(topic_arn=topic_arn, event=event)
    except Exception:
        logger.exception(
            "order event lost: could not publish %s event=%s order=%s to %s (not retried)",
            ORDER_PLACED,
            event_id,
            order.pk,
            topic_arn,
        )
        return None
    logger.info(
        "published %s event=%s order=%s message=%s", ORDER_PLACED, event_id, order.pk, message_id
    )
    return message_id


def _money(value: Decimal) -> str:
    return str(Decimal(value).quantize(_CENT))


def _utc_iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
