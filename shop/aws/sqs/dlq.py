"""The dead-letter queue: look at its messages, move them back to the order queue, delete.

Looking receives the messages and hands them straight back; moving sends a copy to the order
queue and deletes from the DLQ only once the send succeeded. Redriving everything uses SQS's
own StartMessageMoveTask where the endpoint has it.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError
from django.conf import settings

from shop import aws
from shop.aws.sqs.envelope import fifo_fields
from shop.aws.sqs.queues import (
    SQS_ERRORS,
    QueueUnavailable,
    calling,
    describe,
    int_attribute,
    queue_pair,
    sqs,
)

logger = logging.getLogger(__name__)

#: A message received to be looked at is hidden from other readers for this long, then handed
#: straight back (visibility 0): it "returns to the DLQ" at once.
PEEK_HOLD_SECONDS = 30
#: A message being moved or deleted is hidden this long; one that failed is handed back at once.
ACTION_HOLD_SECONDS = 120
#: At most this many messages are looked at in one peek.
PEEK_MAX = 1000
# Endpoints found without StartMessageMoveTask (moto answers HTTP 500): not asked again.
_move_task_unsupported: set[str] = set()


@dataclass(frozen=True)
class DeadLetter:
    """One message of the dead-letter queue, as received."""

    message_id: str
    body: str
    #: SQS's ApproximateReceiveCount: the order queue's receives, plus every look at the DLQ.
    receive_count: int
    sent_at: datetime | None
    #: ApproximateFirstReceiveTimestamp: the first receive, on the order queue.
    first_received_at: datetime | None
    message_attributes: dict[str, Any] = field(default_factory=dict, repr=False)
    #: A FIFO queue's MessageGroupId (the order), "" on a standard queue.
    group_id: str = ""
    receipt_handle: str = field(default="", repr=False)


@dataclass
class DlqPass:
    """What one pass over the dead-letter queue did."""

    done: list[DeadLetter] = field(default_factory=list)
    failed: list[tuple[DeadLetter, str]] = field(default_factory=list)
    #: Message ids asked for that were not in the queue (gone, or held by another reader).
    not_found: list[str] = field(default_factory=list)
    #: Why the pass ended before its work did (SQS went away half-way); "" when it did not.
    stopped: str = ""


def _timestamp(attributes: dict[str, str], name: str) -> datetime | None:
    try:
        return datetime.fromtimestamp(int(attributes[name]) / 1000, tz=UTC)
    except (KeyError, ValueError, OverflowError, OSError):
        return None


def _receive(url: str, *, count: int, hold: int) -> list[DeadLetter]:
    with calling("ReceiveMessage on the dead-letter queue"):
        response = sqs().receive_message(
            QueueUrl=url,
            MaxNumberOfMessages=max(1, min(10, count)),
            WaitTimeSeconds=settings.DLQ_RECEIVE_WAIT_SECONDS,
            VisibilityTimeout=hold,
            MessageSystemAttributeNames=["All"],
            MessageAttributeNames=["All"],
        )
    letters = []
    for message in response.get("Messages", []):
        attributes = message.get("Attributes", {})
        letters.append(
            DeadLetter(
                message_id=message["MessageId"],
                body=message.get("Body", ""),
                receive_count=int_attribute(attributes, "ApproximateReceiveCount"),
                sent_at=_timestamp(attributes, "SentTimestamp"),
                first_received_at=_timestamp(attributes, "ApproximateFirstReceiveTimestamp"),
                message_attributes=message.get("MessageAttributes") or {},
                group_id=attributes.get("MessageGroupId", ""),
                receipt_handle=message["ReceiptHandle"],
            )
        )
    return letters


def _release(url: str, receipts: dict[str, str]) -> None:
    """Make held messages visible again at once (ChangeMessageVisibilityBatch to 0)."""
    items = list(receipts.items())
    for start in range(0, len(items), 10):
        entries = [
            {"Id": str(number), "ReceiptHandle": receipt, "VisibilityTimeout": 0}
            for number, (_, receipt) in enumerate(items[start : start + 10])
        ]
        try:
            response = sqs().change_message_visibility_batch(QueueUrl=url, Entries=entries)
        except SQS_ERRORS as exc:
            logger.warning(
                "could not hand %d message(s) back to the dead-letter queue (%s); they return "
                "by themselves within %d s",
                len(entries),
                describe(exc),
                ACTION_HOLD_SECONDS,
            )
            continue
        for failure in response.get("Failed", []):
            logger.warning("could not hand a message back to the dead-letter queue: %s", failure)


def dlq_peek(*, limit: int) -> list[DeadLetter]:
    """Up to ``limit`` distinct messages of the dead-letter queue, left in it.

    Each is received (hidden for ``PEEK_HOLD_SECONDS`` so that the next receive finds another),
    then made visible again at once. Each look adds one to the messages' receive counts.
    """
    _, dlq = queue_pair()
    limit = max(0, min(limit, PEEK_MAX))
    found: dict[str, DeadLetter] = {}
    receipts: dict[str, str] = {}
    try:
        while len(found) < limit:
            batch = _receive(dlq.url, count=limit - len(found), hold=PEEK_HOLD_SECONDS)
            for letter in batch:
                receipts[letter.message_id] = letter.receipt_handle
            fresh = [letter for letter in batch if letter.message_id not in found]
            if not fresh:
                break
            for letter in fresh:
                found.setdefault(letter.message_id, letter)
    finally:
        _release(dlq.url, receipts)
    return list(found.values())[:limit]


def _dlq_pass(
    dlq_url: str,
    *,
    act: Callable[[DeadLetter], str | None],
    message_ids: Collection[str] | None,
    limit: int | None,
    on_result: Callable[[DeadLetter, str | None], None] | None,
    skip: Collection[str] = (),
) -> DlqPass:
    """Receive the DLQ's messages one batch at a time and ``act`` on the wanted ones.

    ``act`` returns None on success (the message is gone from the DLQ) or why it failed (the
    message is handed back at once). Messages not wanted, and any seen twice, are handed back
    when the pass ends. ``skip`` grows with ids to leave alone (messages this pass created).
    Raises ``QueueUnavailable`` if SQS fails before anything was done; later, it stops the pass.
    """
    wanted = set(message_ids) if message_ids is not None else None
    result = DlqPass()
    seen: set[str] = set()
    receipts: dict[str, str] = {}

    def handled() -> int:
        return len(result.done) + len(result.failed)

    try:
        while (limit is None or handled() < limit) and (wanted is None or not wanted <= seen):
            count = 10 if limit is None else limit - handled()
            batch = _receive(dlq_url, count=count, hold=ACTION_HOLD_SECONDS)
            fresh = [letter for letter in batch if letter.message_id not in seen]
            for letter in batch:
                if letter.message_id in seen:
                    receipts[letter.message_id] = letter.receipt_handle
            if not fresh:
                break
            for letter in fresh:
                seen.add(letter.message_id)
                if (
                    letter.message_id in skip
                    or (wanted is not None and letter.message_id not in wanted)
                    or (limit is not None and handled() >= limit)
                ):
                    receipts[letter.message_id] = letter.receipt_handle
                    continue
                try:
                    error = act(letter)
                except QueueUnavailable as exc:
                    error = str(exc)
                    result.stopped = error
                if error is None:
                    result.done.append(letter)
                else:
                    result.failed.append((letter, error))
                    receipts[letter.message_id] = letter.receipt_handle
                if on_result is not None:
                    on_result(letter, error)
                if result.stopped:
                    break
            if result.stopped:
                break
    except QueueUnavailable as exc:
        if not handled():
            raise
        result.stopped = str(exc)
    finally:
        _release(dlq_url, receipts)
    result.not_found = sorted(wanted - seen) if wanted is not None else []
    return result


def dlq_redrive(
    *,
    message_ids: Collection[str] | None = None,
    limit: int | None = None,
    on_result: Callable[[DeadLetter, str | None], None] | None = None,
) -> DlqPass:
    """Move messages of the DLQ back to the order queue: send (body and message attributes),
    then delete from the DLQ only once the send succeeded.

    ``message_ids`` None means every message (up to ``limit``). The copy is a new message: its
    receive count starts at zero, so the worker has the full ``maxReceiveCount`` attempts again.
    Messages this pass sent that come back to the DLQ meanwhile are left alone.
    """
    orders, dlq = queue_pair()
    created: set[str] = set()

    def move(letter: DeadLetter) -> str | None:
        request: dict[str, Any] = {"QueueUrl": orders.url, "MessageBody": letter.body}
        if letter.message_attributes:
            request["MessageAttributes"] = letter.message_attributes
        # FIFO: the same group (the order), and a FRESH deduplication id: the DLQ's copy keeps
        # the original one, and SQS would drop a copy sent with it within 5 minutes of the
        # original send as a duplicate (answering success), after which the DLQ delete loses it.
        request.update(
            fifo_fields(
                queue_url=orders.url,
                group_id=letter.group_id or "default",
                deduplication_id=uuid.uuid4().hex,
            )
        )
        try:
            created.add(sqs().send_message(**request)["MessageId"])
        except ClientError as exc:
            return f"not sent to the order queue ({describe(exc)})"
        except BotoCoreError as exc:
            raise QueueUnavailable(f"SQS SendMessage failed ({describe(exc)})") from exc
        try:
            sqs().delete_message(QueueUrl=dlq.url, ReceiptHandle=letter.receipt_handle)
        except SQS_ERRORS as exc:
            return (
                f"copied to the order queue, but not deleted from the dead-letter queue "
                f"({describe(exc)}): it is now in both"
            )
        return None

    return _dlq_pass(
        dlq.url,
        act=move,
        message_ids=message_ids,
        limit=limit,
        on_result=on_result,
        skip=created,
    )


def dlq_delete(
    *,
    message_ids: Collection[str],
    on_result: Callable[[DeadLetter, str | None], None] | None = None,
) -> DlqPass:
    """Delete the given messages (by SQS MessageId) from the dead-letter queue."""
    _, dlq = queue_pair()

    def delete(letter: DeadLetter) -> str | None:
        try:
            sqs().delete_message(QueueUrl=dlq.url, ReceiptHandle=letter.receipt_handle)
        except ClientError as exc:
            return f"not deleted ({describe(exc)})"
        except BotoCoreError as exc:
            raise QueueUnavailable(f"SQS DeleteMessage failed ({describe(exc)})") from exc
        return None

    return _dlq_pass(dlq.url, act=delete, message_ids=message_ids, limit=None, on_result=on_result)


def dlq_move_task_available() -> bool:
    """False once this process found that the endpoint has no StartMessageMoveTask."""
    return aws.endpoint_url("sqs") not in _move_task_unsupported


def _no_retry(**kwargs: Any) -> bool:
    return False  # botocore: "no retry", whatever the status


def dlq_move_task_start() -> str | None:
    """Start SQS's own redrive of the whole DLQ to the order queue (StartMessageMoveTask).

    Returns the task handle, or None where the endpoint cannot (moto answers HTTP 500: not
    implemented): then the caller moves messages itself, and this process does not ask again.
    The call is not retried, so a missing operation costs one request.
    """
    if not dlq_move_task_available():
        return None
    orders, dlq = queue_pair()
    client = sqs()
    client.meta.events.register_first(
        "needs-retry.sqs.StartMessageMoveTask", _no_retry, unique_id="shop-move-task-no-retry"
    )
    try:
        response = client.start_message_move_task(SourceArn=dlq.arn, DestinationArn=orders.arn)
    except ClientError as exc:
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0
        code = exc.response.get("Error", {}).get("Code", "")
        if status >= 500 or code in _UNSUPPORTED_CODES:
            _move_task_unsupported.add(aws.endpoint_url("sqs"))
        logger.warning(
            "StartMessageMoveTask not available (%s): moving the messages one by one",
            describe(exc),
        )
        return None
    except BotoCoreError as exc:
        raise QueueUnavailable(f"SQS StartMessageMoveTask failed ({describe(exc)})") from exc
    return response["TaskHandle"]


_UNSUPPORTED_CODES = {
    "NotImplemented",
    "InvalidAction",
    "UnsupportedOperation",
    "UnknownOperationException",
    "AccessDenied",
    "AccessDeniedException",
}
