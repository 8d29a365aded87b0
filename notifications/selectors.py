"""Reading an order's emails: records, history, SES message ids, labels (HackSoft's selectors).

What the admin, the commands and ``orders`` show of the emails; nothing here writes.
"""

from __future__ import annotations

from notifications.models import EmailEvent, EmailKind, EmailStatus, OrderEmail, SesMessage


def email_for_order(*, order_id: int, kind: str = EmailKind.CONFIRMATION) -> OrderEmail | None:
    return OrderEmail.objects.filter(order_id=order_id, kind=kind).first()


def email_order_id(*, email_id: int) -> int | None:
    return OrderEmail.objects.filter(pk=email_id).values_list("order_id", flat=True).first()


def email_label(*, email_id: int) -> str:
    """How log lines name an email: ``<kind> order=<id>`` (``email=<id>`` if unknown)."""
    found = OrderEmail.objects.filter(pk=email_id).values_list("kind", "order_id")
    return next((f"{kind} order={order_id}" for kind, order_id in found), f"email={email_id}")


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


#: Every kind of email an order can have; every status an email can be in (value, label).
EMAIL_KINDS = tuple(EmailKind.values)


EMAIL_STATUSES = tuple(EmailStatus.choices)


def email_status_label(status: str) -> str:
    return dict(EmailStatus.choices).get(status, status)
