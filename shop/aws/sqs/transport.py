"""Celery and kombu on SQS, hardened: poison messages end in the dead-letter queue.

A message the worker cannot run (not JSON, not a Celery message, an undecodable body, an
unknown task, a malformed task message) is *rejected without requeue*. kombu's SQS transport
then leaves it in the queue, because the queue has a redrive policy (without one kombu would
delete it); SQS redelivers it after its visibility timeout, and after ``maxReceiveCount``
receives moves it to the dead-letter queue, where it can be inspected and redriven.

Stock Celery 5.7 / kombu 5.7 differ, and each difference is fixed here:

- Celery *acknowledges* (deletes) a message whose body cannot be decoded: it vanishes.
- A Celery message whose body is JSON of the wrong shape raises out of the consumer, and a
  JSON object with a malformed kombu envelope (``{"properties": 1}``) raises inside kombu:
  either way the worker stops with "Unrecoverable error".
- kombu's backoff policy reads ``headers["task"]`` unguarded, so rejecting a kombu message
  that has no task header stops the worker too.
- A message that is not a Celery message is logged as a WARNING that says "deleted".

Every rejected poison message logs one ERROR line, ``poison message id=... attempt=...
task=... outcome=rejected reason=...``: ``id`` is the SQS MessageId (the DLQ keeps it),
``attempt`` SQS's ApproximateReceiveCount.

**A requeue is a failed attempt.** Celery rejects *with requeue* when a prefork pool child
dies mid-task (``task_reject_on_worker_lost``: SIGKILL, the OOM killer, a crash in a C
extension) and when a task hits its hard time limit (acks on timeout off). kombu 5.7's SQS
QoS then restores the message (``QoS.reject`` -> ``Channel._restore`` -> ``_put``):
``_restore`` pops ``sqs_message`` from the delivery info and marks the message redelivered,
so ``_put`` changes its visibility to the long poll's ``wait_time_seconds`` instead of the
backoff delay (for a message not marked so, ``_put`` is a SendMessage of a copy whose receive
count starts at 0); then ``QoS.reject`` applies the backoff policy, which reads the popped
``sqs_message``: KeyError, and the worker's main process stops with "Unrecoverable error:
KeyError('sqs_message')", taking every other in-flight task with it (observed with kombu
5.7.0 and Celery 5.7.0; no upstream kombu issue for this path was found, kombu#1824 reports
a KeyError from the same backoff policy). Here a requeue is the same as a failed attempt: the
message stays in the queue, its visibility is set to the backoff delay for its receive count
(``backoff_policy``, the delay a failed attempt gets), nothing is sent, nothing is fatal, and
the receive count keeps growing, so a message that kills its child on every delivery reaches
the DLQ after ``maxReceiveCount``. One WARNING line says so: ``returned message id=...
attempt=... outcome=requeued ...``.

**Back later, on purpose.** A task that cannot run *now* (no SES send slot before its time
limit) raises ``ReturnLater(reason, delay)``: its message goes back to the queue for
``delay`` seconds instead of the backoff delay, without a failure being logged. It is still
a receive, as every delivery is. Tasks opt in with ``Request=SqsRequest``, which passes the
delay from the pool child's exception to the QoS in the worker's main process.

Settings select them: ``CELERY_WORKER_CONSUMER`` and ``CELERY_BROKER_TRANSPORT``.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from typing import Any

from billiard.einfo import ExceptionWithTraceback
from celery import signals
from celery.exceptions import Reject
from celery.worker.consumer import Consumer
from celery.worker.request import Request
from kombu.message import Message
from kombu.transport import SQS

from shop.aws.sqs.envelope import EnvelopeError, kombu_envelope_check
from shop.observability.logging import task_message_note

logger = logging.getLogger(__name__)


# --- kombu: the SQS transport ------------------------------------------------------------


class PoisonTolerantQoS(SQS.QoS):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        #: Delivery tag -> seconds: a rejected message to return after this delay instead
        #: of the backoff policy's (``ReturnLater``).
        self._return_delays: dict[str, int] = {}

    def return_after(self, delivery_tag: str, seconds: int) -> None:
        """When this delivery is rejected, make it visible again after ``seconds``."""
        self._return_delays[delivery_tag] = seconds

    def reject(self, delivery_tag: str, requeue: bool = False) -> None:
        if requeue:
            # Not kombu's requeue (``_restore`` -> ``_put``, see the module's docstring): the
            # message stays where it is, in flight, and comes back after the backoff delay.
            with contextlib.suppress(KeyError):  # not delivered here: nothing to say
                _log_returned(self.get(delivery_tag))
        try:
            super().reject(delivery_tag, requeue=False)
        finally:
            self._return_delays.pop(delivery_tag, None)

    def apply_backoff_policy(
        self, routing_key: str, delivery_tag: str, backoff_policy: Any, backoff_tasks: Any
    ) -> None:
        seconds = self._return_delays.pop(delivery_tag, None)
        if seconds is None:
            return super().apply_backoff_policy(
                routing_key, delivery_tag, backoff_policy, backoff_tasks
            )
        message = self.get(delivery_tag)
        self.channel.sqs(queue=routing_key).change_message_visibility(
            QueueUrl=message.delivery_info["sqs_queue"],
            ReceiptHandle=delivery_tag,
            VisibilityTimeout=seconds,
        )
        return None

    def extract_task_name_and_number_of_retries(self, delivery_tag: str) -> tuple[Any, Any]:
        # kombu offers no public way to the delivered message here (the virtual QoS keeps it
        # in ``_delivered``), nor a guard for a message without a task header: kombu#1824
        # (https://github.com/celery/kombu/issues/1824) reports the backoff policy's KeyError.
        headers = self._delivered[delivery_tag].headers
        if not isinstance(headers, dict) or not headers.get("task"):
            return None, None  # no task, no backoff policy (kombu would raise KeyError)
        return super().extract_task_name_and_number_of_retries(delivery_tag)


class PoisonTolerantChannel(SQS.Channel):
    QoS = PoisonTolerantQoS

    def _envelope_payload(self, payload, raw_text, message, q_url):
        # A private hook of kombu's SQS channel: kombu has no supported extension point to
        # check a message before it builds one from it, kombu#2421
        # (https://github.com/celery/kombu/issues/2421, a non-Celery message stops the worker).
        if "properties" in payload and not self._is_kombu_message(payload):
            # kombu passes anything else on as plain text, which Celery rejects as an
            # unknown message; a broken envelope would raise inside kombu instead.
            payload = {}
        return super()._envelope_payload(payload, raw_text, message, q_url)

    def _is_kombu_message(self, payload: dict) -> bool:
        """Whether kombu can build, acknowledge and reject a message from this envelope."""
        try:
            kombu_envelope_check(payload)
        except EnvelopeError:
            return False
        routing_key = payload["properties"].get("delivery_info", {}).get("routing_key")
        # kombu acknowledges and rejects with the client of the queue named here, and raises
        # for a queue that is not predefined.
        return (
            routing_key is None
            or not self.predefined_queues
            or (routing_key in self.predefined_queues)
        )


class PoisonTolerantTransport(SQS.Transport):
    Channel = PoisonTolerantChannel


# --- Celery: the worker's consumer and requests -------------------------------------------


class ReturnLater(Reject):
    """Raised by a task (``Request=SqsRequest``) that cannot run now: its message returns to
    the queue after ``delay`` seconds instead of the backoff delay. Not a failure; still a
    receive."""

    def __init__(self, reason: str, delay: int) -> None:
        super().__init__(reason, requeue=False)
        self.delay = delay
        self.args = (reason, delay)  # pickled from the pool child to the main process


class SqsRequest(Request):
    """Celery's request (worker main process), passing a ``ReturnLater`` delay to the QoS and
    noting the ids its message names for Celery's own log lines about it
    (``shop.observability.logging``)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        task_message_note(task_id=self.id, kwargs=self.kwargs)

    def on_failure(self, exc_info: Any, send_failed_event: bool = True, return_ok: bool = False):
        exc = exc_info.exception
        if isinstance(exc, ExceptionWithTraceback):
            exc = exc.exc
        qos = getattr(self.message.channel, "qos", None)
        if isinstance(exc, ReturnLater) and isinstance(qos, PoisonTolerantQoS):
            qos.return_after(self.message.delivery_tag, int(exc.delay))
        return super().on_failure(
            exc_info, send_failed_event=send_failed_event, return_ok=return_ok
        )


class PoisonTolerantConsumer(Consumer):
    """Celery's consumer, rejecting (never deleting, never dying on) poison messages."""

    def create_task_handler(self, *args: Any, **kwargs: Any) -> Callable[[Message], Any]:
        on_task_received = super().create_task_handler(*args, **kwargs)
        connection_errors = self.connection_errors

        def on_task_received_or_reject(message: Message) -> Any:
            try:
                return on_task_received(message)
            except connection_errors:
                raise  # the consumer reconnects, as usual
            except Exception as exc:
                if message.acknowledged:
                    raise
                # e.g. a task body of the wrong shape: Celery's Request raises ValueError or
                # TypeError here, which would stop the worker.
                return self.on_invalid_task(None, message, exc)

        return on_task_received_or_reject

    def on_decode_error(self, message: Message, exc: Exception) -> None:
        # Celery acknowledges the message "so it doesn't enter a loop"; on SQS that loop ends
        # after maxReceiveCount receives, and acknowledging would delete it.
        _log_rejected(message, f"cannot decode the {message.content_type} body: {exc!r}")
        message.reject_log_error(logger, self.connection_errors)
        signals.task_rejected.send(sender=self, message=message, exc=exc)

    def on_unknown_message(self, body: Any, message: Message) -> None:
        # Instead of Celery's WARNING "Received and deleted unknown message": it is not deleted.
        _log_rejected(message, "not a Celery task message")
        message.reject_log_error(logger, self.connection_errors)
        signals.task_rejected.send(sender=self, message=message, exc=None)

    def on_unknown_task(self, body: Any, message: Message, exc: Exception) -> None:
        super().on_unknown_task(body, message, exc)  # logs Celery's ERROR, rejects
        _log_rejected(message, "unregistered task")

    def on_invalid_task(self, body: Any, message: Message, exc: Exception) -> None:
        super().on_invalid_task(body, message, exc)  # logs Celery's ERROR, rejects
        _log_rejected(message, f"invalid task message: {exc!r}")


def _sqs_attributes(message: Any) -> tuple[str, str]:
    """(MessageId, ApproximateReceiveCount) of a kombu message, "?" where unknown."""
    delivery_info = getattr(message, "delivery_info", None) or {}
    sqs_message = delivery_info.get("sqs_message") or {}
    return (
        sqs_message.get("MessageId", "?"),
        (sqs_message.get("Attributes") or {}).get("ApproximateReceiveCount", "?"),
    )


def _log_returned(message: Any) -> None:
    message_id, attempt = _sqs_attributes(message)
    headers = getattr(message, "headers", None)
    logger.warning(
        "returned message id=%s attempt=%s task=%s outcome=requeued reason=the worker lost "
        "the task (pool child died, or hard time limit): a failed attempt, back after the "
        "backoff delay (SQS moves it to the dead-letter queue after maxReceiveCount receives)",
        message_id,
        attempt,
        headers.get("task", "-") if isinstance(headers, dict) else "-",
    )


def _log_rejected(message: Message, reason: str) -> None:
    message_id, attempt = _sqs_attributes(message)
    headers = message.headers if isinstance(message.headers, dict) else {}
    logger.error(
        "poison message id=%s attempt=%s task=%s outcome=rejected reason=%s "
        "(SQS moves it to the dead-letter queue after maxReceiveCount receives)",
        message_id,
        attempt,
        headers.get("task", "-"),
        reason,
    )
