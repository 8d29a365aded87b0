"""The email task: an interface like a view. It takes an id and calls a service.

Retries are SQS's, not Celery's: a failed task is rejected without requeue, the message stays
in the queue (acks_late, acks on failure off), kombu's backoff policy lengthens its
visibility timeout, SQS redelivers it, and after the queue's maxReceiveCount SQS moves it to
the dead-letter queue. ``self.retry()`` would publish a new message and the DLQ would never
be reached.
"""

from __future__ import annotations

import logging
import time

from celery import shared_task
from celery.signals import task_postrun, task_prerun, task_received, worker_init
from django.conf import settings
from django.db import close_old_connections

from notifications import selectors, sending
from shop.aws.sqs.transport import ReturnLater, SqsRequest
from shop.observability.logging import context_bind

logger = logging.getLogger(__name__)

RECEIVE_COUNT_HEADER = "sqs_receive_count"


@task_received.connect
def _pass_receive_count(sender=None, request=None, **kwargs) -> None:
    """Hand SQS's ApproximateReceiveCount (seen only in the worker's main process) to the task."""
    if request is None:
        return
    delivery_info = getattr(request.message, "delivery_info", {}) or {}
    attributes = (delivery_info.get("sqs_message") or {}).get("Attributes", {})
    count = attributes.get("ApproximateReceiveCount")
    if count is not None:
        request.request_dict[RECEIVE_COUNT_HEADER] = int(count)


@task_prerun.connect
@task_postrun.connect
def _database_connections_tidy(sender=None, **kwargs) -> None:
    """Django's per-request rule around each task: keep the database connection for
    ``CONN_MAX_AGE``, replace a broken one (health-checked before reuse).

    Celery's Django fixup would close it after every task instead (a new PostgreSQL connection
    per email) unless ``CELERY_DB_REUSE_MAX`` is set, as settings do. Eager calls run inside
    the caller's transaction (tests): left alone, as Celery's fixup leaves them.
    """
    if getattr(getattr(sender, "request", None), "is_eager", False):
        return
    close_old_connections()


@task_prerun.connect
def _order_bind(sender=None, kwargs=None, **_) -> None:
    """An email task's message names the email only: every line of the task (Celery's own
    "succeeded" / "raised" line included) names the order too, read here once. Runs after
    ``shop.observability.logging``'s own prerun handler, which clears and binds the task's ids."""
    email_id = (kwargs or {}).get("email_id")
    if getattr(sender, "name", None) == settings.EMAIL_TASK_NAME and type(email_id) is int:
        order_id = selectors.email_order_id(email_id=email_id)
        if order_id is not None:
            context_bind(order_id=order_id)


@worker_init.connect
def _send_rate_describe(**kwargs) -> None:
    """One line at worker start saying how sends are paced (a WARNING when per process)."""
    level, text = sending.send_rate_describe()
    logger.log(level, text)


def _run(request, *, what: str, send) -> str:
    """One delivery of an email task: call the send, log one line, map the outcome to what
    the message becomes (deleted, returned shortly, or left to SQS's redelivery)."""
    started_at = time.monotonic()
    receive_count = getattr(request, RECEIVE_COUNT_HEADER, None)
    attempt = receive_count or "?"
    try:
        result = send(attempt=receive_count, started_at=started_at)
    except sending.EmailThrottled as exc:
        logger.warning("%s attempt=%s outcome=throttled reason=%s", what, attempt, exc)
        raise ReturnLater(str(exc), delay=exc.retry_in) from exc
    except sending.EmailMissing as exc:
        # Retrying cannot make a missing order appear: the message is deleted, loudly.
        logger.error("%s attempt=%s outcome=dropped reason=no such order (%s)", what, attempt, exc)
        return "dropped"
    except sending.EmailFailed as exc:
        logger.warning("%s attempt=%s outcome=failed reason=%s", what, attempt, exc)
        raise
    email = result.notification
    logger.info(
        "%s attempt=%s outcome=%s email=%s ses_message_id=%s",
        f"{email.kind} order={email.order_id}",
        attempt,
        result.outcome,
        email.pk,
        result.ses_message_id or "-",
    )
    return result.outcome


# SqsRequest: a ReturnLater from the task returns its message after its own short delay.
@shared_task(name=settings.EMAIL_TASK_NAME, bind=True, Request=SqsRequest)
def send_email(self, email_id: int) -> str:
    """Send one email of an order (any kind): the message carries the record's id only."""
    return _run(
        self.request,
        what=selectors.email_label(email_id=email_id),
        send=lambda **kw: sending.email_send(email_id=email_id, **kw),
    )


@shared_task(name=settings.CONFIRMATION_TASK_NAME, bind=True, Request=SqsRequest)
def send_order_confirmation(self, order_id: int) -> str:
    """The first version's task, kept registered: messages already on the queue (or in the
    DLQ, or in the outbox) when the shop was upgraded carry an order id. It sends that
    order's confirmation email through the same pipeline."""
    return _run(
        self.request,
        what=f"confirmation order={order_id}",
        send=lambda **kw: sending.confirmation_send(order_id=order_id, **kw),
    )
