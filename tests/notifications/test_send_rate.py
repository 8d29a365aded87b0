"""The fleet's SES send schedule: one slot per send, taken atomically, never past a deadline."""

from __future__ import annotations

import threading

import pytest
from django.db import connection, connections

from notifications import send_rate

pytestmark = pytest.mark.django_db(transaction=True)


def _race(take, *, threads: int, each: int) -> list[send_rate.Slot]:
    barrier = threading.Barrier(threads)
    slots: list[send_rate.Slot] = []
    lock = threading.Lock()

    def run() -> None:
        try:
            barrier.wait()
            for _ in range(each):
                slot = take()
                with lock:
                    slots.append(slot)
        finally:
            connections.close_all()

    workers = [threading.Thread(target=run) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
    return slots


def _spacing_ok(slots: list[send_rate.Slot], interval: float) -> bool:
    """The taken slots are 0, 1, 2... intervals from now: each one once (less the few
    milliseconds the takes themselves last)."""
    waits = sorted(slot.wait for slot in slots if slot.taken)
    return all(abs(wait - n * interval) < interval / 2 for n, wait in enumerate(waits))


@pytest.mark.postgres
@pytest.mark.skipif(connection.vendor != "postgresql", reason="the shared schedule is PostgreSQL's")
def test_concurrent_takes_from_many_connections_get_one_slot_each():
    slots = _race(lambda: send_rate._take_shared(interval=1.0, max_wait=10.0), threads=8, each=3)
    taken = [slot for slot in slots if slot.taken]
    # 11 slots fit in 10 s (now, +1 s ... +10 s); the other takes got none and took none.
    assert len(taken) == 11
    assert _spacing_ok(taken, 1.0)
    assert all(9.0 < slot.wait <= 11.0 for slot in slots if not slot.taken), slots
    # Nothing was taken by the refused ones: the next slot is still the 12th.
    assert 10.5 < send_rate._take_shared(interval=1.0, max_wait=60.0).wait <= 11.0


def test_the_per_process_schedule_does_the_same_in_memory():
    schedule = send_rate._Local()
    slots = _race(lambda: schedule.take(interval=1.0, max_wait=10.0), threads=8, each=3)
    assert len([slot for slot in slots if slot.taken]) == 11
    assert _spacing_ok(slots, 1.0)


def test_slot_take_waits_for_its_slot():
    first = send_rate.slot_take(rate=2.0, deadline=send_rate.time.monotonic() + 5)
    second = send_rate.slot_take(rate=2.0, deadline=send_rate.time.monotonic() + 5)
    third = send_rate.slot_take(rate=2.0, deadline=send_rate.time.monotonic() + 0.1)
    assert first.taken and second.taken and not third.taken
    assert 0.3 < second.wait <= 0.5  # it slept until half a second after the first slot
    assert third.wait > 0.1  # the next free slot is past its deadline: nothing taken
