"""End-to-end fixtures: real worker processes (and the outbox relay that feeds them) that stop
with the test (queues: tests/conftest). The loopback SNS of the SES events webhook's tests
(tests/notifications/loopback_sns.py)."""

from __future__ import annotations

import pytest

from notifications import ses
from shop.aws import sns
from tests.notifications import loopback_sns
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


@pytest.fixture(scope="module")
def fake_sns(tmp_path_factory):
    """The loopback SNS (one per test module): its certificate and SubscribeURLs over HTTPS."""
    with loopback_sns.serve(tmp_path_factory.mktemp("fake-sns")) as server:
        yield server


@pytest.fixture
def fake_sns_trusted(fake_sns, settings, monkeypatch):
    """Trust the loopback SNS (its host, its CA, our topic); send through the emulator's SES."""
    settings.SNS_CERT_TRUSTED_DOMAINS = ["127.0.0.1"]
    settings.AWS_SNS_EVENT_TRUSTED_TOPIC_ARNS = [loopback_sns.TOPIC]
    monkeypatch.setenv("SSL_CERT_FILE", str(fake_sns.ca_file))  # OpenSSL's default CA file
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    # pytest-django swaps in locmem: these tests send through SES for real.
    settings.EMAIL_BACKEND = "django_ses.SESBackend"
    settings.SES_SANDBOX = "false"  # any recipient (the emulator has no sandbox rule)
    ses.cache_clear()  # a backend built with these settings
    sns.certificate_cache_clear()
    fake_sns.requests.clear()
    fake_sns.routes.clear()
    fake_sns.held.clear()
    fake_sns.release.clear()
    fake_sns.connections = 0
    yield
    fake_sns.release.set()
    sns.certificate_cache_clear()
    ses.cache_clear()
