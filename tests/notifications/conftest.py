"""End-to-end fixtures: fresh queues, and real worker processes that stop with the test."""

from __future__ import annotations

import pytest
from django.conf import settings

from tests.pipeline import DLQ_URL, Worker, drain


@pytest.fixture
def queues():
    drain(settings.ORDER_QUEUE_URL)
    drain(DLQ_URL)
    yield
    drain(settings.ORDER_QUEUE_URL)
    drain(DLQ_URL)


@pytest.fixture
def workers(tmp_path, queues):
    started: list[Worker] = []

    def start(name: str = "worker", **env: str) -> Worker:
        worker = Worker(tmp_path / f"{name}.log", env={"AWS_SES_AUTO_THROTTLE": "0", **env})
        started.append(worker.start())
        return worker

    yield start
    for worker in started:
        worker.stop()
