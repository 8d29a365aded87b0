"""An order's emails (confirmation, shipped, cancelled): recording, queueing, resending,
previewing, erasing. Sending them is ``notifications.sending``'s; reading them
``notifications.selectors``'.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from django.conf import settings
from django.contrib.admin.models import LogEntry
from django.contrib.contenttypes.models import ContentType
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from notifications import rendering, ses
from notifications.models import (
    EmailEvent,
    EmailEventKind,
    EmailKind,
    EmailStatus,
    OrderEmail,
    SesMessage,
    SuppressedAddress,
)
from notifications.selectors import email_for_order
from orders.models import Order
from shop import outbox
from shop.models import OutboxKind, OutboxMessage
from shop.observability.logging import EMAIL_ADDRESS

logger = logging.getLogger(__name__)


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


def recipient_verification_request(*, address: str) -> None:
    """Start SES's verification of a customer's address (needed while SES is in its sandbox)."""
    ses.identity_verify(address=address)


def email_preview(*, email_id: int) -> rendering.RenderedEmail:
    """The email as it would be sent now, rendered without sending anything."""
    email = OrderEmail.objects.select_related("order").get(pk=email_id)
    return rendering.email_render(kind=email.kind, order=email.order)


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
