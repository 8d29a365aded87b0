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
- Wait on the event (``tests.pipeline.wait_for`` over a queue count, a row, a log line) with
  a generous timeout; never a fixed sleep.
- A test that starts another process carries ``@pytest.mark.subprocess`` (``make check``
  skips those); ``worker`` and ``browser`` tests carry their own marker too. One without it
  fails where it starts the process (an audit hook watches, below).
"""

from __future__ import annotations

import contextlib
import sys
import time
import uuid
from dataclasses import dataclass
from decimal import Decimal

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from django.conf import settings
from django.core.cache import cache
from django.test import override_settings
from rest_framework.test import APIClient

from orders.models import Product
from shop import cognito, provisioning
from tests.aws_emulator import TEST_QUEUE_NAME, TEST_VISIBILITY_TIMEOUT
from tests.pipeline import DLQ_URL, sqs

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


@dataclass(frozen=True)
class QueuePair:
    url: str
    dlq_url: str
    visibility_timeout: int


def queue_pair_reset(visibility_timeout: int = TEST_VISIBILITY_TIMEOUT) -> QueuePair:
    """Delete the order queue and its DLQ and create them again, empty, under the same names.

    The emulator allows that at once (SQS itself would refuse the names for 60 s) and, unlike
    a drain, it also drops messages in flight. The DLQ is created first: SQS redrives to the
    new one.
    """
    client = sqs()
    for url in (settings.ORDER_QUEUE_URL, DLQ_URL):
        with contextlib.suppress(client.exceptions.QueueDoesNotExist):
            client.delete_queue(QueueUrl=url)
    plan = provisioning.Plan(queue_name=TEST_QUEUE_NAME, visibility_timeout=visibility_timeout)
    url, dlq_url = provisioning.queues_provision(client, plan, [])
    assert (url, dlq_url) == (settings.ORDER_QUEUE_URL, DLQ_URL), "the test queues moved"
    return QueuePair(url, dlq_url, visibility_timeout)


@pytest.fixture
def queues(request) -> QueuePair:
    """The order queue and its DLQ, new and empty for this test (see the module docstring)."""
    marker = request.node.get_closest_marker("visibility_timeout")
    return queue_pair_reset(int(marker.args[0]) if marker else TEST_VISIBILITY_TIMEOUT)


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


def emulator_token(email: str = provisioning.VERIFIED_CUSTOMER) -> str:
    """A real ID token from the emulator's Cognito (USER_PASSWORD_AUTH)."""
    return cognito.id_token_obtain(email=email, password=provisioning.DEMO_PASSWORD)


@pytest.fixture
def alice_token() -> str:
    return emulator_token(provisioning.VERIFIED_CUSTOMER)


@pytest.fixture
def bob_token() -> str:
    return emulator_token(provisioning.UNVERIFIED_CUSTOMER)


def auth(token: str) -> dict[str, str]:
    return {"HTTP_AUTHORIZATION": f"Bearer {token}"}


@pytest.fixture
def alice(api_client, alice_token) -> APIClient:
    api_client.credentials(**auth(alice_token))
    return api_client


def make_product(
    *, sku: str | None = None, price: str = "10.00", stock: int = 10, is_active: bool = True
) -> Product:
    return Product.objects.create(
        sku=sku or f"SKU-{uuid.uuid4().hex[:8]}",
        name=f"Product {sku or ''}".strip(),
        price=Decimal(price),
        stock=stock,
        is_active=is_active,
    )


def order_body(*items: tuple[str, int], **address) -> dict:
    return {
        "shipping_address": {
            "name": "Alice Example",
            "line1": "1 Main Street",
            "city": "Springfield",
            "postal_code": "12345",
            "country": "US",
            **address,
        },
        "items": [{"sku": sku, "quantity": quantity} for sku, quantity in items],
    }


# --- forged tokens --------------------------------------------------------------------


@pytest.fixture(scope="session")
def attacker_key():
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def id_claims(**overrides) -> dict:
    now = int(time.time())
    claims = {
        "sub": str(uuid.uuid4()),
        "email": "mallory@example.com",
        "email_verified": True,
        "iss": settings.COGNITO_ISSUER,
        "aud": settings.COGNITO_APP_CLIENT_ID,
        "token_use": "id",
        "iat": now,
        "auth_time": now,
        "exp": now + 3600,
    }
    claims.update(overrides)
    return {k: v for k, v in claims.items() if v is not None}


def sign(claims: dict, key, *, kid: str = "dummy", alg: str = "RS256") -> str:
    return jwt.encode(claims, key, algorithm=alg, headers={"kid": kid})


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


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(items):
    """The longest tests first, so that xdist does not start them last: those that start
    processes and use no database, the tiny benchmarks first of all. pytest-django has put
    the database tests in Django's order; tests without a database can go anywhere."""

    def rank(item) -> tuple[bool, bool]:
        no_db = not item.get_closest_marker("django_db") and not (
            _DB_FIXTURES & set(getattr(item, "fixturenames", ()))
        )
        early = no_db and item.get_closest_marker("subprocess") is not None
        return (not early, "test_bench.py" not in item.nodeid)

    items.sort(key=rank)
