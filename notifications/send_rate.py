"""SES's send rate for the whole fleet: one schedule of send slots in a shared store.

SES takes at most the account's ``MaxSendRate`` emails a second (GetSendQuota), across every
process that sends with the account; above it SES answers ``Throttling``. django-ses paces
each process on its own, so N processes send at N times its rate. Here every send first
takes the next slot of one schedule, ``1 / rate`` seconds after the one before:

- **PostgreSQL** (production): one row (``SendRateSlot``) holds the time of the next free
  slot, and one atomic statement takes it: ``UPDATE ... SET next_slot = GREATEST(next_slot,
  now) + 1/rate ... RETURNING``. The database's clock is the only clock (the machines' need
  not agree), the row lock lasts one statement, and a slot is taken only if it comes before
  the caller's deadline, so a caller that cannot wait that long takes nothing from the
  others. This is a token bucket without a burst (the generic cell rate algorithm): idle time
  is not saved up, so the fleet never sends faster than the rate, even right after a pause.
- **Anything else** (SQLite under ``make run``): the same schedule in the process's memory.
  Each worker process then has a rate of its own; ``describe()`` says so, and the worker logs
  it as a WARNING at startup.

The statement runs on Django's connection in autocommit, outside the send's transaction
(``notifications.sending.confirmation_send`` takes its slot before it locks the email),
so the row is never held while SES answers. Django's database cache has no atomic
increment; pyrate-limiter's PostgreSQL bucket keeps a row per acquisition behind a
connection pool of its own and answers "full" rather than "your slot is at t": one row and
one statement are all a schedule needs.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass

from django.conf import settings
from django.db import connection

from notifications.models import SendRateSlot

logger = logging.getLogger(__name__)

_TAKE = """
WITH clock AS (SELECT clock_timestamp() AS now)
UPDATE {table} AS slot
   SET next_slot = GREATEST(slot.next_slot, clock.now) + make_interval(secs => %(interval)s)
  FROM clock
 WHERE slot.name = %(name)s
   AND GREATEST(slot.next_slot, clock.now) <= clock.now + make_interval(secs => %(max_wait)s)
RETURNING EXTRACT(EPOCH FROM slot.next_slot - clock.now) - %(interval)s
"""
_ENSURE = """
INSERT INTO {table} (name, next_slot) VALUES (%(name)s, clock_timestamp())
ON CONFLICT (name) DO NOTHING
"""
_NEXT = """
SELECT EXTRACT(EPOCH FROM GREATEST(next_slot, clock_timestamp()) - clock_timestamp())
  FROM {table} WHERE name = %(name)s
"""


@dataclass(frozen=True)
class Slot:
    #: Whether a slot was taken (False: the next free one comes after the deadline).
    taken: bool
    #: Seconds from now to the slot taken, or to the next free one when none was.
    wait: float


def _shared() -> bool:
    return connection.vendor == "postgresql"


def _name() -> str:
    # SES's quota is per account and region; the endpoint keeps the tests' emulators apart.
    return f"ses:{settings.AWS_REGION}:{settings.AWS_SES_ENDPOINT_URL}"[:64]


def _take_shared(*, interval: float, max_wait: float) -> Slot:
    table = connection.ops.quote_name(SendRateSlot._meta.db_table)
    params = {"name": _name(), "interval": interval, "max_wait": max(max_wait, 0.0)}
    with connection.cursor() as cursor:
        for _ in range(3):
            cursor.execute(_TAKE.format(table=table), params)
            row = cursor.fetchone()
            if row is not None:
                return Slot(True, max(float(row[0]), 0.0))
            cursor.execute(_NEXT.format(table=table), params)
            row = cursor.fetchone()
            if row is None:
                cursor.execute(_ENSURE.format(table=table), params)  # first use (or a flush)
            elif float(row[0]) > params["max_wait"]:
                return Slot(False, float(row[0]))
            # else the row was being created by another process's first take: take again.
    raise RuntimeError("no send slot could be read or created")


class _Local:
    """The same schedule in one process's memory (no shared store)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.next_slot = 0.0

    def take(self, *, interval: float, max_wait: float) -> Slot:
        with self.lock:
            now = time.monotonic()
            slot = max(self.next_slot, now)
            if slot > now + max_wait:
                return Slot(False, slot - now)
            self.next_slot = slot + interval
            return Slot(True, slot - now)


_local = _Local()


def slot_take(*, rate: float, deadline: float) -> Slot:
    """Take the next send slot of a schedule of ``rate`` sends a second if it comes before
    ``deadline`` (``time.monotonic()``), and sleep until it. Without one, return at once
    (``taken`` False; ``wait``: how far away the next free slot is)."""
    interval = 1.0 / rate
    max_wait = deadline - time.monotonic()
    if _shared():
        slot = _take_shared(interval=interval, max_wait=max_wait)
    else:
        slot = _local.take(interval=interval, max_wait=max_wait)
    if slot.taken and slot.wait > 0:
        time.sleep(slot.wait)
    return slot


def describe(*, rate: str) -> tuple[int, str]:
    """(log level, sentence) saying how sends are paced at ``rate``, for the worker's
    startup line."""
    if _shared():
        return logging.INFO, (
            f"SES send rate: {rate} for the whole fleet, one schedule in PostgreSQL "
            f"({SendRateSlot._meta.db_table})"
        )
    return logging.WARNING, (
        f"SES send rate: {rate} PER PROCESS: no shared store ({connection.vendor} is not "
        "PostgreSQL), so N worker processes may send at N times the rate"
    )
