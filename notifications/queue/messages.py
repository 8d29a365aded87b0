"""What a queue message says, poison included (the format itself: ``shop.sqs_envelope``)."""

from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings

from shop.sqs_envelope import EnvelopeError, envelope_decode


@dataclass(frozen=True)
class DecodedMessage:
    """What a queue message says, as far as it can be read: a poison message says little."""

    task: str | None
    order_id: int | None
    #: Why the worker cannot run it as a confirmation; "" when it can.
    problem: str = ""


def message_decode(body: str) -> DecodedMessage:
    """The task name and order id of a confirmation message; anything else is described
    (``problem``), never raised."""
    try:
        envelope = envelope_decode(body)
    except EnvelopeError as exc:
        return DecodedMessage(exc.task_name, None, exc.problem)
    if envelope.task_name != settings.CONFIRMATION_TASK_NAME:
        return DecodedMessage(envelope.task_name, None, "not the confirmation task")
    order_id = envelope.kwargs.get("order_id", envelope.args[0] if envelope.args else None)
    if type(order_id) is not int:
        return DecodedMessage(envelope.task_name, None, "no order id")
    return DecodedMessage(envelope.task_name, order_id)
