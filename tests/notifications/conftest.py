"""End-to-end fixtures: real worker processes (and the outbox relay that feeds them) that stop
with the test (queues: tests/conftest)."""

from __future__ import annotations

import pytest

from tests.outbox import Relay
from tests.pipeline import ChildProcess, Worker, kill_all


@pytest.fixture
def workers(tmp_path, queues):
    """``workers(name, **env)`` starts a worker on this test's ``queues``; all are killed
    when it ends (a graceful stop is what test_sigterm_lets_the_running_task_finish tests).
    The first one also starts an outbox relay (``manage.py outbox_relay``, log
    ``relay.log``), which publishes what the test's orders wrote to the outbox, as in
    production."""
    started: list[ChildProcess] = []

    def start(name: str = "worker", *, concurrency: int = 1, **env: str) -> Worker:
        relay = None
        if not started:
            relay = Relay(tmp_path / "relay.log")
            relay.start(wait=False)  # starts while the worker does
            started.append(relay)
        worker = Worker(tmp_path / f"{name}.log", env=env, concurrency=concurrency)
        started.append(worker.start())
        if relay:
            relay.wait_started()
        return worker

    yield start
    kill_all(started)  # at once, and with no linger: the next test's queues are new
