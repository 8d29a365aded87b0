"""Operating the dead-letter queue: look at it, redrive messages to the order queue, delete.

Staff (admin pages) and operators (management commands) call these. SQS is reached through
``shop.aws.sqs`` only; each message moved or deleted leaves an entry in its order's
email history (``redriven`` / ``deleted``, with who asked).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime

from django.db.models import Q

from notifications.models import EmailEventKind, EmailKind, OrderEmail
from notifications.services import email_event_record
from shop.aws import sqs

logger = logging.getLogger(__name__)

#: ``progress(message_id, order_id, outcome, detail)``; outcome "moved", "deleted" or "failed".
Progress = Callable[[str, int | None, str, str], None]


@dataclass(frozen=True)
class DeadLetterRow:
    message_id: str
    order_id: int | None
    task: str | None
    #: Why the worker cannot run it (a poison message); "" for a readable confirmation.
    problem: str
    customer_email: str
    email_status: str
    last_error: str
    receive_count: int
    first_seen: datetime | None
    sent_at: datetime | None
    #: The email the message is for (its kind: confirmation, shipped, cancelled).
    email_kind: str = ""
    email_id: int | None = None


@dataclass
class DeadLetterResult:
    #: Messages moved back to the order queue (redrive) or deleted (delete).
    done: int = 0
    failed: int = 0
    #: Asked for by id but not in the queue (already gone, or held by another reader).
    not_found: int = 0
    failures: list[tuple[str, str]] = field(default_factory=list)
    #: Set when SQS's own move task (StartMessageMoveTask) does the redrive; ``done`` is then
    #: the number of messages seen in the queue when it started.
    task_handle: str | None = None
    #: Why the run ended early (SQS went away half-way); "" when it did not.
    stopped: str = ""

    @property
    def ok(self) -> bool:
        """Everything asked for was done."""
        return not (self.failed or self.not_found or self.stopped)


def queue_health() -> list[sqs.QueueStats]:
    """The order queue and its DLQ as SQS counts them; raises ``sqs.QueueUnavailable``."""
    return sqs.queue_stats()


def dlq_list(*, limit: int = 100) -> list[DeadLetterRow]:
    """Up to ``limit`` messages of the DLQ, oldest first, with their order's email record.

    Messages stay in the queue. Poison messages are listed too, with ``order_id`` None.
    """
    letters = sqs.dlq_peek(limit=limit)
    decoded = {letter.message_id: sqs.message_decode(letter.body) for letter in letters}
    records = _records(decoded.values())
    rows = []
    for letter in letters:
        message = decoded[letter.message_id]
        record = records.get(_key(message))
        problem = message.problem
        if _key(message) is not None and record is None:
            problem = "no such order" if message.order_id is not None else "no such email"
        rows.append(
            DeadLetterRow(
                message_id=letter.message_id,
                order_id=record.order_id if record else message.order_id,
                task=message.task,
                problem=problem,
                customer_email=record.order.customer_email if record else "",
                email_status=record.status if record else "",
                last_error=record.last_error if record else "",
                receive_count=letter.receive_count,
                first_seen=letter.first_received_at,
                sent_at=letter.sent_at,
                email_kind=record.kind if record else "",
                email_id=record.pk if record else message.email_id,
            )
        )
    rows.sort(key=lambda row: (row.sent_at is None, row.sent_at or datetime.min))
    return rows


def _key(message: sqs.DecodedMessage) -> tuple[str, int] | None:
    """Which record a message names: its email id, or (first version) its order's
    confirmation."""
    if message.email_id is not None:
        return ("email", message.email_id)
    if message.order_id is not None:
        return ("order", message.order_id)
    return None


def _records(messages: Iterable[sqs.DecodedMessage]) -> dict[tuple[str, int], OrderEmail]:
    keys = {key for key in map(_key, messages) if key is not None}
    email_ids = {i for kind, i in keys if kind == "email"}
    order_ids = {i for kind, i in keys if kind == "order"}
    found = OrderEmail.objects.filter(
        Q(pk__in=email_ids) | Q(order_id__in=order_ids, kind=EmailKind.CONFIRMATION)
    ).select_related("order")
    records: dict[tuple[str, int], OrderEmail] = {}
    for record in found:
        if record.pk in email_ids:
            records[("email", record.pk)] = record
        if record.kind == EmailKind.CONFIRMATION and record.order_id in order_ids:
            records[("order", record.order_id)] = record
    return records


def _recorder(
    *, kind: str, outcome: str, actor: str, progress: Progress | None, detail: str
) -> Callable[[sqs.DeadLetter, str | None], None]:
    def record(letter: sqs.DeadLetter, error: str | None) -> None:
        message = sqs.message_decode(letter.body)
        email = _records([message]).get(_key(message))
        order_id = email.order_id if email else message.order_id
        if error is None and email is not None:
            email_event_record(
                email_id=email.pk,
                kind=kind,
                detail=f"SQS message {letter.message_id} {detail}",
                actor=actor,
                attempt=letter.receive_count or None,
            )
        logger.info(
            "dead-letter message id=%s order=%s outcome=%s actor=%s%s",
            letter.message_id,
            order_id,
            outcome if error is None else "failed",
            actor or "-",
            f" reason={error}" if error else "",
        )
        if progress is not None:
            progress(
                letter.message_id, order_id, outcome if error is None else "failed", error or ""
            )

    return record


def _result(run: sqs.DlqPass) -> DeadLetterResult:
    return DeadLetterResult(
        done=len(run.done),
        failed=len(run.failed),
        not_found=len(run.not_found),
        failures=[(letter.message_id, error) for letter, error in run.failed],
        stopped=run.stopped,
    )


def _ids(message_ids: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(str(message_id) for message_id in message_ids))


def dlq_redrive(
    *,
    message_ids: Iterable[str] | None = None,
    limit: int | None = None,
    actor: str = "",
    progress: Progress | None = None,
) -> DeadLetterResult:
    """Move messages from the DLQ back to the order queue, where the worker tries them again.

    ``message_ids`` None means all (up to ``limit``). The whole queue with no limit goes
    through SQS's own move task where the endpoint has one; elsewhere (moto) each message is
    sent to the order queue and deleted from the DLQ only once the send succeeded, so a failed
    send leaves it in the DLQ. Raises ``sqs.QueueUnavailable`` when SQS cannot be reached.
    """
    record = _recorder(
        kind=EmailEventKind.REDRIVEN,
        outcome="moved",
        actor=actor,
        progress=progress,
        detail="moved back to the order queue",
    )
    if message_ids is None and limit is None and sqs.dlq_move_task_available():
        # The move task reports no messages: look first, to know the orders it concerns.
        letters = sqs.dlq_peek(limit=sqs.PEEK_MAX)
        handle = sqs.dlq_move_task_start()
        if handle is not None:
            for letter in letters:
                record(letter, None)
            return DeadLetterResult(done=len(letters), task_handle=handle)
    ids = _ids(message_ids) if message_ids is not None else None
    run = sqs.dlq_redrive(message_ids=ids, limit=limit, on_result=record)
    return _result(run)


def dlq_delete(
    *, message_ids: Iterable[str], actor: str = "", progress: Progress | None = None
) -> DeadLetterResult:
    """Delete messages (by SQS MessageId) from the DLQ for good; their emails stay as they are.

    Raises ``sqs.QueueUnavailable`` when SQS cannot be reached.
    """
    ids = _ids(message_ids)
    if not ids:
        return DeadLetterResult()
    record = _recorder(
        kind=EmailEventKind.DELETED,
        outcome="deleted",
        actor=actor,
        progress=progress,
        detail="deleted from the dead-letter queue",
    )
    return _result(sqs.dlq_delete(message_ids=ids, on_result=record))
