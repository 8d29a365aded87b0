"""The order-confirmation email: recording it and (see notifications.queue) queueing it."""

from __future__ import annotations

from django.db import transaction

from notifications import queue
from notifications.models import ConfirmationEmail, EmailStatus
from orders.models import Order


def confirmation_request(*, order: Order) -> ConfirmationEmail:
    """Record the order's confirmation email and queue it once the transaction commits.

    Called inside the order's transaction: if it rolls back, neither the record nor the
    message exists.
    """
    notification = ConfirmationEmail.objects.create(order=order, status=EmailStatus.PENDING)
    # robust: a failed publish is logged and must not turn the committed order into a 500;
    # the record stays `pending` for the re-publishing sweep.
    transaction.on_commit(lambda: queue.confirmation_enqueue(order_id=order.pk), robust=True)
    return notification
