"""A Celery task message on Amazon SQS: the one place that writes and reads it.

**Writing** (``envelope_encode``) does not re-implement the format: it publishes through the
project's own Celery app (``app.send_task``: Celery's protocol 2, the task serializer,
routing) and kombu's SQS transport of the project (``CELERY_BROKER_TRANSPORT`` with its
transport options: kombu's envelope, its base64 body encoding, ``sqs_base64_encoding``), on a
connection of its own whose SQS client never sends: botocore's public event system
(``before-call``) answers its ``SendMessage`` locally, after ``before-parameter-build`` has
kept the ``MessageBody``. So the body is, byte for byte, what ``send_task`` puts on the order
queue, except for the fields that differ between two sends anyway:

- ``properties.delivery_tag``: a new UUID per publish (kombu's virtual channel);
- ``properties.reply_to``: the publishing app's ``oid`` (one per process and thread);
- ``headers.origin``: ``gen<pid>@<host>`` of the publishing process;
- ``headers.id``, ``headers.root_id`` and ``properties.correlation_id``: the task id, a new
  UUID per call unless ``task_id`` is given.

No time field is set (no ``eta``, no ``expires``). Delay and FIFO fields belong to the
``SendMessage`` request, not to the body: ``fifo_fields`` gives the latter.

**Reading** (``envelope_decode``) follows what kombu's SQS transport and Celery's worker accept:
the SQS body is base64 of JSON (kombu's default) or plain JSON (``sqs_base64_encoding`` off);
kombu's envelope names the content type, encoding and ``properties.body_encoding`` of its
``body``; that body, in Celery's protocol 2, is ``[args, kwargs, embed]`` with the task in
``headers``. Anything else raises ``EnvelopeError`` (a ``ValueError``) naming the problem.
"""

from __future__ import annotations

import base64
import binascii
import json
import threading
from dataclasses import dataclass, field
from typing import Any

from botocore.awsrequest import AWSResponse
from celery import current_app
from django.conf import settings
from kombu import Producer
from kombu.asynchronous.aws.sqs.message import AsyncMessage
from kombu.exceptions import ContentDisallowed, DecodeError
from kombu.serialization import loads, prepare_accept_content
from kombu.transport.virtual.base import Base64
from kombu.utils.json import dumps

#: The fields of ``envelope_encode``'s result that differ between two sends of the same task
#: (dotted paths into kombu's envelope); "headers.id" and friends only without a ``task_id``.
PER_SEND_FIELDS = (
    "properties.delivery_tag",
    "properties.reply_to",
    "headers.origin",
)
TASK_ID_FIELDS = ("headers.id", "headers.root_id", "properties.correlation_id")


class EnvelopeError(ValueError):
    """The text is not a Celery task message as kombu's SQS transport writes one."""

    def __init__(self, problem: str, *, task_name: str | None = None) -> None:
        super().__init__(problem if task_name is None else f"{problem} (task {task_name})")
        #: A short description: "not a Celery message", "no task name", "malformed task body".
        self.problem = problem
        #: The task's name, where the message got that far.
        self.task_name = task_name


@dataclass(frozen=True)
class Envelope:
    """What a Celery message on SQS says."""

    task_name: str
    task_id: str
    args: tuple
    kwargs: dict
    #: Celery's own retry count (``self.retry()``); SQS's receive count is not in the body.
    retries: int
    headers: dict
    #: kombu's message properties (delivery info, body encoding, correlation id...).
    properties: dict = field(default_factory=dict)
    #: Celery's protocol 2 embed: callbacks, errbacks, chain, chord.
    embed: dict = field(default_factory=dict)


# --- writing -----------------------------------------------------------------------------


class _Capture:
    """A connection of the project's transport whose SQS ``SendMessage`` is kept, not sent."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.key: tuple | None = None
        self.producer: Producer | None = None
        self.body: str | None = None

    def _keep(self, params: dict, **kwargs: Any) -> None:
        self.body = params["MessageBody"]

    @staticmethod
    def _answer(**kwargs: Any) -> tuple[AWSResponse, dict]:
        # A local answer: botocore skips the HTTP request when a before-call handler answers.
        return AWSResponse("", 200, {}, None), {"MessageId": "not-sent"}

    def producer_for(self, app: Any) -> Producer:
        # Rebuilt when the settings that shape the message change (tests move the queue).
        key = (
            app.conf.broker_url,
            str(app.conf.broker_transport),
            repr(app.conf.broker_transport_options),
        )
        if self.producer is None or self.key != key:
            connection = app.connection_for_write()
            channel = connection.default_channel
            client = channel.sqs(queue=settings.ORDER_QUEUE_NAME)
            client.meta.events.register("before-parameter-build.sqs.SendMessage", self._keep)
            client.meta.events.register("before-call.sqs.SendMessage", self._answer)
            self.producer = Producer(channel)
            self.key = key
        return self.producer


_capture = _Capture()


def envelope_encode(
    *,
    task_name: str,
    args: tuple = (),
    kwargs: dict | None = None,
    task_id: str | None = None,
) -> str:
    """The SQS MessageBody that ``app.send_task(task_name, args, kwargs, task_id=...)`` sends
    to the order queue, byte for byte but for the per-send fields (module docstring)."""
    app = current_app
    with _capture.lock:
        producer = _capture.producer_for(app)
        _capture.body = None
        app.send_task(
            task_name,
            args=args,
            kwargs=kwargs or {},
            task_id=task_id,
            queue=settings.ORDER_QUEUE_NAME,
            declare=[],
            producer=producer,
        )
        body, _capture.body = _capture.body, None
    if body is None:
        raise RuntimeError("kombu's SQS transport sent no SendMessage for the task")
    return body


def envelope_replace(
    body: str,
    *,
    task_body: str | None = None,
    headers: dict | None = None,
    routing_key: str | None = None,
) -> str:
    """``body`` (from ``envelope_encode``) with parts of kombu's envelope replaced: the task
    body's text (encoded per ``properties.body_encoding``), the headers, the routing key. For
    poison on purpose (tests, drills); the SQS body encoding is the transport's own."""
    payload = _sqs_body_json(body)
    kombu_envelope_check(payload)
    if task_body is not None:
        encoding = payload["properties"].get("body_encoding")
        payload["body"] = Base64().encode(task_body) if encoding == "base64" else task_body
    if headers is not None:
        payload["headers"] = headers
    if routing_key is not None:
        payload["properties"]["delivery_info"]["routing_key"] = routing_key
    # kombu/transport/SQS/__init__.py, Channel._put: the same two calls, by the same option.
    text = dumps(payload)
    if current_app.conf.broker_transport_options.get("sqs_base64_encoding", True):
        return AsyncMessage().encode(text)
    return text


def fifo_fields(*, queue_url: str, group_id: str, deduplication_id: str) -> dict[str, str]:
    """The SendMessage (or batch entry) fields a FIFO queue needs; {} for a standard queue."""
    if not queue_url.endswith(".fifo"):
        return {}
    return {"MessageGroupId": group_id, "MessageDeduplicationId": deduplication_id}


# --- reading -----------------------------------------------------------------------------


def _json(text: str | bytes) -> Any:
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        return None


def _b64decode(text: str) -> bytes | None:
    try:
        return base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        return None


def _sqs_body_json(body: str) -> Any:
    """kombu's SQS transport reads a body as base64 of JSON if it is base64, else as JSON
    (``Channel._optional_b64_decode`` in kombu/transport/SQS/__init__.py, a private method,
    hence this reading of its rule; kombu has no public decoder of its SQS envelope, see
    kombu#2421, https://github.com/celery/kombu/issues/2421)."""
    decoded = _b64decode(body) if body.strip() else None
    if decoded is not None:
        try:
            return _json(decoded.decode())
        except UnicodeDecodeError:
            pass
    return _json(body)


def kombu_envelope_check(payload: Any) -> None:
    """Raise ``EnvelopeError`` unless kombu can build a message from this envelope: the
    fields it reads have the types it expects and its body decodes (``body_encoding``)."""
    if not isinstance(payload, dict) or "properties" not in payload:
        raise EnvelopeError("not a Celery message")
    properties = payload["properties"]
    delivery_info = properties.get("delivery_info", {}) if isinstance(properties, dict) else 0
    if not isinstance(delivery_info, dict):
        raise EnvelopeError("not a Celery message")
    texts = (
        payload.get("content-type"),
        payload.get("content-encoding"),
        delivery_info.get("exchange"),
        delivery_info.get("routing_key"),
        properties.get("body_encoding"),
    )
    if not (
        isinstance(payload.get("headers"), dict | None)
        and isinstance(payload.get("body"), str)
        and all(isinstance(text, str | None) for text in texts)
    ):
        raise EnvelopeError("not a Celery message")
    _task_body(payload)


def _task_body(payload: dict) -> bytes:
    """The envelope's ``body``, undone from its ``body_encoding`` (kombu: base64 or none)."""
    encoding = payload["properties"].get("body_encoding")
    if encoding is None:
        return payload["body"].encode()
    if encoding != "base64":
        raise EnvelopeError(f"unknown body encoding {encoding!r}")
    decoded = _b64decode(payload["body"])
    if decoded is None:
        raise EnvelopeError("body is not base64")
    return decoded


def envelope_decode(body: str) -> Envelope:
    """Read a Celery task message (protocol 2) from an SQS MessageBody; ``EnvelopeError``
    says why anything else is not one."""
    payload = _sqs_body_json(body)
    if not isinstance(payload, dict) or not isinstance(payload.get("headers"), dict):
        raise EnvelopeError("not a Celery message")
    headers = payload["headers"]
    task_name = headers.get("task")
    if not isinstance(task_name, str) or not task_name:
        raise EnvelopeError("no task name")
    try:
        kombu_envelope_check(payload)
        content = loads(
            _task_body(payload),
            payload.get("content-type") or "application/json",
            payload.get("content-encoding") or "utf-8",
            accept=prepare_accept_content(current_app.conf.accept_content),
        )
    except EnvelopeError as exc:
        raise EnvelopeError("malformed task body", task_name=task_name) from exc
    except (ContentDisallowed, DecodeError, ValueError, TypeError, RecursionError) as exc:
        raise EnvelopeError("malformed task body", task_name=task_name) from exc
    if not (
        isinstance(content, list | tuple)
        and len(content) == 3
        and isinstance(content[0], list | tuple)
        and isinstance(content[1], dict)
        and isinstance(content[2], dict | None)
    ):
        raise EnvelopeError("malformed task body", task_name=task_name)
    task_id = headers.get("id")
    retries = headers.get("retries") or 0
    if not isinstance(task_id, str) or type(retries) is not int:
        raise EnvelopeError("malformed task headers", task_name=task_name)
    return Envelope(
        task_name=task_name,
        task_id=task_id,
        args=tuple(content[0]),
        kwargs=content[1],
        retries=retries,
        headers=headers,
        properties=payload["properties"],
        embed=content[2] or {},
    )
