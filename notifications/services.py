"""An order's emails (confirmation, shipped, cancelled): recording, queueing, sending, one
pipeline for every kind."""

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
from django.db.models import F, Q
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
from orders import actions as order_actions
from orders.models import Order, OrderStatus
from shop import outbox
from shop.logging import EMAIL_ADDRESS, context_bind
from shop.metrics import CONFIRMATION_ATTEMPTS_THROTTLED, SES_THROTTLING_ANSWERS
from shop.models import OutboxKind, OutboxMessage

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


#: The kinds, for ``orders`` (which may not import ``notifications.models``).
EMAIL_CONFIRMATION = EmailKind.CONFIRMATION
EMAIL_SHIPPED = EmailKind.SHIPPED
EMAIL_CANCELLED = EmailKind.CANCELLED


def email_request(*, order: Order, kind: str) -> OrderEmail:
    """Record one email of the order (``EmailKind``: confirmation, shipped, cancelled) and
    its task in the outbox; the one entry point ``orders`` calls.

    Called inside the transaction of what the email tells (the order placed, shipped,
    cancelled): if it rolls back, neither the record nor the outbox row exists; if it
    commits, both do, and the relay (``manage.py outbox_relay``) publishes the task, which
    carries the record's id only. No SQS call here: the record stays ``pending`` and gets its
    ``queued`` entry (and ``queued_at``) when the relay has published it
    (``emails_queued_record``).
    """
    notification = OrderEmail.objects.create(order=order, kind=kind, status=EmailStatus.PENDING)
    _task_add(notification)
    logger.info(
        "recorded %s email for order %s (its task in the outbox)",
        kind,
        order.pk,
        extra={"order_id": order.pk},
    )
    return notification


def confirmation_request(*, order: Order) -> OrderEmail:
    return email_request(order=order, kind=EmailKind.CONFIRMATION)


def _task_add(notification: OrderEmail) -> None:
    outbox.outbox_task_add(
        queue_url=settings.ORDER_QUEUE_URL,
        task_name=settings.EMAIL_TASK_NAME,
        kwargs={"email_id": notification.pk},
        # FIFO: one message group per order, so an order's emails go out in their order.
        group_id=str(notification.order_id),
    )


def _published_email_ids(rows: Sequence[OutboxMessage]) -> tuple[set[int], set[int]]:
    """(email ids, order ids of old-style confirmation tasks) among published outbox rows."""
    email_ids, order_ids = set(), set()
    for row in rows:
        if row.kind != OutboxKind.SQS_TASK:
            continue
        kwargs, task = row.payload.get("kwargs") or {}, row.payload.get("task")
        if task == settings.EMAIL_TASK_NAME and type(kwargs.get("email_id")) is int:
            email_ids.add(kwargs["email_id"])
        # Rows written before the emails had kinds (the outbox's data migration).
        elif task == settings.CONFIRMATION_TASK_NAME and type(kwargs.get("order_id")) is int:
            order_ids.add(kwargs["order_id"])
    return email_ids, order_ids


def emails_queued_record(rows: Sequence[OutboxMessage], queued_at: datetime) -> None:
    """The relay published these outbox rows: each email task among them marks its email
    ``queued`` (``queued_at`` and an entry in its history). Runs in the relay's transaction
    that deletes the rows."""
    email_ids, order_ids = _published_email_ids(rows)
    if not (email_ids or order_ids):
        return
    records = OrderEmail.objects.filter(
        Q(pk__in=email_ids) | Q(order_id__in=order_ids, kind=EmailKind.CONFIRMATION)
    )
    found = list(records.values_list("pk", "order_id", "kind"))
    records.update(queued_at=queued_at)
    EmailEvent.objects.bulk_create(
        EmailEvent(notification_id=pk, kind=EmailEventKind.QUEUED, created_at=queued_at)
        for pk, _, _ in found
    )
    for pk, order_id, kind in sorted(found):
        logger.info(
            "queued %s email for order %s",
            kind,
            order_id,
            extra={"order_id": order_id, "email_id": pk},
        )


#: The relay's hook (its first name).
confirmation_queued_record = emails_queued_record


def email_for_order(*, order_id: int, kind: str = EmailKind.CONFIRMATION) -> OrderEmail | None:
    return OrderEmail.objects.filter(order_id=order_id, kind=kind).first()


def email_order_id(*, email_id: int) -> int | None:
    return OrderEmail.objects.filter(pk=email_id).values_list("order_id", flat=True).first()


def email_label(*, email_id: int) -> str:
    """How log lines name an email: ``<kind> order=<id>`` (``email=<id>`` if unknown)."""
    found = OrderEmail.objects.filter(pk=email_id).values_list("kind", "order_id")
    return next((f"{kind} order={order_id}" for kind, order_id in found), f"email={email_id}")


def email_event_record(
    *,
    email_id: int,
    kind: str,
    detail: str = "",
    actor: str = "",
    attempt: int | None = None,
    at: datetime | None = None,
) -> EmailEvent | None:
    """Add an entry to an email's history; ``None`` when there is no such email."""
    if not OrderEmail.objects.filter(pk=email_id).exists():
        return None
    return EmailEvent.objects.create(
        notification_id=email_id,
        kind=kind,
        detail=detail[:2000],
        actor=actor[:150],
        attempt=attempt,
        created_at=at or timezone.now(),
    )


def confirmation_event_record(*, order_id: int, **entry) -> EmailEvent | None:
    """``email_event_record`` for the order's confirmation email."""
    email = email_for_order(order_id=order_id)
    return email_event_record(email_id=email.pk, **entry) if email else None


def order_ses_messages(*, order_id: int) -> list[SesMessage]:
    """Every SES message id the order's emails were sent with, latest first."""
    return list(
        SesMessage.objects.filter(email__order_id=order_id)
        .select_related("email")
        .order_by("-sent_at", "-id")
    )


def email_ses_messages(*, email_id: int) -> list[SesMessage]:
    return list(SesMessage.objects.filter(email_id=email_id).order_by("-sent_at", "-id"))


def order_email_history(*, order_id: int) -> list[EmailEvent]:
    """The history of every email of the order, oldest first."""
    return list(
        EmailEvent.objects.filter(notification__order_id=order_id)
        .select_related("notification")
        .order_by("created_at", "id")
    )


def order_emails(*, order_id: int) -> list[OrderEmail]:
    """The order's emails, in the order they were recorded."""
    return list(OrderEmail.objects.filter(order_id=order_id).order_by("created_at", "id"))


# First names, for the callers of the confirmation-only version.
confirmation_ses_messages = order_ses_messages
confirmation_history = order_email_history


@dataclass
class ResendResult:
    requested: int
    #: Emails (or orders, for ``confirmation_resend``) without a record: nothing was queued.
    missing: list[int]
    #: Those whose email went back to ``pending`` with its task in the outbox.
    queued: list[int] = field(default_factory=list)


def email_resend(*, email_ids: Iterable[int], actor: str = "") -> ResendResult:
    """Queue each email again, ``sent`` ones included (on purpose).

    Each record goes back to ``pending`` with a ``resend`` entry in its history and its task
    in the outbox, in its own transaction; the relay publishes it.
    """
    ids = list(dict.fromkeys(int(email_id) for email_id in email_ids))
    result = ResendResult(requested=len(ids), missing=[])
    for email_id in ids:
        with transaction.atomic():
            notification = OrderEmail.objects.select_for_update().filter(pk=email_id).first()
            if notification is None:
                result.missing.append(email_id)
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
            _task_add(notification)
            result.queued.append(email_id)
    return result


def confirmation_resend(*, order_ids: Iterable[int], actor: str = "") -> ResendResult:
    """``email_resend`` for the orders' confirmation emails; ids in the result are orders."""
    ids = list(dict.fromkeys(int(order_id) for order_id in order_ids))
    emails = dict(
        OrderEmail.objects.filter(order_id__in=ids, kind=EmailKind.CONFIRMATION).values_list(
            "order_id", "pk"
        )
    )
    resent = email_resend(email_ids=[emails[o] for o in ids if o in emails], actor=actor)
    by_email = {pk: order_id for order_id, pk in emails.items()}
    return ResendResult(
        requested=len(ids),
        missing=[o for o in ids if o not in emails] + [by_email[e] for e in resent.missing],
        queued=[by_email[e] for e in resent.queued],
    )


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


def recipient_verification_request(*, address: str) -> None:
    """Start SES's verification of a customer's address (needed while SES is in its sandbox)."""
    ses.identity_verify(address=address)


def email_preview(*, email_id: int) -> rendering.RenderedEmail:
    """The email as it would be sent now, rendered without sending anything."""
    email = OrderEmail.objects.select_related("order").get(pk=email_id)
    return rendering.email_render(kind=email.kind, order=email.order)


#: Every kind of email an order can have; every status an email can be in (value, label).
EMAIL_KINDS = tuple(EmailKind.values)
EMAIL_STATUSES = tuple(EmailStatus.choices)


def email_status_label(status: str) -> str:
    return dict(EmailStatus.choices).get(status, status)


def order_email_preview(*, order_id: int, kind: str) -> rendering.RenderedEmail:
    """The order's email of ``kind``, rendered (its record need not exist)."""
    return rendering.email_render(kind=kind, order=Order.objects.get(pk=order_id))


def confirmation_preview(*, order_id: int) -> rendering.RenderedEmail:
    return order_email_preview(order_id=order_id, kind=EmailKind.CONFIRMATION)


def customer_data_erase(*, order_ids: Iterable[int], emails: Iterable[str]) -> dict[str, int]:
    """Erase what notifications hold about a customer (``orders.privacy``, in its transaction):
    the orders' email records lose their last error (SES quotes the address) and every SES
    message id they were sent with (a late SES event would bring the address back into the
    history), every address in their history is removed, and the addresses leave the
    suppression list (with the admin's log of them)."""
    order_ids, emails = list(order_ids), {e.strip().lower() for e in emails}
    records = OrderEmail.objects.filter(order_id__in=order_ids)
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
