"""Sending an order's email (any kind) once, within the fleet's SES send rate.

The Celery task (``notifications.tasks``) calls ``email_send`` with the email's id; the
exceptions tell it what to do with the message: ``EmailFailed`` back to SQS (its retries and
DLQ), ``EmailThrottled`` back in a few seconds, ``EmailMissing`` delete it.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass

from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from notifications import rendering, send_rate, ses
from notifications.models import (
    SENT_STATUSES,
    EmailEvent,
    EmailEventKind,
    EmailKind,
    EmailStatus,
    OrderEmail,
    SesMessage,
    SuppressedAddress,
)
from notifications.selectors import email_for_order
from notifications.services import email_event_record
from orders import actions as order_actions
from orders.models import OrderStatus
from shop.observability.logging import context_bind
from shop.observability.metrics import CONFIRMATION_ATTEMPTS_THROTTLED, SES_THROTTLING_ANSWERS

logger = logging.getLogger(__name__)


class EmailMissing(Exception):
    """No such email record (or order): nothing will ever make it send."""


class EmailFailed(Exception):
    """This attempt failed and was recorded; the message must go back to SQS."""


class EmailThrottled(Exception):
    """No SES send slot came before the attempt's time limit (more sends waiting than the
    fleet's send rate can take in that time). Recorded as ``throttled``, not a failure; the
    message should come back in ``retry_in`` seconds."""

    def __init__(self, message: str, *, retry_in: int) -> None:
        super().__init__(message)
        self.retry_in = retry_in


# The names of the first version (the confirmation was the only email), for callers and
# tests that still say them.
ConfirmationMissing, ConfirmationFailed, ConfirmationThrottled = (
    EmailMissing,
    EmailFailed,
    EmailThrottled,
)


@dataclass(frozen=True)
class SendOutcome:
    notification: OrderEmail
    #: "sent"; "skipped" when an earlier delivery of the message already sent it (or the
    #: email was suppressed before); "suppressed" when the address is on the suppression list.
    outcome: str
    #: SES's message id of this send ("sent" only).
    ses_message_id: str = ""


#: SES Throttling answers one attempt takes before it gives up and comes back later (with a
#: rate set above the account's real one, each slot would otherwise be another refused call).
MAX_THROTTLING_ANSWERS = 10


def send_rate_describe() -> tuple[int, str]:
    """(log level, sentence): how this process's sends are paced, for the worker's start."""
    rate = (
        f"{settings.SES_MAX_SEND_RATE:g}/s (SES_MAX_SEND_RATE)"
        if settings.SES_MAX_SEND_RATE
        else "the account's MaxSendRate (SES GetSendQuota, asked by each process)"
    )
    level, text = send_rate.describe(rate=rate)
    return level, f"{text}; an attempt waits up to {send_wait_budget():g} s for its slot"


def send_wait_budget() -> float:
    """Seconds an attempt may wait for its send slot: the soft time limit less the time kept
    for the send itself (SES's read timeout and a 2 s connect), and at least half the limit
    (10 s with the defaults: 20 - 12 is 8, half of 20 is 10). With prefetch 1 each worker
    process holds one message, so a burst waits for its slots instead of being throttled as
    long as processes <= rate x this budget (docs/celery-sqs.md)."""
    limit = settings.CELERY_TASK_SOFT_TIME_LIMIT
    return max(limit - (settings.SES_READ_TIMEOUT + 2), limit / 2)


def confirmation_send(
    *, order_id: int, attempt: int | None = None, started_at: float | None = None
) -> SendOutcome:
    """``email_send`` for the order's confirmation email (the task's first arguments)."""
    email = email_for_order(order_id=order_id)
    if email is None:
        raise EmailMissing(f"no confirmation email for order {order_id}")
    return email_send(email_id=email.pk, attempt=attempt, started_at=started_at)


def email_send(
    *, email_id: int, attempt: int | None = None, started_at: float | None = None
) -> SendOutcome:
    """Send one email of an order (any kind) once, within the fleet's SES send rate.

    First the attempt takes its slot of the fleet's send schedule (``notifications.send_rate``
    at ``ses.max_send_rate()``), waiting for it up to ``send_wait_budget()`` after
    ``started_at`` (``time.monotonic()`` when the task began; default now). SES's
    ``Throttling`` answer (it did not take the email) is retried after the next slot, within
    the same budget (``MAX_THROTTLING_ANSWERS`` at most). When no slot comes in time, the
    attempt is recorded as ``throttled`` (not a failure) and ``EmailThrottled`` says
    when to come back.

    Then the record is locked for the whole send (``_send``), so two deliveries of the same
    message (SQS is at-least-once) cannot both send: the second waits, then finds it ``sent``
    and skips. Any failure is recorded (status ``failed``, attempts, last error) and re-raised
    as ``EmailFailed`` so that the message returns to SQS. An address on the
    suppression list (an earlier bounce or complaint) is not sent to: the record says
    ``suppressed``. ``attempt`` is SQS's receive count of this delivery, kept in the history.

    The slot is taken before the record's transaction, in autocommit: the schedule's row is
    locked for one statement, never while SES answers.
    """
    started_at = time.monotonic() if started_at is None else started_at
    deadline = started_at + send_wait_budget()
    rate = ses.max_send_rate()
    ses.mail_backend_open()  # a process's first send: the client is built before its slot
    throttling_answers = 0
    while True:
        slot = send_rate.slot_take(rate=rate, deadline=deadline)
        if not slot.taken or throttling_answers >= MAX_THROTTLING_ANSWERS:
            raise _throttled(
                email_id=email_id,
                attempt=attempt,
                next_slot_in=slot.wait,
                could_wait=max(deadline - time.monotonic(), 0.0),
                rate=rate,
                throttling_answers=throttling_answers,
            )
        try:
            return _send(email_id=email_id, attempt=attempt, throttling_answers=throttling_answers)
        except ses.SendThrottled as exc:
            throttling_answers += 1
            SES_THROTTLING_ANSWERS.inc()
            logger.info(
                "email=%s attempt=%s SES answered %s: sending again at the next slot",
                email_id,
                attempt or "?",
                exc,
            )


def _throttled(
    *,
    email_id: int,
    attempt: int | None,
    next_slot_in: float,
    could_wait: float,
    rate: float,
    throttling_answers: int,
) -> EmailThrottled:
    """Record a throttled attempt; the exception that returns its message in a few seconds:
    about when the sends queued ahead of it fit in an attempt's wait."""
    retry_in = min(60, max(1, math.ceil(next_slot_in - could_wait)))
    detail = (
        f"no SES send slot within the attempt's time limit (next free slot in "
        f"{next_slot_in:.1f} s at {rate:g} sends/s for the fleet"
        + (f"; SES answered Throttling {throttling_answers} time(s)" if throttling_answers else "")
        + f"): back on the queue in {retry_in} s"
    )
    email_event_record(
        email_id=email_id, kind=EmailEventKind.THROTTLED, detail=detail, attempt=attempt
    )
    CONFIRMATION_ATTEMPTS_THROTTLED.inc()
    return EmailThrottled(detail, retry_in=retry_in)


def _send(*, email_id: int, attempt: int | None, throttling_answers: int) -> SendOutcome:
    """One send of ``email_send``, with the record locked; ``ses.SendThrottled``
    passes through (nothing was written: the transaction rolls back)."""
    try:
        with transaction.atomic():
            notification = (
                OrderEmail.objects.select_for_update(of=("self",))
                .select_related("order")
                .get(pk=email_id)
            )
            context_bind(order_id=notification.order_id)  # this task's lines name the order
            if notification.status in SENT_STATUSES | {EmailStatus.SUPPRESSED}:
                return SendOutcome(notification, "skipped")
            recipient = notification.order.customer_email
            suppression = SuppressedAddress.objects.filter(email=recipient.lower()).first()
            # A confirmation still unsent when staff cancelled the order (its address was
            # refused, say) would tell the customer the opposite of the cancellation email.
            moot = (
                notification.kind == EmailKind.CONFIRMATION
                and notification.order.status == OrderStatus.CANCELLED
            )
            if suppression is not None or moot:
                notification.status = EmailStatus.SUPPRESSED
                notification.last_error = (
                    "not sent: the order was cancelled before its confirmation went out"
                    if moot
                    else f"address suppressed after a {suppression.reason}"
                )
                notification.save()
                EmailEvent.objects.create(
                    notification=notification,
                    kind=EmailEventKind.SUPPRESSED,
                    attempt=attempt,
                    detail=notification.last_error,
                )
                return SendOutcome(notification, "suppressed")
            email = rendering.email_render(kind=notification.kind, order=notification.order)
            message_id = ses.email_send(
                to=recipient,
                subject=email.subject,
                html=email.html,
                text=email.text,
            )
            notification.status = EmailStatus.SENT
            notification.attempts += 1
            notification.sent_at = timezone.now()
            notification.last_error = ""
            notification.save()
            if message_id:  # every send's id is kept: a resend adds one (SES events match any)
                SesMessage.objects.create(
                    message_id=message_id, email=notification, sent_at=notification.sent_at
                )
            EmailEvent.objects.create(
                notification=notification,
                kind=EmailEventKind.SENT,
                attempt=attempt,
                detail=f"SES message id {message_id}"
                + (
                    f" (after {throttling_answers} Throttling answer(s) from SES)"
                    if throttling_answers
                    else ""
                ),
            )
            if notification.kind == EmailKind.CONFIRMATION:
                # The order moves on with its email, through the orders app's own entry
                # point (placed -> confirmed, recorded; an order past placed is left alone).
                order_actions.order_confirmed(
                    order_id=notification.order_id, actor=order_actions.WORKER
                )
            return SendOutcome(notification, "sent", message_id)
    except OrderEmail.DoesNotExist:
        raise EmailMissing(f"no email record {email_id}") from None
    except ses.SendThrottled:
        raise
    except Exception as exc:
        reason = _reason(exc)
        with transaction.atomic():
            updated = (
                OrderEmail.objects.filter(pk=email_id)
                .exclude(status__in=SENT_STATUSES)
                .update(
                    status=EmailStatus.FAILED,
                    attempts=F("attempts") + 1,
                    last_error=reason[:2000],
                    updated_at=timezone.now(),
                )
            )
            if updated:
                email_event_record(
                    email_id=email_id, kind=EmailEventKind.FAILED, detail=reason, attempt=attempt
                )
        raise EmailFailed(reason) from exc


def _reason(exc: Exception) -> str:
    if isinstance(exc, ses.SendRefused | ses.SesUnavailable):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"
