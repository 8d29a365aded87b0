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
    #: The order of a first-version confirmation task (``order_id``); else None.
    order_id: int | None
    #: Why the worker cannot run it as an email task; "" when it can.
    problem: str = ""
    #: The email record an email task names (``email_id``); None for a first-version one.
    email_id: int | None = None


def message_decode(body: str) -> DecodedMessage:
    """Read the task name and email (or order) id of a Celery message as kombu's SQS
    transport puts it.

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
    return _ids(task, args=content[0], kwargs=content[1])


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
