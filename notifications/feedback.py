"""What SES reports about our emails after sending them, and the suppression list.

SES publishes an event per email to the configuration set's SNS topic (docs/emails.md "SES events
and the suppression list"); ``notifications.receivers`` turns each verified one into a call here.
The SES event objects (``bounce``, ``complaint``, ``delivery``, ``reject``) are taken as SES
documents them and read defensively: a field of the wrong type counts as missing.

- Delivery: history entry; status ``delivered`` if it was ``sent`` (never over a bounce or
  complaint).
- Bounce: history entry; status ``bounced`` with the diagnostic in ``last_error``. A
  permanent bounce suppresses each recipient SES gave up on. A transient bounce (mailbox
  full, message too large, auto-reply, ...) suppresses nobody, since the address may work
  next time, and marks the email ``bounced`` only if no delivery was reported before it.
- Complaint: history entry; status ``complained``; every complaining recipient suppressed.
- Reject (SES refused to send it, e.g. a virus): history entry; status ``failed`` with the
  reason in ``last_error``.

Statuses only move forward (sent -> delivered -> bounced -> complained; a reject only from
sent), and only while the record still describes an email SES accepted: after a resend
(``pending``/``failed``) or a suppressed skip, a late event goes into the history only.
Every send's SES message id is kept (``SesMessage``), so an event for an earlier send (the
email was resent since) is matched too: it goes into the history and may suppress its
recipients, but never changes the status, which describes the newest send.
SNS delivers at least once: the SNS message id is kept in the entry (``sns_message_id``, a
unique column; its detail shows it too), and a second delivery of the same SNS message
(checked under the record's row lock) changes nothing.
An event for a message id we do not know (another application's mail on the same
configuration set, or a record since deleted) is logged and ignored.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import IntegrityError, transaction
from django.utils import timezone

from notifications.models import (
    EmailEvent,
    EmailEventKind,
    EmailStatus,
    OrderEmail,
    SuppressedAddress,
    SuppressionReason,
)

logger = logging.getLogger(__name__)

#: Which statuses each event may move a record from. Statuses only move forward along an
#: accepted email's life (sent -> delivered -> bounced -> complained; a reject only from sent);
#: pending, failed and suppressed records (a resend is on its way, or nothing was sent) are
#: never changed by a late event.
_MOVES_FROM = {
    EmailStatus.DELIVERED: {EmailStatus.SENT},
    EmailStatus.BOUNCED: {EmailStatus.SENT, EmailStatus.DELIVERED},
    EmailStatus.COMPLAINED: {EmailStatus.SENT, EmailStatus.DELIVERED, EmailStatus.BOUNCED},
    EmailStatus.FAILED: {EmailStatus.SENT},
}
DETAIL_MAX = 2000


@dataclass(frozen=True)
class FeedbackOutcome:
    #: "recorded"; "duplicate" (this SNS message was handled before); "unknown" (no email of
    #: ours has this SES message id).
    outcome: str
    notification: OrderEmail | None = None
    #: Addresses put on the suppression list by this event (new or already there).
    suppressed: tuple[str, ...] = ()


# --- reading SES's objects ------------------------------------------------------------------
def _text(obj: Any, key: str) -> str:
    value = obj.get(key) if isinstance(obj, Mapping) else None
    return value.strip() if isinstance(value, str) else ""


def _items(obj: Any, key: str) -> list[Any]:
    value = obj.get(key) if isinstance(obj, Mapping) else None
    return value if isinstance(value, list) else []


def _address(value: Any) -> str | None:
    """A recipient as SES reports it, lowercased; None when it is not an address at all."""
    if not isinstance(value, str):
        return None
    email = value.strip().lower()
    try:
        validate_email(email)
    except ValidationError:
        return None
    return email if len(email) <= 254 else None


def _join(*parts: str) -> str:
    return "; ".join(part for part in parts if part)


def _sns_tag(sns_message_id: str) -> str:
    return f"[SNS {sns_message_id}]"


# --- recording ------------------------------------------------------------------------------
def _record(
    *,
    ses_message_id: str,
    sns_message_id: str,
    kind: str,
    detail: str,
    status: str | None = None,
    status_from: set[str] | None = None,
    last_error: str | None = None,
    suppress: Iterable[str] = (),
    suppression_reason: str = "",
) -> FeedbackOutcome:
    ses_message_id = ses_message_id.strip()
    if not ses_message_id:
        logger.info("SES %s event without a message id (SNS %s): ignored", kind, sns_message_id)
        return FeedbackOutcome("unknown")
    tag = _sns_tag(sns_message_id)
    with transaction.atomic():
        notification = (
            OrderEmail.objects.select_for_update(of=("self",))
            .filter(ses_messages__message_id=ses_message_id)
            .first()
        )
        if notification is None:
            logger.info(
                "SES %s event for unknown message id %s (SNS %s): ignored",
                kind,
                ses_message_id,
                sns_message_id,
            )
            return FeedbackOutcome("unknown")
        if sns_message_id and EmailEvent.objects.filter(sns_message_id=sns_message_id).exists():
            logger.info(
                "SES %s event of order %s: SNS message %s seen before, ignored",
                kind,
                notification.order_id,
                sns_message_id,
            )
            return FeedbackOutcome("duplicate", notification)

        suppressed = tuple(
            suppression_add(
                email=email,
                reason=suppression_reason,
                detail=f"order {notification.order_id}: {detail}",
            ).email
            for email in dict.fromkeys(suppress)
        )
        # Read under the record's lock: a send or resend that adds an id waits for it.
        latest = notification.ses_messages.order_by("-sent_at", "-id").first()
        earlier = latest is not None and latest.message_id != ses_message_id
        if earlier:
            # An event for an earlier send (the email was resent since): its history and the
            # suppression list, never the status, which describes the newest send.
            changed = False
            detail = _join(f"earlier send {ses_message_id}", detail)
        else:
            changed = _status_apply(
                notification, status=status, status_from=status_from, last_error=last_error
            )
        EmailEvent.objects.create(
            notification=notification,
            kind=kind,
            detail=f"{detail[: DETAIL_MAX - len(tag) - 1]} {tag}".lstrip(),
            sns_message_id=sns_message_id,
        )
    logger.info(
        "SES %s event order=%s message=%s%s status=%s%s suppressed: %s",
        kind,
        notification.order_id,
        ses_message_id,
        " (an earlier send)" if earlier else "",
        notification.status,
        "" if changed else " (unchanged)",
        ",".join(suppressed) or "-",
    )
    return FeedbackOutcome("recorded", notification, suppressed)


def _status_apply(
    notification: OrderEmail,
    *,
    status: str | None,
    status_from: set[str] | None,
    last_error: str | None,
) -> bool:
    """Move the record to ``status`` if the event may move it from where it is."""
    if status is None or notification.status not in (status_from or _MOVES_FROM[status]):
        return False
    notification.status = status
    fields = ["status", "updated_at"]
    if last_error is not None:
        notification.last_error = last_error[:DETAIL_MAX]
        fields.append("last_error")
    notification.updated_at = timezone.now()
    notification.save(update_fields=fields)
    return True


def ses_delivery_record(
    *, ses_message_id: str, sns_message_id: str, delivery: Mapping[str, Any]
) -> FeedbackOutcome:
    """SES handed the email to the recipient's mail server."""
    detail = _join(
        ", ".join(r for r in _items(delivery, "recipients") if isinstance(r, str)),
        _text(delivery, "smtpResponse"),
    )
    return _record(
        ses_message_id=ses_message_id,
        sns_message_id=sns_message_id,
        kind=EmailEventKind.DELIVERED,
        detail=detail,
        status=EmailStatus.DELIVERED,
    )


def ses_bounce_record(
    *, ses_message_id: str, sns_message_id: str, bounce: Mapping[str, Any]
) -> FeedbackOutcome:
    """The email bounced; a permanent bounce suppresses the recipients SES gave up on.

    In a permanent bounce, a recipient whose own status is a 4.x.x (delayed, not failed) is
    left alone, as is every recipient of a transient bounce.
    """
    bounce_type = _text(bounce, "bounceType")
    permanent = bounce_type == "Permanent"
    recipients: list[str] = []
    diagnostics: list[str] = []
    suppress: list[str] = []
    for recipient in _items(bounce, "bouncedRecipients"):
        email = _address(_text(recipient, "emailAddress"))
        if email is None:
            continue
        recipients.append(email)
        if code := _text(recipient, "diagnosticCode") or _text(recipient, "status"):
            diagnostics.append(f"{email}: {code}")
        if permanent and not _text(recipient, "status").startswith("4"):
            suppress.append(email)
    detail = _join(
        "/".join(p for p in (bounce_type, _text(bounce, "bounceSubType")) if p) or "bounce",
        *diagnostics,
        "" if diagnostics else ", ".join(recipients),
    )
    # A transient bounce after a delivery (an auto-reply, a late soft bounce) does not make a
    # delivered email "bounced": history only. Before any delivery it is SES giving up.
    return _record(
        ses_message_id=ses_message_id,
        sns_message_id=sns_message_id,
        kind=EmailEventKind.BOUNCED,
        detail=detail,
        status=EmailStatus.BOUNCED,
        status_from=None if permanent else {EmailStatus.SENT},
        last_error=f"bounced: {detail}",
        suppress=suppress,
        suppression_reason=SuppressionReason.BOUNCE,
    )


def ses_complaint_record(
    *, ses_message_id: str, sns_message_id: str, complaint: Mapping[str, Any]
) -> FeedbackOutcome:
    """A recipient marked the email as spam: every complaining recipient is suppressed."""
    recipients = [
        email
        for recipient in _items(complaint, "complainedRecipients")
        if (email := _address(_text(recipient, "emailAddress"))) is not None
    ]
    detail = _join(
        f"feedback type {_text(complaint, 'complaintFeedbackType') or 'not given'}",
        _text(complaint, "complaintSubType"),
        ", ".join(recipients),
    )
    return _record(
        ses_message_id=ses_message_id,
        sns_message_id=sns_message_id,
        kind=EmailEventKind.COMPLAINED,
        detail=detail,
        status=EmailStatus.COMPLAINED,
        suppress=recipients,
        suppression_reason=SuppressionReason.COMPLAINT,
    )


def ses_reject_record(
    *, ses_message_id: str, sns_message_id: str, reject: Mapping[str, Any]
) -> FeedbackOutcome:
    """SES accepted the call but would not send the email (e.g. it found a virus)."""
    reason = _text(reject, "reason") or "no reason given"
    return _record(
        ses_message_id=ses_message_id,
        sns_message_id=sns_message_id,
        kind=EmailEventKind.REJECTED,
        detail=reason,
        status=EmailStatus.FAILED,
        last_error=f"SES rejected the email: {reason}",
    )


# --- the suppression list -------------------------------------------------------------------
def suppression_add(*, email: str, reason: str, detail: str = "") -> SuppressedAddress:
    """Put an address on the suppression list (lowercased); an address already there stays
    as it is (first reason wins)."""
    email = email.strip().lower()
    try:
        with transaction.atomic():
            suppression, created = SuppressedAddress.objects.get_or_create(
                email=email, defaults={"reason": reason, "detail": detail[:DETAIL_MAX]}
            )
    except IntegrityError:  # added by a concurrent event between the get and the create
        suppression, created = SuppressedAddress.objects.get(email=email), False
    if created:
        logger.info("suppressed %s after a %s", email, reason)
    return suppression


def suppression_remove(*, email: str) -> bool:
    """Take an address off the suppression list; False if it was not on it."""
    deleted, _ = SuppressedAddress.objects.filter(email=email.strip().lower()).delete()
    if deleted:
        logger.info("unsuppressed %s", email.strip().lower())
    return bool(deleted)
