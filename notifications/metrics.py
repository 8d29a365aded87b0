"""Prometheus for confirmations: sends counted from Celery's task signals, the queue gauges.

An interface, like ``tasks``: it listens to the confirmation task from outside (``task_success``
with the result ``"sent"``, ``task_failure``), in the process that ran it (a pool child; see
``shop.observability.metrics`` for the multiprocess mode), and registers the live queue-depth
collector for ``/metrics`` (``METRICS_QUEUE_DEPTH``: not in the public API service) and the outbox's
gauges (every web service: a database read). Imported by
``NotificationsConfig.ready``.
"""

from __future__ import annotations

from typing import Any

from celery.exceptions import Reject, SoftTimeLimitExceeded, TimeLimitExceeded
from celery.signals import task_failure, task_success
from django.conf import settings
from django.db import DatabaseError

from notifications import ses
from shop import outbox
from shop.aws import sqs
from shop.observability import metrics

# Every web service: the outbox is in the database, no AWS call.
metrics.live_collector_register(
    metrics.OutboxCollector(stats=outbox.outbox_stats, unavailable=(DatabaseError,))
)
if settings.METRICS_QUEUE_DEPTH:  # not in the public API service (no queue reads there)
    metrics.live_collector_register(
        metrics.QueueDepthCollector(stats=sqs.queue_stats, unavailable=(sqs.QueueUnavailable,))
    )


def _is_confirmation(sender: Any) -> bool:
    # Every email task (the counters kept their first names: dashboards use them).
    return getattr(sender, "name", None) in (
        settings.EMAIL_TASK_NAME,
        settings.CONFIRMATION_TASK_NAME,
    )


def failure_reason(exception: BaseException | None) -> str:
    """One of ``shop.observability.metrics.FAILURE_REASONS`` for a failed attempt (kept
    low-cardinality)."""
    seen = exception
    for _ in range(5):  # the service wraps the cause in ConfirmationFailed
        if seen is None:
            break
        if isinstance(seen, ses.SendRefused):
            return "refused"
        if isinstance(seen, ses.SesUnavailable):
            return "ses_error"
        if isinstance(seen, SoftTimeLimitExceeded | TimeLimitExceeded):
            return "time_limit"
        seen = seen.__cause__
    return "other"


@task_success.connect
def _count_sent(sender: Any = None, result: Any = None, **_: Any) -> None:
    if _is_confirmation(sender) and result == "sent":
        metrics.CONFIRMATION_EMAILS_SENT.inc()


@task_failure.connect
def _count_failed(sender: Any = None, exception: BaseException | None = None, **_: Any) -> None:
    # A Reject (``ReturnLater``: no send slot in time) is not a failed attempt; it is counted
    # as throttled where it happens (notifications.services).
    if _is_confirmation(sender) and not isinstance(exception, Reject):
        metrics.CONFIRMATION_ATTEMPTS_FAILED.labels(reason=failure_reason(exception)).inc()
