"""The order-confirmation email: recording it, queueing it, sending it."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from notifications import queue, rendering, ses
from notifications.models import ConfirmationEmail, EmailStatus
from orders.models import Order, OrderStatus

logger = logging.getLogger(__name__)


class ConfirmationMissing(Exception):
    """No order (or no confirmation record) with this id: nothing will ever make it send."""


class ConfirmationFailed(Exception):
    """This attempt failed and was recorded; the message must go back to SQS."""


@dataclass(frozen=True)
class SendOutcome:
    notification: ConfirmationEmail
    #: "sent", or "skipped" when an earlier delivery of the message already sent it.
    outcome: str


def confirmation_request(*, order: Order) -> ConfirmationEmail:
    """Record the order's confirmation email and queue it once the transaction commits.

    Called inside the order's transaction: if it rolls back, neither the record nor the
    message exists.
    """
    notification = ConfirmationEmail.objects.create(order=order, status=EmailStatus.PENDING)
    transaction.on_commit(lambda: confirmation_publish(order_id=order.pk))
    return notification


def confirmation_publish(*, order_id: int) -> bool:
    """Put the order's confirmation task on the queue; never raises.

    A failed publish (SQS unreachable, throttled, credentials expired) must not turn a
    committed order into an error: it is logged, the record stays ``pending`` with no
    ``queued_at``, and ``confirmation_sweep`` publishes it later.
    """
    try:
        queue.confirmation_enqueue(order_id=order_id)
    except Exception:
        logger.exception("could not queue the confirmation of order %s; the sweep will", order_id)
        return False
    ConfirmationEmail.objects.filter(order_id=order_id).update(queued_at=timezone.now())
    return True


@dataclass(frozen=True)
class SweepResult:
    found: int
    published: int
    failed: int


def confirmation_sweep(
    *, older_than: timedelta, limit: int = 1000, progress: Callable[[int, bool], None] | None = None
) -> SweepResult:
    """Re-publish confirmations still ``pending`` after ``older_than``.

    Picks records never queued (the publish after commit failed) or last queued before the
    cut-off (their message was lost), oldest first. A record that was in fact still on its
    way is then on the queue twice; the send is idempotent (``confirmation_send`` skips a
    record already ``sent``), so the customer still gets one email.
    """
    cutoff = timezone.now() - older_than
    order_ids = list(
        ConfirmationEmail.objects.filter(status=EmailStatus.PENDING, created_at__lt=cutoff)
        .filter(Q(queued_at__isnull=True) | Q(queued_at__lt=cutoff))
        .order_by("created_at")
        .values_list("order_id", flat=True)[:limit]
    )
    published = 0
    for order_id in order_ids:
        ok = confirmation_publish(order_id=order_id)
        published += ok
        if progress:
            progress(order_id, ok)
    return SweepResult(found=len(order_ids), published=published, failed=len(order_ids) - published)


def confirmation_send(*, order_id: int) -> SendOutcome:
    """Send the order's confirmation email once.

    The record is locked for the whole attempt, so two deliveries of the same message (SQS is
    at-least-once) cannot both send: the second waits, then finds it ``sent`` and skips.
    Any failure is recorded (status ``failed``, attempts, last error) and re-raised as
    ``ConfirmationFailed`` so that the message returns to SQS.
    """
    try:
        with transaction.atomic():
            notification = (
                ConfirmationEmail.objects.select_for_update(of=("self",))
                .select_related("order")
                .get(order_id=order_id)
            )
            if notification.status == EmailStatus.SENT:
                return SendOutcome(notification, "skipped")
            email = rendering.confirmation_render(order=notification.order)
            message_id = ses.email_send(
                to=notification.order.customer_email,
                subject=email.subject,
                html=email.html,
                text=email.text,
            )
            notification.status = EmailStatus.SENT
            notification.attempts += 1
            notification.ses_message_id = message_id
            notification.sent_at = timezone.now()
            notification.last_error = ""
            notification.save()
            # The order moves on with its email (a plain model update: no orders logic here).
            Order.objects.filter(pk=order_id, status=OrderStatus.PLACED).update(
                status=OrderStatus.CONFIRMED
            )
            return SendOutcome(notification, "sent")
    except ConfirmationEmail.DoesNotExist:
        raise ConfirmationMissing(f"no confirmation email for order {order_id}") from None
    except Exception as exc:
        reason = _reason(exc)
        ConfirmationEmail.objects.filter(order_id=order_id).exclude(status=EmailStatus.SENT).update(
            status=EmailStatus.FAILED,
            attempts=F("attempts") + 1,
            last_error=reason[:2000],
            updated_at=timezone.now(),
        )
        raise ConfirmationFailed(reason) from exc


def _reason(exc: Exception) -> str:
    if isinstance(exc, ses.SendRefused | ses.SesUnavailable):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


def confirmation_preview(*, order_id: int) -> rendering.RenderedEmail:
    """The email as it would be sent for this order, rendered without sending anything."""
    order = Order.objects.get(pk=order_id)
    return rendering.confirmation_render(order=order)
