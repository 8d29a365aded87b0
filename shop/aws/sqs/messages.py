"""What a queue message says, poison included (the format itself: ``shop.aws.sqs.envelope``)."""

from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings

from shop.aws.sqs.envelope import EnvelopeError, envelope_decode


@dataclass(frozen=True)
class DecodedMessage:
    """What a queue message says, as far as it can be read: a poison message says little."""

    task: str | None
    #: The order of a first-version confirmation task (``order_id``); else None.
    order_id: int | None
    #: Why the worker cannot run it as an email task; "" when it can.
    problem: str = ""
    #: The email record an email task names (``email_id``); None for a first-version one.
    email_id: int | None = None


def message_decode(body: str) -> DecodedMessage:
    """The task name and email id (first version: order id) of an email task's message;
    anything else is described (``problem``), never raised."""
    try:
        envelope = envelope_decode(body)
    except EnvelopeError as exc:
        return DecodedMessage(exc.task_name, None, exc.problem)
    return _ids(envelope.task_name, args=envelope.args, kwargs=envelope.kwargs)


def _ids(task: str, *, args: list, kwargs: dict) -> DecodedMessage:
    """The email (or, for the first version's task, the order) a task names."""
    if task == settings.EMAIL_TASK_NAME:
        email_id = kwargs.get("email_id", args[0] if args else None)
        if type(email_id) is not int:
            return DecodedMessage(task, None, "no email id")
        return DecodedMessage(task, None, email_id=email_id)
    if task != settings.CONFIRMATION_TASK_NAME:
        return DecodedMessage(task, None, "not an email task")
    order_id = kwargs.get("order_id", args[0] if args else None)
    if type(order_id) is not int:
        return DecodedMessage(task, None, "no order id")
    return DecodedMessage(task, order_id)
