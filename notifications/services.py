"""The order-confirmation email: recording it, queueing it, sending it."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from django.conf import settings
from django.contrib.admin.models import LogEntry
from django.contrib.contenttypes.models import ContentType
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from notifications import rendering, send_rate, ses
from notifications.models import (
    SENT_STATUSES,
    ConfirmationEmail,
    EmailEvent,
    EmailEventKind,
    EmailStatus,
    SesMessage,
    SuppressedAddress,
)
from orders import actions as order_actions
from orders.models import Order
from shop import outbox
from shop.logging import EMAIL_ADDRESS
from shop.metrics import CONFIRMATION_ATTEMPTS_THROTTLED, SES_THROTTLING_ANSWERS
from shop.models import OutboxKind, OutboxMessage

logger = logging.getLogger(__name__)


class ConfirmationMissing(Exception):
    """No order (or no confirmation record) with this id: nothing will ever make it send."""


class ConfirmationFailed(Exception):
    """This attempt failed and was recorded; the message must go back to SQS."""


class ConfirmationThrottled(Exception):
    """No SES send slot came before the attempt's time limit (more sends waiting than the
    fleet's send rate can take in that time). Recorded as ``throttled``, not a failure; the
    message should come back in ``retry_in`` seconds."""

    def __init__(self, message: str, *, retry_in: int) -> None:
        super().__init__(message)
        self.retry_in = retry_in


@dataclass(frozen=True)
class SendOutcome:
    notification: ConfirmationEmail
    #: "sent"; "skipped" when an earlier delivery of the message already sent it (or the
    #: email was suppressed before); "suppressed" when the address is on the suppression list.
    outcome: str
    #: SES's message id of this send ("sent" only).
    ses_message_id: str = ""


def confirmation_request(*, order: Order) -> ConfirmationEmail:
    """Record the order's confirmation email and its task in the outbox.

    Called inside the order's transaction: if it rolls back, neither the record nor the
    outbox row exists; if it commits, both do, and the relay (``manage.py outbox_relay``)
    publishes the task. No SQS call here: the record stays ``pending`` and gets its
    ``queued`` entry (and ``queued_at``) when the relay has published it
    (``confirmation_queued_record``).
    """
    notification = ConfirmationEmail.objects.create(order=order, status=EmailStatus.PENDING)
    _task_add(order_id=order.pk)
    return notification


def _task_add(*, order_id: int) -> None:
    outbox.outbox_task_add(
        queue_url=settings.ORDER_QUEUE_URL,
        task_name=settings.CONFIRMATION_TASK_NAME,
        kwargs={"order_id": order_id},
        group_id=str(order_id),
    )


def confirmation_queued_record(rows: Sequence[OutboxMessage], queued_at: datetime) -> None:
    """The relay published these outbox rows: each confirmation task among them marks its
    email ``queued`` (``queued_at`` and an entry in its history). Runs in the relay's
    transaction that deletes the rows."""
    order_ids = sorted(
        {
            row.payload["kwargs"]["order_id"]
            for row in rows
            if row.kind == OutboxKind.SQS_TASK
            and row.payload.get("task") == settings.CONFIRMATION_TASK_NAME
            and isinstance((row.payload.get("kwargs") or {}).get("order_id"), int)
        }
    )
    if not order_ids:
        return
    records = ConfirmationEmail.objects.filter(order_id__in=order_ids)
    ids = list(records.values_list("pk", flat=True))
    records.update(queued_at=queued_at)
    EmailEvent.objects.bulk_create(
        EmailEvent(notification_id=pk, kind=EmailEventKind.QUEUED, created_at=queued_at)
        for pk in ids
    )
    for order_id in order_ids:
        logger.info(
            "queued confirmation email for order %s", order_id, extra={"order_id": order_id}
        )


def confirmation_event_record(
    *,
    order_id: int,
    kind: str,
    detail: str = "",
    actor: str = "",
    attempt: int | None = None,
    at: datetime | None = None,
) -> EmailEvent | None:
    """Add an entry to the email's history; ``None`` when the order has no email record."""
    notification_id = (
        ConfirmationEmail.objects.filter(order_id=order_id).values_list("pk", flat=True).first()
    )
    if notification_id is None:
        return None
    return EmailEvent.objects.create(
        notification_id=notification_id,
        kind=kind,
        detail=detail[:2000],
        actor=actor[:150],
        attempt=attempt,
        created_at=at or timezone.now(),
    )


def confirmation_ses_messages(*, order_id: int) -> list[SesMessage]:
    """Every SES message id the order's confirmation was sent with, latest first."""
    return list(SesMessage.objects.filter(email__order_id=order_id).order_by("-sent_at", "-id"))


def confirmation_history(*, order_id: int) -> list[EmailEvent]:
    """The email's history, oldest first."""
    return list(
        EmailEvent.objects.filter(notification__order_id=order_id).order_by("created_at", "id")
    )


@dataclass
class ResendResult:
    requested: int
    #: Orders without an email record (or unknown ids): nothing was queued for them.
    missing: list[int]
    #: Orders whose email went back to ``pending`` with its task in the outbox.
    queued: list[int] = field(default_factory=list)


def confirmation_resend(*, order_ids: Iterable[int], actor: str = "") -> ResendResult:
    """Queue the confirmation email of each order again, ``sent`` ones included (on purpose).

    Each record goes back to ``pending`` with a ``resend`` entry in its history and its task
    in the outbox, in its own transaction; the relay publishes it.
    """
    ids = list(dict.fromkeys(int(order_id) for order_id in order_ids))
    result = ResendResult(requested=len(ids), missing=[])
    for order_id in ids:
        with transaction.atomic():
            notification = (
                ConfirmationEmail.objects.select_for_update().filter(order_id=order_id).first()
            )
            if notification is None:
                result.missing.append(order_id)
                continue
            previous = notification.status
            notification.status = EmailStatus.PENDING
            notification.save(update_fields=["status", "updated_at"])
            EmailEvent.objects.create(
                notification=notification,
                kind=EmailEventKind.RESEND,
                detail=f"was {previous}",
                actor=actor[:150],
            )
            _task_add(order_id=order_id)
            result.queued.append(order_id)
    return result


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
    (8 s with the defaults: 20 - 12). With prefetch 1 each worker process holds one message,
    so a burst waits for its slots instead of being throttled as long as processes <= rate x
    this budget (README)."""
    limit = settings.CELERY_TASK_SOFT_TIME_LIMIT
    return max(limit - (settings.SES_READ_TIMEOUT + 2), limit / 2)


def confirmation_send(
    *, order_id: int, attempt: int | None = None, started_at: float | None = None
) -> SendOutcome:
    """Send the order's confirmation email once, within the fleet's SES send rate.

    First the attempt takes its slot of the fleet's send schedule (``notifications.send_rate``
    at ``ses.max_send_rate()``), waiting for it up to ``send_wait_budget()`` after
    ``started_at`` (``time.monotonic()`` when the task began; default now). SES's
    ``Throttling`` answer (it did not take the email) is retried after the next slot, within
    the same budget (``MAX_THROTTLING_ANSWERS`` at most). When no slot comes in time, the
    attempt is recorded as ``throttled`` (not a failure) and ``ConfirmationThrottled`` says
    when to come back.

    Then the record is locked for the whole send (``_send``), so two deliveries of the same
    message (SQS is at-least-once) cannot both send: the second waits, then finds it ``sent``
    and skips. Any failure is recorded (status ``failed``, attempts, last error) and re-raised
    as ``ConfirmationFailed`` so that the message returns to SQS. An address on the
    suppression list (an earlier bounce or complaint) is not sent to: the record says
    ``suppressed``. ``attempt`` is SQS's receive count of this delivery, kept in the history.

    The slot is taken before the record's transaction, in autocommit: the schedule's row is
    locked for one statement, never while SES answers.
    """
    started_at = time.monotonic() if started_at is None else started_at
    deadline = started_at + send_wait_budget()
    rate = ses.max_send_rate()
    throttling_answers = 0
    while True:
        slot = send_rate.slot_take(rate=rate, deadline=deadline)
        if not slot.taken or throttling_answers >= MAX_THROTTLING_ANSWERS:
            raise _throttled(
                order_id=order_id,
                attempt=attempt,
                next_slot_in=slot.wait,
                could_wait=max(deadline - time.monotonic(), 0.0),
                rate=rate,
                throttling_answers=throttling_answers,
            )
        try:
            return _send(order_id=order_id, attempt=attempt, throttling_answers=throttling_answers)
        except ses.SendThrottled as exc:
            throttling_answers += 1
            SES_THROTTLING_ANSWERS.inc()
            logger.info(
                "confirmation order=%s attempt=%s SES answered %s: sending again at the next slot",
                order_id,
                attempt or "?",
                exc,
            )


def _throttled(
    *,
    order_id: int,
    attempt: int | None,
    next_slot_in: float,
    could_wait: float,
    rate: float,
    throttling_answers: int,
) -> ConfirmationThrottled:
    """Record a throttled attempt; the exception that returns its message in a few seconds:
    about when the sends queued ahead of it fit in an attempt's wait."""
    retry_in = min(60, max(1, math.ceil(next_slot_in - could_wait)))
    detail = (
        f"no SES send slot within the attempt's time limit (next free slot in "
        f"{next_slot_in:.1f} s at {rate:g} sends/s for the fleet"
        + (f"; SES answered Throttling {throttling_answers} time(s)" if throttling_answers else "")
        + f"): back on the queue in {retry_in} s"
    )
    confirmation_event_record(
        order_id=order_id, kind=EmailEventKind.THROTTLED, detail=detail, attempt=attempt
    )
    CONFIRMATION_ATTEMPTS_THROTTLED.inc()
    return ConfirmationThrottled(detail, retry_in=retry_in)


def _send(*, order_id: int, attempt: int | None, throttling_answers: int) -> SendOutcome:
    """One send of ``confirmation_send``, with the record locked; ``ses.SendThrottled``
    passes through (nothing was written: the transaction rolls back)."""
    try:
        with transaction.atomic():
            notification = (
                ConfirmationEmail.objects.select_for_update(of=("self",))
                .select_related("order")
                .get(order_id=order_id)
            )
            if notification.status in SENT_STATUSES | {EmailStatus.SUPPRESSED}:
                return SendOutcome(notification, "skipped")
            recipient = notification.order.customer_email
            suppression = SuppressedAddress.objects.filter(email=recipient.lower()).first()
            if suppression is not None:
                notification.status = EmailStatus.SUPPRESSED
                notification.last_error = f"address suppressed after a {suppression.reason}"
                notification.save()
                EmailEvent.objects.create(
                    notification=notification,
                    kind=EmailEventKind.SUPPRESSED,
                    attempt=attempt,
                    detail=notification.last_error,
                )
                return SendOutcome(notification, "suppressed")
            email = rendering.confirmation_render(order=notification.order)
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
            # The order moves on with its email, through the orders app's own entry point
            # (placed -> confirmed, recorded; an order past placed is left alone).
            order_actions.order_confirmed(order_id=order_id, actor=order_actions.WORKER)
            return SendOutcome(notification, "sent", message_id)
    except ConfirmationEmail.DoesNotExist:
        raise ConfirmationMissing(f"no confirmation email for order {order_id}") from None
    except ses.SendThrottled:
        raise
    except Exception as exc:
        reason = _reason(exc)
        with transaction.atomic():
            updated = (
                ConfirmationEmail.objects.filter(order_id=order_id)
                .exclude(status__in=SENT_STATUSES)
                .update(
                    status=EmailStatus.FAILED,
                    attempts=F("attempts") + 1,
                    last_error=reason[:2000],
                    updated_at=timezone.now(),
                )
            )
            if updated:
                confirmation_event_record(
                    order_id=order_id, kind=EmailEventKind.FAILED, detail=reason, attempt=attempt
                )
        raise ConfirmationFailed(reason) from exc


def _reason(exc: Exception) -> str:
    if isinstance(exc, ses.SendRefused | ses.SesUnavailable):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


def recipient_verification_request(*, address: str) -> None:
    """Start SES's verification of a customer's address (needed while SES is in its sandbox)."""
    ses.identity_verify(address=address)


def confirmation_preview(*, order_id: int) -> rendering.RenderedEmail:
    """The email as it would be sent for this order, rendered without sending anything."""
    order = Order.objects.get(pk=order_id)
    return rendering.confirmation_render(order=order)


def customer_data_erase(*, order_ids: Iterable[int], emails: Iterable[str]) -> dict[str, int]:
    """Erase what notifications hold about a customer (``orders.privacy``, in its transaction):
    the orders' email records lose their last error (SES quotes the address) and every SES
    message id they were sent with (a late SES event would bring the address back into the
    history), every address in their history is removed, and the addresses leave the
    suppression list (with the admin's log of them)."""
    order_ids, emails = list(order_ids), {e.strip().lower() for e in emails}
    records = ConfirmationEmail.objects.filter(order_id__in=order_ids)
    messages = SesMessage.objects.filter(email__in=records)
    with_errors = set(records.exclude(last_error="").values_list("pk", flat=True))
    cleared = len(with_errors | set(messages.values_list("email_id", flat=True)))
    records.filter(pk__in=with_errors).update(last_error="", updated_at=timezone.now())
    messages.delete()
    scrubbed = 0
    for event in EmailEvent.objects.filter(notification__order_id__in=order_ids):
        detail = EMAIL_ADDRESS.sub("[erased]", event.detail)
        if detail != event.detail:
            event.detail = detail
            event.save(update_fields=["detail"])
            scrubbed += 1
    suppressed = SuppressedAddress.objects.filter(email__in=emails)
    logged = LogEntry.objects.filter(
        content_type=ContentType.objects.get_for_model(SuppressedAddress),
        object_id__in=[str(pk) for pk in suppressed.values_list("pk", flat=True)],
    ).update(object_repr="[erased]")
    removed, _ = suppressed.delete()
    return {
        "confirmation emails cleared": cleared,
        "email history entries scrubbed": scrubbed,
        "suppressed addresses removed": removed,
        "admin log entries scrubbed": logged,
    }
