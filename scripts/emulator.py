"""The local AWS emulator (moto's server) on a loopback port: start, provision, stop.

One harness for the three places that need an AWS of their own: the test suite's plugin
(``tests/aws_emulator.py``: one emulator per pytest-xdist worker), the benchmarks'
``bench.common.Stack`` and ``make run`` (``scripts/run-local.sh``, through this module's
command line)::

    with Emulator(log=Path("var/moto.log")) as emulator:   # a free port unless port=...
        result = emulator.provision(queue_name="test-orders", visibility_timeout=2)

``start()`` starts ``moto_server`` (beside this interpreter, in ``.venv/bin``) on 127.0.0.1,
its output in ``log``, in a session of its own (a Ctrl-C in the terminal reaches the shop's
processes first, not the AWS they still talk to), and returns once it answers;
``provision()`` creates the shop's resources with ``shop.aws.provisioning`` (plain boto3, no
Django: the tests provision before Django reads its settings); ``stop()`` ends that one
process, by its PID, SIGTERM then SIGKILL.

Why here, in ``scripts/``: this is development tooling. ``make run`` needs it, so it cannot
live under ``tests/``; the application must not import it (moto is a development
dependency, ``requirements-dev.txt``), so it is not under ``shop/``. ``scripts/`` is neither
in the image (``.dockerignore`` is an allow-list) nor a root package of the import
contracts, and the tests and the benchmarks import it as ``scripts.emulator`` from the
checkout's root, as they import ``bench`` and ``tests``.

Command line (``make run``)::

    python -m scripts.emulator [--port N] [--log PATH] -- COMMAND [ARG...]

starts an emulator (unless one already answers on that port: then it is used and left
running), runs COMMAND with ``AWS_ENDPOINT_URL`` naming it, passes SIGINT and SIGTERM on to
COMMAND, and stops the emulator it started once COMMAND has exited, with COMMAND's status.
For ``make run`` COMMAND is ``scripts/run-local.sh shop``, which provisions with
``manage.py provision_aws`` (the same ``shop.aws.provisioning``, with the settings' sender and
the ``--order-events``/``--fifo`` options, writing ``var/local-aws.env``), then runs the
``Procfile`` under honcho.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import Any

#: The emulator's own settings: Cognito ids derived from names (the same pool id on every
#: start, so an ``.env`` written by provisioning stays true across restarts).
SERVER_ENV = {
    "MOTO_COGNITO_IDP_USER_POOL_ID_STRATEGY": "HASH",
    "MOTO_COGNITO_IDP_USER_POOL_CLIENT_ID_STRATEGY": "HASH",
}
#: Dummy credentials and region: what the emulator's clients (boto3, kombu) need to sign.
CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_REGION": "us-east-1",
    "AWS_DEFAULT_REGION": "us-east-1",
}


def free_port() -> int:
    """A loopback port nobody listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def answering(url: str) -> bool:
    """Whether an emulator answers at ``url`` (moto's own ``/moto-api/`` page)."""
    try:
        # An http:// URL of the caller's, never a file: or custom scheme.
        urllib.request.urlopen(f"{url}/moto-api/", timeout=1).close()  # noqa: S310
        return True
    except OSError:
        return False


class Emulator:
    """One ``moto_server`` process of the caller's own; see the module doc."""

    def __init__(
        self, *, log: Path, port: int | None = None, env: Mapping[str, str] | None = None
    ) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log
        #: Over this process's environment, when it starts.
        self.env = {**SERVER_ENV, **(env or {})}
        self.process: subprocess.Popen | None = None

    def start(self, *, timeout: float = 30) -> Emulator:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        moto_server = Path(sys.executable).with_name("moto_server")
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                [str(moto_server), "-H", "127.0.0.1", "-p", str(self.port)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, **self.env},
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"moto server exited ({self.process.returncode}) on {self.url}; see {self.log}"
                )
            if answering(self.url):
                return self
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"moto server did not start on {self.url}; see {self.log}")

    def provision(self, **plan: Any):
        """The shop's queues, Cognito pool and SES identities on this emulator:
        ``shop.aws.provisioning.provision(Plan(endpoint_url=self.url, **plan))``, its Result.
        Signed with the caller's environment's credentials (``CREDENTIALS``)."""
        from shop.aws import provisioning

        return provisioning.provision(provisioning.Plan(endpoint_url=self.url, **plan))

    def stop(self, *, timeout: float = 10) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout)

    def __enter__(self) -> Emulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m scripts.emulator",
        description="Run COMMAND with the AWS emulator up (started unless one answers).",
    )
    parser.add_argument("--port", type=int, default=5055)
    parser.add_argument("--log", type=Path, default=Path("var/moto.log"))
    parser.add_argument("command", nargs="+", help="the command to run, after --")
    args = parser.parse_args(argv)

    emulator = Emulator(log=args.log, port=args.port)
    started = not answering(emulator.url)
    try:
        if started:
            print(f"starting the AWS emulator (moto) on {emulator.url}, log {args.log}", flush=True)
            emulator.start()
        else:
            print(f"using the emulator already running at {emulator.url}", flush=True)
        return _run(args.command, {**os.environ, "AWS_ENDPOINT_URL": emulator.url})
    finally:
        if started:
            emulator.stop()


def _run(command: list[str], env: dict[str, str]) -> int:
    """Run ``command`` in a process group of its own, SIGINT and SIGTERM passed on to the
    group (once: a Ctrl-C in the terminal reaches this process only), until it exits."""
    children: list[subprocess.Popen] = []
    pending: list[int] = []  # a signal that came before the child was there

    def forward(signum: int, frame: object) -> None:
        if not children:
            pending.append(signum)
            return
        with contextlib.suppress(ProcessLookupError):  # it has exited meanwhile
            os.killpg(children[0].pid, signum)

    signal.signal(signal.SIGINT, forward)
    signal.signal(signal.SIGTERM, forward)
    children.append(subprocess.Popen(command, env=env, process_group=0))
    for signum in pending:
        forward(signum, None)
    return children[0].wait()


if __name__ == "__main__":
    sys.exit(main())
