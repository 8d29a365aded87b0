"""The transactional outbox: what the shop tells SQS and SNS, written with the change itself.

A service that changes something the outside world must hear about writes an
``OutboxMessage`` row in the same transaction (``outbox_task_add``, ``outbox_event_add``):
a rolled-back change leaves no row, a committed one always has its rows, and the request
makes no AWS call. The relay (``shop.outbox.relay``, ``manage.py outbox_relay``) publishes
committed rows and deletes them. Delivery is therefore at least once: a relay that dies
after SQS or SNS took a batch and before it deleted the rows publishes them again (the
worker's send is idempotent; event consumers deduplicate on ``event_id``).

Knows no app: rows carry a task name and ids, or an event as JSON.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.db.models import Max, Min
from django.utils import timezone

from shop.models import OutboxKind, OutboxMessage


def outbox_task_add(
    *,
    queue_url: str,
    task_name: str,
    kwargs: dict[str, Any],
    group_id: str = "",
) -> OutboxMessage:
    """Record a Celery task for the queue, to be published once the caller's transaction
    commits. Its task id is fixed here, so a second publish of the row is the same task."""
    return OutboxMessage.objects.create(
        kind=OutboxKind.SQS_TASK,
        destination=queue_url,
        payload={"task": task_name, "args": [], "kwargs": kwargs, "task_id": str(uuid.uuid4())},
        group_id=group_id,
    )


def outbox_event_add(
    *,
    topic_arn: str,
    message: dict[str, Any],
    attributes: dict[str, str],
    deduplication_id: str,
    group_id: str = "",
) -> OutboxMessage:
    """Record an event for the SNS topic; ``attributes`` become String message attributes
    (for subscription filter policies). On a FIFO topic ``group_id`` and
    ``deduplication_id`` are SNS's MessageGroupId and MessageDeduplicationId."""
    return OutboxMessage.objects.create(
        kind=OutboxKind.SNS_EVENT,
        destination=topic_arn,
        payload={
            "message": message,
            "attributes": attributes,
            "deduplication_id": deduplication_id,
        },
        group_id=group_id,
    )


@dataclass(frozen=True)
class FailingRow:
    id: int
    kind: str
    destination: str
    attempts: int
    last_error: str
    available_at: datetime


@dataclass(frozen=True)
class OutboxStats:
    #: Rows not yet published (due or backing off).
    pending: int
    #: Age of the oldest one, seconds (0 when none).
    oldest_age_seconds: float
    #: Rows whose last publish failed (attempts > 0).
    failing: int
    #: The most-tried failing rows, worst first (at most ``failing_limit``).
    failing_rows: list[FailingRow]


def outbox_stats(*, failing_limit: int = 10, now: datetime | None = None) -> OutboxStats:
    """What the outbox holds: for the admin's Operations box and ``/metrics``."""
    now = now or timezone.now()
    totals = OutboxMessage.objects.aggregate(oldest=Min("created_at"), last=Max("id"))
    oldest = totals["oldest"]
    pending = OutboxMessage.objects.count() if totals["last"] is not None else 0
    failing = OutboxMessage.objects.filter(attempts__gt=0)
    rows = [
        FailingRow(
            id=row.pk,
            kind=row.kind,
            destination=row.destination,
            attempts=row.attempts,
            last_error=row.last_error,
            available_at=row.available_at,
        )
        for row in failing.order_by("-attempts", "id")[:failing_limit]
    ]
    return OutboxStats(
        pending=pending,
        oldest_age_seconds=max((now - oldest).total_seconds(), 0.0) if oldest else 0.0,
        failing=failing.count() if rows else 0,
        failing_rows=rows,
    )


def retry_delay(*, attempts: int, base: float, maximum: float) -> timedelta:
    """Exponential back-off after the ``attempts``-th failure: base, 2 x base, ... maximum."""
    return timedelta(seconds=min(maximum, base * 2 ** max(attempts - 1, 0)))
