"""pytest plugin: each test process's own AWS emulator (moto's server) on a loopback port.

Loaded with ``-p tests.aws_emulator`` (pyproject.toml), so it runs before pytest-django reads
the settings: the emulator is started and provisioned first, and the environment that
settings, Celery's producer and every child process (worker, web server) read already names
it. The emulator is ``scripts.emulator``'s (the harness of the tests, the benchmarks and
``make run``). Nothing of a developer's own emulator (``make run``) is touched.

Under pytest-xdist (``make test`` runs ``-n 2``) every xdist worker is such a process, with
its own emulator (log ``var/test-moto-<gw0, gw1...>.log``), its own queues and, through
pytest-django, its own test database (``test_<name>_gw0``...): tests on different xdist
workers share nothing. The xdist controller runs no test and starts no emulator.
"""

from __future__ import annotations

import atexit
import os
from pathlib import Path

import pytest

from scripts.emulator import CREDENTIALS, Emulator

ROOT = Path(__file__).resolve().parent.parent
#: The order queue's visibility timeout in tests, in seconds: short, so that a message that is
#: rejected (poison) or whose worker was killed comes back at once. A test whose message is
#: held longer than this while another consumer could receive it asks for a longer one with
#: ``@pytest.mark.visibility_timeout(10)`` (the ``queues`` fixture, tests/conftest.py).
#: The task time limits below stay above it: the production rule (time limit below the
#: visibility timeout, docs/celery-sqs.md) is checked on the template, not on these queues.
TEST_VISIBILITY_TIMEOUT = 2
#: The order queue's name (its DLQ: ``<name>-dlq``), on every xdist worker's own emulator.
TEST_QUEUE_NAME = "test-orders"
TEST_ENV = {
    **CREDENTIALS,
    "COGNITO_REQUIRE_EMAIL_VERIFIED": "false",
    "CONFIRMATION_RETRY_DELAYS": "1,1,1",
    # The emulator answers a short poll exactly; each DLQ pass would end with a 1 s wait.
    "DLQ_RECEIVE_WAIT_SECONDS": "0",
    "CELERY_TASK_SOFT_TIME_LIMIT": "6",
    "CELERY_TASK_TIME_LIMIT": "8",
    "DEFAULT_FROM_EMAIL": "shop@example.com",
    "SES_SANDBOX": "auto",
    # The emulator's quota is 1 send/s: fast enough for the tests' own fleet schedule only
    # when set. Tests of the default (the account's quota) unset it for their workers.
    "SES_MAX_SEND_RATE": "100",
    "MOTO_COGNITO_IDP_USER_POOL_ID_STRATEGY": "HASH",
    "MOTO_COGNITO_IDP_USER_POOL_CLIENT_ID_STRATEGY": "HASH",
}


#: This process's emulator: one log per xdist worker ("main" without xdist).
EMULATOR = Emulator(
    log=ROOT / "var" / f"test-moto-{os.environ.get('PYTEST_XDIST_WORKER', 'main')}.log",
    env=TEST_ENV,
)


def _xdist_controller(config) -> bool:
    """Whether this process only hands tests to xdist workers (``-n N``, N > 0)."""
    numprocesses = getattr(config.known_args_namespace, "numprocesses", None)
    return bool(numprocesses) and "PYTEST_XDIST_WORKER" not in os.environ


@pytest.hookimpl(wrapper=True)
def pytest_load_initial_conftests(early_config, parser, args):
    # Importing shop (its Celery app, as provisioning does) defaults the settings module to
    # production's: name the tests' own first (pytest-django's ini option; pytest-django
    # reads the variable before its ini option).
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", early_config.getini("DJANGO_SETTINGS_MODULE"))
    os.environ.update(TEST_ENV)
    if _xdist_controller(early_config):
        # Settings and tests/conftest.py are imported here too, but no test runs: names only.
        os.environ["AWS_ENDPOINT_URL"] = "http://127.0.0.1:9"  # discard port, never called
        os.environ["ORDER_QUEUE_URL"] = f"http://127.0.0.1:9/123456789012/{TEST_QUEUE_NAME}"
        os.environ["TEST_DLQ_URL"] = f"{os.environ['ORDER_QUEUE_URL']}-dlq"
        return (yield)
    EMULATOR.start()
    # Stopped at exit too: pytest skips pytest_unconfigure when it fails while starting up.
    atexit.register(EMULATOR.stop)
    os.environ["AWS_ENDPOINT_URL"] = EMULATOR.url
    result = EMULATOR.provision(
        queue_name=TEST_QUEUE_NAME, visibility_timeout=TEST_VISIBILITY_TIMEOUT
    )
    os.environ.update(result.environment())
    os.environ["TEST_DLQ_URL"] = result.dlq_url
    return (yield)


def pytest_unconfigure(config):
    EMULATOR.stop()
