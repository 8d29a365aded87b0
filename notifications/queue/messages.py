"""Reading a queue message as kombu's SQS transport writes a Celery task, poison included."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from typing import Any

from django.conf import settings


@dataclass(frozen=True)
class DecodedMessage:
    """What a queue message says, as far as it can be read: a poison message says little."""

    task: str | None
    order_id: int | None
    #: Why the worker cannot run it as a confirmation; "" when it can.
    problem: str = ""


def message_decode(body: str) -> DecodedMessage:
    """Read the task name and order id of a Celery message as kombu's SQS transport puts it.

    The SQS body is base64 (or plain) JSON of kombu's envelope; its ``body`` is base64 of the
    task's JSON ``[args, kwargs, embed]``. Anything else is described, never raised.
    """
    envelope = _json(body)
    if envelope is None:
        envelope = _json(_b64decode(body))
    if not isinstance(envelope, dict) or not isinstance(envelope.get("headers"), dict):
        return DecodedMessage(None, None, "not a Celery message")
    task = envelope["headers"].get("task")
    if not isinstance(task, str) or not task:
        return DecodedMessage(None, None, "no task name")
    properties = envelope.get("properties")
    encoding = properties.get("body_encoding") if isinstance(properties, dict) else None
    payload = envelope.get("body")
    if isinstance(payload, str) and encoding == "base64":
        payload = _b64decode(payload)
    content = _json(payload) if isinstance(payload, str) else None
    if not (
        isinstance(content, list)
        and len(content) == 3
        and isinstance(content[0], list)
        and isinstance(content[1], dict)
    ):
        return DecodedMessage(task, None, "malformed task body")
    if task != settings.CONFIRMATION_TASK_NAME:
        return DecodedMessage(task, None, "not the confirmation task")
    args, kwargs = content[0], content[1]
    order_id = kwargs.get("order_id", args[0] if args else None)
    if type(order_id) is not int:
        return DecodedMessage(task, None, "no order id")
    return DecodedMessage(task, order_id)


def _json(text: str | None) -> Any:
    if not text:
        return None
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        return None


def _b64decode(text: str) -> str | None:
    try:
        return base64.b64decode(text, validate=True).decode()
    except (ValueError, UnicodeDecodeError):
        return None
