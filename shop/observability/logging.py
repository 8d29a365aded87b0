"""Log context: every line about an order carries ``order_id``, every line of a task ``task_id``.

The ids live in context variables, set where they become known and cleared where their scope
ends, and ``ContextFilter`` (installed on the console handler by ``LOGGING`` in settings)
copies them onto each record, where the JSON formatter (python-json-logger) prints them as
fields like any other ``extra``:

- Celery: ``task_prerun`` sets ``task_id`` and the task's ``email_id`` (or, first version,
  ``order_id``) kwarg in the process that runs the task (a prefork pool child); the email's
  send binds ``order_id`` once it has read the record; ``task_postrun`` clears them. Lines
  Celery logs about a task in the worker's main process ("received") carry the task's id in
  their ``data`` extra; the task's Request class (``shop.aws.sqs.transport.SqsRequest``) notes the
  ids of each message as it arrives (``task_message_note``) and the filter finds them by that
  task id (``email_id`` for an email task: its message carries nothing else).
- Web: ``orders.services.order_place`` binds the new order's id; each request starts and ends
  with an empty context (``request_started`` / ``request_finished``), so a reused thread never
  carries the previous request's order.

An ``extra={"order_id": ...}`` passed to a log call wins over the context.

With JSON logs the Celery worker's startup banner (printed, not logged) is logged as one JSON
line instead, so that the worker's output is JSON from its first line to its last.

No line shows a customer's email address whole: both formatters (``PlainFormatter``,
``JsonFormatter``) mask every address in the finished line, whoever logged it (our code, an
SES error that quotes the recipient, Celery's report of a failed task, a library's
payload): ``bob@example.com`` is written ``b***@example.com``.

This module is imported by the logging configuration itself (the filter), so its Celery and
Django signal receivers are connected in every process that configures logging.
"""

from __future__ import annotations

import contextvars
import logging
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from cachetools import TTLCache
from celery.signals import celeryd_after_setup, task_postrun, task_prerun
from django.conf import settings
from django.core.signals import request_finished, request_started
from django.dispatch import receiver
from pythonjsonlogger.json import JsonFormatter as _JsonFormatter

logger = logging.getLogger(__name__)

_order_id: contextvars.ContextVar[int | None] = contextvars.ContextVar("order_id", default=None)
_task_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("task_id", default=None)
# The email an email task is about (its message carries that id only; the order's id joins
# once the worker has read the record).
_email_id: contextvars.ContextVar[int | None] = contextvars.ContextVar("email_id", default=None)
_FIELDS = {"order_id": _order_id, "task_id": _task_id, "email_id": _email_id}


def context_bind(*, order_id: int | None = None, task_id: str | None = None) -> None:
    """Attach ids to every line logged from here on in this context (thread, task, request).

    A request or a task clears them when it ends; elsewhere (a shell, a test) they stay until
    ``context_clear()``. ``log_context()`` binds for a block only.
    """
    if order_id is not None:
        _order_id.set(order_id)
    if task_id is not None:
        _task_id.set(task_id)


def context_clear() -> None:
    _order_id.set(None)
    _task_id.set(None)
    _email_id.set(None)


@contextmanager
def log_context(*, order_id: int | None = None, task_id: str | None = None) -> Iterator[None]:
    """Bind ids for a block, restoring the previous ones afterwards."""
    tokens = []
    if order_id is not None:
        tokens.append((_order_id, _order_id.set(order_id)))
    if task_id is not None:
        tokens.append((_task_id, _task_id.set(task_id)))
    try:
        yield
    finally:
        for var, token in reversed(tokens):
            var.reset(token)


#: An email address as it appears in text: a local part of any of RFC 5322's characters (the
#: first one kept) and a domain with at least one dot (kept whole: ``a***@example.com``).
_LOCAL = r"[\w!#$%&'*+/=?^`{|}~.-]"
_EMAIL = re.compile(rf"({_LOCAL}){_LOCAL}*@((?:[\w-]+\.)+[\w-]{{2,}})")
#: The same addresses, whole (``EMAIL_ADDRESS.sub("[erased]", text)`` removes them).
EMAIL_ADDRESS = re.compile(rf"{_LOCAL}+@(?:[\w-]+\.)+[\w-]{{2,}}")


def email_addresses_mask(text: str) -> str:
    """``text`` with every email address masked: ``bob@example.com`` -> ``b***@example.com``."""
    return _EMAIL.sub(r"\1***@\2", text)


class PlainFormatter(logging.Formatter):
    """The plain format, with email addresses masked in the finished line."""

    def format(self, record: logging.LogRecord) -> str:
        return email_addresses_mask(super().format(record))


class JsonFormatter(_JsonFormatter):
    """python-json-logger's JSON lines, with email addresses masked in the finished line."""

    def format(self, record: logging.LogRecord) -> str:
        return email_addresses_mask(super().format(record))


class ContextFilter(logging.Filter):
    """Adds ``order_id`` and ``task_id`` to each record that has them in its context."""

    def filter(self, record: logging.LogRecord) -> bool:
        for name, var in _FIELDS.items():
            if getattr(record, name, None) is not None:
                continue  # an explicit extra= wins
            value = var.get()
            if value is None:
                value = _from_celery_data(record, name)
            if value is not None:
                setattr(record, name, value)
        return True


#: Task id -> the ids its message names, noted by the worker's main process as a task message
#: arrives (``task_message_note``, from the task's Request class) for Celery's own lines about
#: the task there ("received"), which name the task by its id in their ``data`` extra.
_task_ids: TTLCache = TTLCache(maxsize=1024, ttl=600)
_task_ids_lock = threading.Lock()


def task_message_note(*, task_id: str, kwargs: Any) -> None:
    """Remember the ``order_id`` / ``email_id`` a task message carries, for the lines Celery
    logs about it outside the task (its kwargs there are only a repr)."""
    ids = {name: _id_of(kwargs, name) for name in ("order_id", "email_id")}
    ids = {name: value for name, value in ids.items() if value is not None}
    if ids and isinstance(task_id, str):
        with _task_ids_lock:
            _task_ids[task_id] = ids


def _from_celery_data(record: logging.LogRecord, name: str) -> int | str | None:
    """Celery logs its task lines with ``extra={"data": {"id": ..., ...}}``."""
    data = getattr(record, "data", None)
    task_id = data.get("id") if isinstance(data, dict) else None
    if not isinstance(task_id, str):
        return None
    if name == "task_id":
        return task_id
    with _task_ids_lock:
        return _task_ids.get(task_id, {}).get(name)


def _id_of(kwargs: Any, name: str) -> int | None:
    value = kwargs.get(name) if isinstance(kwargs, dict) else None
    return value if isinstance(value, int) and not isinstance(value, bool) else None


@task_prerun.connect
def _task_started(task_id: str | None = None, kwargs: dict | None = None, **_: Any) -> None:
    context_clear()
    context_bind(task_id=task_id, order_id=_id_of(kwargs, "order_id"))
    if (email_id := _id_of(kwargs, "email_id")) is not None:
        _email_id.set(email_id)


@task_postrun.connect
def _task_finished(**_: Any) -> None:
    context_clear()


@celeryd_after_setup.connect
def _banner_as_json(sender: str | None = None, instance: Any = None, **_: Any) -> None:
    """With JSON logs the worker's startup banner would be the one plain block: log it instead."""
    if settings.LOG_FORMAT != "json" or instance is None:
        return
    instance.quiet = True  # what `celery --quiet` sets: no banner on stdout
    logger.info(
        "celery worker %s starting", sender, extra={"banner": instance.startup_info(artlines=False)}
    )


@receiver(request_started)
def _request_started(**_: Any) -> None:
    context_clear()


@receiver(request_finished)
def _request_finished(**_: Any) -> None:
    context_clear()
