"""Fixtures every suite shares. The conventions of the test suite (README "Tests"):

- Each xdist worker has its own emulator and database (tests/aws_emulator.py); a test may use
  both freely, nothing else runs on them at the same time.
- ``queues``: the order queue and its DLQ, recreated EMPTY for the test (same names and URLs,
  so ``settings.ORDER_QUEUE_URL`` and ``tests.pipeline.DLQ_URL`` stay right), with a visibility
  timeout of ``TEST_VISIBILITY_TIMEOUT`` (2 s) unless the test says otherwise:
  ``@pytest.mark.visibility_timeout(10)`` for a test that holds a message longer than that
  while a second consumer could receive it; ``(1)`` for one that waits for redeliveries.
  Messages still in flight from an earlier test, or a stopped worker's last long poll, stay
  with the queue objects that were deleted: they cannot reach this test.
- Test data: rows from the factories of tests/factories.py, other shared helpers from
  tests/helpers.py and tests/pipeline.py; this file holds fixtures and hooks only, and no
  test module imports another (tests/test_layout.py checks both).
- Wait on the event (``tests.pipeline.wait_for`` over a queue count, a row, a log line) with
  a generous timeout; never a fixed sleep.
- A test that starts another process carries ``@pytest.mark.subprocess`` (``make check``
  skips those); ``worker`` and ``browser`` tests carry their own marker too. One without it
  fails where it starts the process (an audit hook watches, below).
"""

from __future__ import annotations

import contextlib
import sys

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from django.core.cache import cache
from django.test import override_settings
from rest_framework.test import APIClient

from shop.aws import cognito, provisioning
from tests.aws_emulator import TEST_QUEUE_NAME, TEST_VISIBILITY_TIMEOUT
from tests.helpers import auth, emulator_token
from tests.pipeline import QueuePair, queue_pair_reset, sqs

# --- processes only where the marker says so -----------------------------------------------

#: Python's audit events for starting a program or a copy of this process.
_SPAWN_EVENTS = {"subprocess.Popen", "os.system", "os.posix_spawn", "os.spawn", "os.exec"}
_SPAWN_EVENTS |= {"os.fork", "os.forkpty"}


class UnmarkedProcess(RuntimeError):
    """A test without ``@pytest.mark.subprocess`` tried to start a process."""


class _Spawning:
    #: The running test, when it may not start processes (None: it may, or no test runs).
    refused_to: str | None = None


def _audit(event: str, args: tuple) -> None:
    # sys.addaudithook is Python's public way to watch process creation; a hook cannot be
    # removed, so it only looks at whether the running test may start one.
    if _Spawning.refused_to and event in _SPAWN_EVENTS:
        raise UnmarkedProcess(
            f"{_Spawning.refused_to} starts a process ({event} {args[0]!r}) but is not marked "
            "@pytest.mark.subprocess (make check would run it)"
        )


sys.addaudithook(_audit)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item, nextitem):
    _Spawning.refused_to = None if item.get_closest_marker("subprocess") else item.nodeid
    try:
        return (yield)
    finally:
        _Spawning.refused_to = None


# --- the order queue pair -----------------------------------------------------------------


@pytest.fixture
def queues(request) -> QueuePair:
    """The order queue and its DLQ, new and empty for this test (see the module docstring)."""
    marker = request.node.get_closest_marker("visibility_timeout")
    return queue_pair_reset(int(marker.args[0]) if marker else TEST_VISIBILITY_TIMEOUT)


@pytest.fixture
def fifo_queues() -> tuple[str, str]:
    """A FIFO order queue and its FIFO DLQ, new and empty, with a 1 s visibility timeout."""
    client = sqs()
    base = f"{TEST_QUEUE_NAME}-fifo"
    for name in (f"{base}.fifo", f"{base}-dlq.fifo"):
        with contextlib.suppress(client.exceptions.QueueDoesNotExist):
            client.delete_queue(QueueUrl=client.get_queue_url(QueueName=name)["QueueUrl"])
    plan = provisioning.Plan(queue_name=base, fifo=True, visibility_timeout=1)
    url, dlq_url = provisioning.queues_provision(client, plan, [])
    assert url.endswith(f"/{base}.fifo") and dlq_url.endswith(f"/{base}-dlq.fifo")
    return url, dlq_url


@pytest.fixture
def api_client() -> APIClient:
    return APIClient()


@pytest.fixture(scope="session", autouse=True)
def _fast_password_hasher():
    """Staff users are made with a password hashed by a fast hasher, as Django's testing docs
    advise: PBKDF2's million iterations cost each ``create_user`` about half a second of CPU
    (a tenth of ``make check``). No test is about the hasher; processes a test starts keep
    the production hashers (their tests log in with ``force_login``, which hashes nothing)."""
    with override_settings(PASSWORD_HASHERS=["django.contrib.auth.hashers.MD5PasswordHasher"]):
        yield


@pytest.fixture(autouse=True)
def _fresh_caches():
    """Each test starts with empty rate-limit counters."""
    cache.clear()
    yield
    cache.clear()


@pytest.fixture(autouse=True)
def _fresh_key_cache():
    """Each test starts with an empty JWKS cache, as a new process would."""
    cognito.key_sets_clear()
    yield
    cognito.key_sets_clear()


@pytest.fixture
def alice_token() -> str:
    return emulator_token(provisioning.VERIFIED_CUSTOMER)


@pytest.fixture
def bob_token() -> str:
    return emulator_token(provisioning.UNVERIFIED_CUSTOMER)


@pytest.fixture
def alice(api_client, alice_token) -> APIClient:
    api_client.credentials(**auth(alice_token))
    return api_client


# --- forged tokens --------------------------------------------------------------------


@pytest.fixture(scope="session")
def attacker_key():
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def pytest_terminal_summary(terminalreporter):
    """The browser tests' screenshots (tests/browser/conftest.py), from every xdist worker."""
    shots = sorted(
        {
            value
            for reports in terminalreporter.stats.values()
            for report in reports
            for name, value in getattr(report, "user_properties", ())
            if name == "screenshot"
        }
    )
    if shots:
        terminalreporter.write_sep("-", f"browser screenshots ({len(shots)})")
        for path in shots:
            terminalreporter.write_line(path)


#: Fixtures that give a test the database (pytest-django's ordering looks at the same ones).
_DB_FIXTURES = {"db", "transactional_db", "live_server"}


#: The tiny benchmarks (tests/test_bench.py), longest first: each is one test of 20-80 s.
_BENCHES_LONGEST_FIRST = ("worker_bench", "outbox_bench", "http_bench", "ses_bench", "micro")


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(items):
    """The longest tests first, so that xdist does not start them last: those that start
    processes and use no database, the tiny benchmarks first of all, longest first. pytest-django
    has put the database tests in Django's order; tests without a database can go anywhere.

    The Makefile hands tests to xdist's processes one at a time (``--maxschedchunk 1``): by
    default each process is first sent a run of consecutive tests (a quarter of its share),
    and the first run held every benchmark, so one process ran them one after the other."""

    def rank(item) -> tuple[bool, int]:
        no_db = not item.get_closest_marker("django_db") and not (
            _DB_FIXTURES & set(getattr(item, "fixturenames", ()))
        )
        early = no_db and item.get_closest_marker("subprocess") is not None
        bench = next(
            (n for n, name in enumerate(_BENCHES_LONGEST_FIRST) if f"[{name}]" in item.nodeid),
            len(_BENCHES_LONGEST_FIRST),
        )
        return (not early, bench)

    items.sort(key=rank)
