"""The outbox relay: publishes committed ``OutboxMessage`` rows to SQS and SNS, in batches.

- **Claim** (``outbox_claim``): one statement takes up to ``limit`` due rows (``available_at``
  passed, no live lease) and leases them for ``OUTBOX_LEASE_SECONDS``. On PostgreSQL it is
  ``UPDATE ... WHERE id IN (SELECT ... FOR UPDATE SKIP LOCKED) RETURNING``: relays running
  at once never take the same row, and the row locks last that one statement. No lock is
  held while AWS answers; a relay that dies lets its rows go when the lease ends. SQLite
  has no SKIP LOCKED: run one relay there.
- **Publish** (``outbox_publish``): SQS tasks with ``SendMessageBatch`` (up to 10 entries,
  at most 256 KiB a call), the body exactly what the Celery worker consumes
  (``shop.aws.sqs.envelope``; on a FIFO queue MessageGroupId = the row's group (the order),
  MessageDeduplicationId = the row's id); SNS events with ``PublishBatch``. Published rows
  are deleted. An entry a batch refuses, or every entry of a call that failed, is tried
  again after an exponential back-off (``OUTBOX_RETRY_BASE_SECONDS`` doubling up to
  ``OUTBOX_RETRY_MAX_SECONDS``), ``last_error`` recorded; a refused entry goes alone in its
  calls from then on (``REFUSED``): it never holds back the others.
- **Run** (``outbox_relay_run``): waits for work, publishes it, until ``stop`` is set; the
  batch in hand is always finished. On PostgreSQL it LISTENs on ``shop_outbox`` (a trigger
  NOTIFYs on every commit that inserts rows: ``shop/migrations/0002_outbox_notify.py``), so
  it wakes at once; when more than one commit is waiting it lingers
  ``OUTBOX_LINGER_SECONDS`` to gather a fuller batch. Without a notification it looks anyway
  every ``OUTBOX_WAKE_SECONDS`` (rows whose back-off ended). On SQLite it polls every
  ``OUTBOX_POLL_SECONDS``.

``on_published(rows, queued_at)`` runs in the transaction that deletes published rows: the
caller records what it needs (the email history's "queued"). Knows no app.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError
from django.conf import settings
from django.db import DatabaseError, close_old_connections, connection, transaction
from django.utils import timezone

from shop import aws
from shop.aws import sns
from shop.aws.sqs import publish as sqs_publish
from shop.models import OutboxKind, OutboxMessage
from shop.outbox import retry_delay

logger = logging.getLogger(__name__)

#: The PostgreSQL channel the insert trigger notifies.
CHANNEL = "shop_outbox"
#: SendMessageBatch and PublishBatch take at most 10 entries and 256 KiB in all.
BATCH_MAX_ENTRIES = 10
BATCH_MAX_BYTES = 256 * 1024
#: Rows one claim takes: a few batches, published before the next claim.
CLAIM_LIMIT = 50
#: ``last_error`` of an entry a batch call refused (not of a call that failed as a whole, as
#: when SQS is unreachable): such a row goes alone in its calls from then on.
REFUSED = "refused: "

OnPublished = Callable[[Sequence[OutboxMessage], datetime], None]


@dataclass
class RelayCounts:
    claimed: int = 0
    published: int = 0
    failed: int = 0
    #: AWS calls made (SendMessageBatch, PublishBatch).
    calls: int = 0
    by_kind: dict[str, int] = field(default_factory=dict)

    def add(self, other: RelayCounts) -> None:
        self.claimed += other.claimed
        self.published += other.published
        self.failed += other.failed
        self.calls += other.calls
        for kind, n in other.by_kind.items():
            self.by_kind[kind] = self.by_kind.get(kind, 0) + n


# --- claiming -----------------------------------------------------------------------------


#: One statement: due rows without a live lease, oldest first, leased. Relays running at
#: once skip each other's locked rows; the locks last this statement only.
_CLAIM_POSTGRESQL = """
UPDATE shop_outboxmessage SET claimed_until = statement_timestamp() + make_interval(secs => %s)
WHERE id IN (
    SELECT id FROM shop_outboxmessage
    WHERE (available_at IS NULL OR available_at <= statement_timestamp())
    AND (claimed_until IS NULL OR claimed_until < statement_timestamp())
    ORDER BY id LIMIT %s FOR UPDATE SKIP LOCKED
) RETURNING *
"""
#: SQLite: the same without SKIP LOCKED (one writer at a time anyway: run one relay). The
#: due rows are read first, so an idle relay's poll takes no write lock.
_DUE_SQLITE = """
SELECT id FROM shop_outboxmessage
WHERE (available_at IS NULL OR available_at <= %s)
AND (claimed_until IS NULL OR claimed_until < %s)
ORDER BY id LIMIT %s
"""


def outbox_claim(*, limit: int = CLAIM_LIMIT) -> list[OutboxMessage]:
    """Lease up to ``limit`` due rows, oldest first, in one statement (see the module)."""
    lease = float(settings.OUTBOX_LEASE_SECONDS)
    if connection.vendor == "postgresql":
        rows = OutboxMessage.objects.raw(_CLAIM_POSTGRESQL, [lease, limit])
        return sorted(rows, key=lambda row: row.pk)
    now = timezone.now()
    with connection.cursor() as cursor:
        cursor.execute(_DUE_SQLITE, [now, now, limit])
        ids = [row_id for (row_id,) in cursor.fetchall()]
    if not ids:
        return []
    # One statement again (a second relay, or a test's pass, may have claimed them since).
    placeholders = ", ".join(["%s"] * len(ids))
    rows = OutboxMessage.objects.raw(
        "UPDATE shop_outboxmessage SET claimed_until = %s "  # noqa: S608 (placeholders only)
        f"WHERE id IN ({placeholders}) AND (claimed_until IS NULL OR claimed_until < %s) "
        "RETURNING *",
        [now + timedelta(seconds=lease), *ids, now],
    )
    return sorted(rows, key=lambda row: row.pk)


# --- publishing ---------------------------------------------------------------------------


@dataclass
class _Entry:
    row: OutboxMessage
    params: dict[str, Any]
    size: int


def _sqs_entry(row: OutboxMessage) -> _Entry:
    payload = row.payload
    params = sqs_publish.task_entry(
        entry_id=str(row.pk),
        queue_url=row.destination,
        task_name=payload["task"],
        args=tuple(payload.get("args") or ()),
        kwargs=payload.get("kwargs") or {},
        task_id=payload.get("task_id"),
        group_id=row.group_id or str(row.pk),
    )
    return _Entry(row, params, len(params["MessageBody"].encode()))


def _sns_entry(row: OutboxMessage) -> _Entry:
    payload = row.payload
    params = sns.event_entry(
        entry_id=str(row.pk),
        topic_arn=row.destination,
        message=payload["message"],
        attributes=payload.get("attributes") or {},
        group_id=row.group_id or str(row.pk),
        deduplication_id=payload.get("deduplication_id") or str(row.pk),
    )
    return _Entry(row, params, len(params["Message"].encode()))


def _batches(entries: list[_Entry]) -> Iterator[list[_Entry]]:
    """Up to 10 entries and 256 KiB a call; a row a batch refused before goes alone (a row
    whose call failed as a whole, SQS unreachable say, is batched again)."""
    batch: list[_Entry] = []
    size = 0
    for entry in entries:
        if entry.row.last_error.startswith(REFUSED):
            yield [entry]
            continue
        if batch and (len(batch) == BATCH_MAX_ENTRIES or size + entry.size > BATCH_MAX_BYTES):
            yield batch
            batch, size = [], 0
        batch.append(entry)
        size += entry.size
    if batch:
        yield batch


def _describe(exc: Exception) -> str:
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        message = " ".join(str(error.get("Message", "")).split())[:300]
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        return f"{error.get('Code') or status}: {message}".rstrip(": ")
    return f"{type(exc).__name__}: {exc}"[:500]


def _call(kind: str, destination: str, batch: list[_Entry]) -> aws.BatchAnswer:
    """One batch call, one attempt (the outbox is the retry: the rows back off and are
    published again, duplicates only on that path). Raises on a failed call."""
    entries = [entry.params for entry in batch]
    if kind == OutboxKind.SQS_TASK:
        return sqs_publish.entries_send(queue_url=destination, entries=entries)
    return sns.entries_publish(topic_arn=destination, entries=entries)


def _failed(rows: Sequence[OutboxMessage], reason: str) -> None:
    """Put failed rows back for later: attempts + 1, back-off, the reason, lease released."""
    now = timezone.now()
    for row in rows:
        attempts = row.attempts + 1
        delay = retry_delay(
            attempts=attempts,
            base=settings.OUTBOX_RETRY_BASE_SECONDS,
            maximum=settings.OUTBOX_RETRY_MAX_SECONDS,
        )
        OutboxMessage.objects.filter(pk=row.pk).update(
            attempts=attempts,
            last_error=reason[:2000],
            available_at=now + delay,
            claimed_until=None,
        )
        logger.warning(
            "outbox row=%s kind=%s attempt=%s failed, next try in %.1f s: %s",
            row.pk,
            row.kind,
            attempts,
            delay.total_seconds(),
            reason,
        )


def outbox_publish(
    *, rows: Sequence[OutboxMessage], on_published: OnPublished | None = None
) -> RelayCounts:
    """Publish claimed rows (in batches, per destination), delete those published, back off
    the others. Never raises for an AWS failure: it is the rows' ``last_error``."""
    counts = RelayCounts(claimed=len(rows))
    groups: dict[tuple[str, str], list[_Entry]] = {}
    for row in rows:
        try:
            entry = _sqs_entry(row) if row.kind == OutboxKind.SQS_TASK else _sns_entry(row)
        except Exception as exc:  # a row that cannot become a message: keep it, say why
            _failed([row], f"{REFUSED}cannot build the message: {_describe(exc)}")
            counts.failed += 1
            continue
        groups.setdefault((row.kind, row.destination), []).append(entry)
    for (kind, destination), entries in groups.items():
        for batch in _batches(entries):
            by_id = {entry.params["Id"]: entry.row for entry in batch}
            queued_at = timezone.now()  # before the call: a fast worker may answer first
            counts.calls += 1
            try:
                answer = _call(kind, destination, batch)
            except (BotoCoreError, ClientError) as exc:
                _failed(list(by_id.values()), _describe(exc))
                counts.failed += len(batch)
                continue
            published = [by_id[i] for i in answer.published if i in by_id]
            with transaction.atomic():
                OutboxMessage.objects.filter(pk__in=[row.pk for row in published]).delete()
                if on_published and published:
                    on_published(published, queued_at)
            for row_id, reason in answer.refused.items():
                if row_id in by_id:
                    _failed([by_id[row_id]], REFUSED + reason)
            counts.published += len(published)
            counts.failed += len(answer.refused)
            counts.by_kind[kind] = counts.by_kind.get(kind, 0) + len(published)
    return counts


def outbox_relay_once(
    *, on_published: OnPublished | None = None, limit: int = CLAIM_LIMIT
) -> RelayCounts:
    """One pass: claim what is due (``limit`` rows at a time) and publish it, until nothing
    due is left. Rows that fail wait for their back-off: the pass ends."""
    total = RelayCounts()
    while True:
        rows = outbox_claim(limit=limit)
        if not rows:
            return total
        total.add(outbox_publish(rows=rows, on_published=on_published))
        if len(rows) < limit:
            return total


# --- running ------------------------------------------------------------------------------


class _Poller:
    """SQLite: no notifications, a short sleep."""

    def wait(self, timeout: float, stop: threading.Event) -> int:
        stop.wait(timeout)
        return 0

    def close(self) -> None:
        pass


class _Listener:
    """PostgreSQL: LISTEN on its own connection (autocommit), so waiting holds nothing."""

    def __init__(self) -> None:
        self.conn = self._connect()

    @staticmethod
    def _connect() -> Any:
        import psycopg

        db = connection.settings_dict
        params = {
            "dbname": db["NAME"],
            "user": db.get("USER") or None,
            "password": db.get("PASSWORD") or None,
            "host": db.get("HOST") or None,
            "port": db.get("PORT") or None,
        }
        conn = psycopg.connect(
            **{k: v for k, v in params.items() if v}, autocommit=True, connect_timeout=10
        )
        conn.execute(f"LISTEN {CHANNEL}")
        return conn

    def wait(self, timeout: float, stop: threading.Event) -> int:
        """Block until a commit notifies (or ``timeout``); how many commits notified."""
        import psycopg

        try:
            woke = sum(1 for _ in self.conn.notifies(timeout=timeout, stop_after=1))
            if woke:
                woke += sum(1 for _ in self.conn.notifies(timeout=0.001))
            return woke
        except psycopg.Error as exc:  # the database restarted: listen again (and look now)
            logger.warning("outbox relay: LISTEN connection lost (%s); reconnecting", exc)
            self.conn.close()
            stop.wait(timeout)
            with contextlib.suppress(psycopg.Error):  # else the next wait fails, tries again
                self.conn = self._connect()
            return 1

    def close(self) -> None:
        self.conn.close()


def _waiter() -> _Poller | _Listener:
    return _Listener() if connection.vendor == "postgresql" else _Poller()


def outbox_relay_run(
    *,
    stop: threading.Event,
    on_published: OnPublished | None = None,
    progress: Callable[[RelayCounts], None] | None = None,
) -> RelayCounts:
    """Publish what is due, then wait for more, until ``stop`` is set (SIGTERM); the batch
    in hand is always finished first. Returns the totals."""
    total = RelayCounts()
    waiter = _waiter()  # listening before the first pass: no commit slips between the two
    timeout = (
        settings.OUTBOX_WAKE_SECONDS
        if isinstance(waiter, _Listener)
        else settings.OUTBOX_POLL_SECONDS
    )
    logger.info(
        "outbox relay started (%s)",
        f"LISTEN {CHANNEL}" if isinstance(waiter, _Listener) else f"polling every {timeout:g} s",
    )
    try:
        while not stop.is_set():
            close_old_connections()
            try:
                rows = outbox_claim()
                counts = outbox_publish(rows=rows, on_published=on_published) if rows else None
            except DatabaseError as exc:  # the database restarting, SQLite's lock...
                # Rows claimed and not deleted are published again once their lease ends.
                logger.warning("outbox relay: database error (%s); trying again", exc)
                connection.close()
                stop.wait(timeout)
                continue
            if counts:
                total.add(counts)
                if progress:
                    progress(counts)
                if len(rows) == CLAIM_LIMIT:
                    continue  # more is waiting
            woke = waiter.wait(timeout, stop)
            if woke > 1 and settings.OUTBOX_LINGER_SECONDS and not stop.is_set():
                time.sleep(settings.OUTBOX_LINGER_SECONDS)  # several commits: a fuller batch
    finally:
        waiter.close()
    return total
