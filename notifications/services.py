"""The order-confirmation email: recording it, queueing it, sending it."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from django.db import transaction
from django.db.models import F
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
    # robust: a failed publish is logged and must not turn the committed order into a 500;
    # the record stays `pending`.
    transaction.on_commit(lambda: queue.confirmation_enqueue(order_id=order.pk), robust=True)
    return notification


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
