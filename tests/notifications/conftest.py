"""End-to-end fixtures: real worker processes that stop with the test (queues: tests/conftest)."""

from __future__ import annotations

import pytest

from tests.pipeline import Worker, kill_all


@pytest.fixture
def workers(tmp_path, queues):
    """``workers(name, **env)`` starts a worker on this test's ``queues``; all are killed
    when it ends (a graceful stop is what test_sigterm_lets_the_running_task_finish tests)."""
    started: list[Worker] = []

    def start(name: str = "worker", *, concurrency: int = 1, **env: str) -> Worker:
        worker = Worker(tmp_path / f"{name}.log", env=env, concurrency=concurrency)
        started.append(worker.start())
        return worker

    yield start
    kill_all(started)  # at once, and with no linger: the next test's queues are new
