"""End-to-end fixtures: real worker processes that stop with the test (queues: tests/conftest)."""

from __future__ import annotations

import pytest

from tests.pipeline import Worker, stop_all


@pytest.fixture
def workers(tmp_path, queues):
    """``workers(name, **env)`` starts a worker on this test's ``queues``; all stop with it."""
    started: list[Worker] = []

    def start(name: str = "worker", *, concurrency: int = 1, **env: str) -> Worker:
        worker = Worker(tmp_path / f"{name}.log", env=env, concurrency=concurrency)
        started.append(worker.start())
        return worker

    yield start
    stop_all(started)  # at once, and with no linger: the next test's queues are new
