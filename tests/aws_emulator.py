"""pytest plugin: the test session's own AWS emulator (moto's server) on a loopback port.

Loaded with ``-p tests.aws_emulator`` (pyproject.toml), so it runs before pytest-django reads
the settings: the emulator is started and provisioned first, and the environment that
settings, Celery's producer and every child process (worker, web server) read already names
it. Nothing of a developer's own emulator (``make run``) is touched.
"""

from __future__ import annotations

import atexit
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# A short visibility timeout keeps the failure -> DLQ path at seconds; the task time limit
# stays below it (as in production).
TEST_VISIBILITY_TIMEOUT = 10
TEST_ENV = {
    # Development settings, explicitly: DEBUG is off unless set (shop/settings.py).
    "DJANGO_DEBUG": "true",
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_REGION": "us-east-1",
    "AWS_DEFAULT_REGION": "us-east-1",
    "COGNITO_REQUIRE_EMAIL_VERIFIED": "false",
    "CONFIRMATION_RETRY_DELAYS": "1,1,1",
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


class Emulator:
    def __init__(self) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen | None = None
        self.log = ROOT / "var" / "test-moto.log"

    def start(self) -> None:
        self.log.parent.mkdir(exist_ok=True)
        moto_server = Path(sys.executable).with_name("moto_server")
        self.process = subprocess.Popen(
            [str(moto_server), "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=self.log.open("wb"),
            stderr=subprocess.STDOUT,
            env={**os.environ, **TEST_ENV},
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(f"{self.url}/moto-api/", timeout=1).close()
                return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"moto server did not start on {self.url}; see {self.log}")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


EMULATOR = Emulator()


@pytest.hookimpl(wrapper=True)
def pytest_load_initial_conftests(early_config, parser, args):
    from shop import provisioning

    os.environ.update(TEST_ENV)
    EMULATOR.start()
    # Stopped at exit too: pytest skips pytest_unconfigure when it fails while starting up.
    atexit.register(EMULATOR.stop)
    os.environ["AWS_ENDPOINT_URL"] = EMULATOR.url
    result = provisioning.provision(
        provisioning.Plan(
            endpoint_url=EMULATOR.url,
            queue_name="test-orders",
            visibility_timeout=TEST_VISIBILITY_TIMEOUT,
        )
    )
    os.environ.update(result.environment())
    os.environ["TEST_DLQ_URL"] = result.dlq_url
    return (yield)


def pytest_unconfigure(config):
    EMULATOR.stop()
