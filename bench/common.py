"""What the benchmarks share: the stack they run against, child processes, and figures.

``Stack`` starts the parts a benchmark needs, each on loopback and each its own: a moto
server (SQS, SES, Cognito) on a free port (``scripts.emulator``, the harness of the tests
and ``make run`` too), provisioned like ``make run`` provisions (queue
pair, Cognito pool with demo customers, SES identities), and a PostgreSQL database of its own
on the machine's server (migrated: a copy of a template database migrated once for the
migrations and locked dependencies at hand, see ``Stack._migrated``). ``Stack.env`` is the
environment for the shop's processes (production settings: DEBUG off). Nothing of a
developer's ``make run`` or a test run is touched. Everything is stopped and dropped on exit.
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from scripts.emulator import CREDENTIALS, SERVER_ENV, Emulator

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
PG_ADMIN_URL = os.environ.get("BENCH_PG_ADMIN_URL", "postgres://postgres@127.0.0.1:5432/postgres")
#: Migrated template databases (``Stack._migrated``) and the advisory lock that guards them.
TEMPLATE_PREFIX = "shop_bench_template_"
TEMPLATE_LOCK = 0x5B0B_7E17
#: What the shop's processes need to talk to the emulator (``scripts.emulator``).
MOTO_ENV = {**CREDENTIALS, **SERVER_ENV}


def database_new(name: str) -> str:
    """A new, empty PostgreSQL database of that name (one left by an earlier run is dropped
    first); its URL."""
    import psycopg

    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    return f"{PG_ADMIN_URL.rsplit('/', 1)[0]}/{name}"


def database_drop(url: str) -> None:
    """Drop the database at ``url``, whoever is still connected."""
    import psycopg

    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{url.rsplit("/", 1)[1]}" WITH (FORCE)')


@dataclass
class Figure:
    """One row of the table: a measured value, and its target where the issue sets one."""

    group: str  # "1 requests", "3 worker throughput", ...
    name: str
    value: float | int | None
    unit: str = ""
    target: str = ""
    met: bool | None = None
    note: str = ""

    def as_dict(self) -> dict:
        return asdict(self)


def wait_for(predicate: Callable[[], object], *, timeout: float, what: str, every=0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    raise RuntimeError(f"timed out after {timeout}s waiting for {what}")


def http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


class Child:
    """A process of the stack, in its own process group, logging to a file."""

    def __init__(
        self, name: str, args: list[str], env: dict[str, str], log_dir: Path, cwd: Path = ROOT
    ):
        self.name = name
        self.log = log_dir / f"{name}.log"
        self.process = subprocess.Popen(
            args,
            cwd=cwd,
            env=env,
            stdout=self.log.open("ab"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    @property
    def pid(self) -> int:
        return self.process.pid

    def text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def stop(self, timeout: float = 30) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(10)


class Stack:
    """The emulator and a PostgreSQL database of the benchmark's own; see the module doc."""

    def __init__(self, *, log_dir: Path, name: str = "bench", visibility_timeout: int = 30):
        self.log_dir = log_dir
        self.name = name
        self.visibility_timeout = visibility_timeout
        self.children: list[Child] = []
        self.emulator = Emulator(log=log_dir / "moto.log", env=MOTO_ENV)
        self.env: dict[str, str] = {}
        self.database = f"shop_{name}_{os.getpid()}"

    # --- lifecycle ---------------------------------------------------------------------
    def __enter__(self) -> Stack:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        try:
            self._emulator()
            self._database()
            self._provision()
            self._migrated()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc) -> None:
        for child in reversed(self.children):
            child.stop()
        self.children.clear()
        self.emulator.stop()  # the last: the children talked to it until they stopped
        self._database_drop()

    def _emulator(self) -> None:
        self.emulator.start()
        self.aws_url = self.emulator.url

    def _database(self) -> None:
        self.database_url = database_new(self.database)

    def _migrated(self) -> None:
        """Migrate the stack's database, by copying (``CREATE DATABASE ... TEMPLATE``) a
        template database that was migrated once for the same migrations and dependencies.

        A migration is seconds of CPU for Django and PostgreSQL, and the test suite starts
        three stacks at a time. The template's name is a digest of every migration file of the
        project and both lock files; one advisory lock serializes building, copying and
        dropping templates (including those of other checkouts, whose digest differs).
        """
        import psycopg

        digest = hashlib.sha256()
        for path in [
            *sorted(ROOT.glob("*/migrations/*.py")),
            ROOT / "requirements.lock",
            ROOT / "requirements-dev.lock",
        ]:
            digest.update(str(path.relative_to(ROOT)).encode() + b"\0" + path.read_bytes())
        template = f"{TEMPLATE_PREFIX}{digest.hexdigest()[:16]}"
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
            conn.execute("SELECT pg_advisory_lock(%s)", [TEMPLATE_LOCK])
            try:
                found = conn.execute(
                    "SELECT 1 FROM pg_database WHERE datname = %s", [template]
                ).fetchone()
                if found:
                    conn.execute(f'DROP DATABASE "{self.database}"')
                    conn.execute(f'CREATE DATABASE "{self.database}" TEMPLATE "{template}"')
                    return
                self.manage("migrate", "--noinput", "-v", "0")
                stale = conn.execute(
                    "SELECT datname FROM pg_database WHERE datname LIKE %s",
                    [TEMPLATE_PREFIX + "%"],
                ).fetchall()
                for (name,) in stale:
                    conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
                conn.execute(f'CREATE DATABASE "{template}" TEMPLATE "{self.database}"')
            finally:
                conn.execute("SELECT pg_advisory_unlock(%s)", [TEMPLATE_LOCK])

    def _database_drop(self) -> None:
        if not getattr(self, "database_url", None):
            return
        database_drop(self.database_url)
        self.database_url = ""

    def _provision(self) -> None:
        os.environ.update(MOTO_ENV)
        result = self.emulator.provision(
            queue_name=f"{self.name}-orders", visibility_timeout=self.visibility_timeout
        )
        self.queue_url, self.dlq_url = result.queue_url, result.dlq_url
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "COGNITO_"))},
            **MOTO_ENV,
            **result.environment(),
            "AWS_ENDPOINT_URL": self.aws_url,
            "DATABASE_URL": self.database_url,
            # Production settings, made to run on loopback over plain HTTP.
            "DJANGO_SETTINGS_MODULE": "shop.settings.production",
            "DJANGO_SECRET_KEY": "bench-only-secret-key-not-for-production-use-0123456789",
            "DJANGO_ALLOWED_HOSTS": "127.0.0.1,localhost",
            "DJANGO_SECURE_SSL_REDIRECT": "false",
            "COGNITO_REQUIRE_EMAIL_VERIFIED": "false",
            "LOG_LEVEL": "WARNING",
            "LOG_FORMAT": "plain",
            "PYTHONDONTWRITEBYTECODE": "1",
        }

    # --- helpers -----------------------------------------------------------------------
    def manage(self, *args: str) -> str:
        return subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=ROOT,
            env=self.env,
            check=True,
            capture_output=True,
            text=True,
        ).stdout

    def spawn(self, name: str, args: list[str], cwd: Path = ROOT, **env: str) -> Child:
        child = Child(name, args, {**self.env, **env}, self.log_dir, cwd=cwd)
        self.children.append(child)
        return child

    def relay(self, name: str = "relay", **env: str) -> Child:
        """``manage.py outbox_relay`` as production runs it (its own process), once it
        listens: with the outbox, placing an order writes rows and this publishes them, so
        every benchmark that waits for emails runs one. ``env``: say, the endpoint of a proxy."""
        log = self.log_dir / f"{name}.log"
        offset = log.stat().st_size if log.exists() else 0
        child = self.spawn(
            name,
            [sys.executable, "manage.py", "outbox_relay"],
            **{"LOG_LEVEL": "INFO", "LOG_FORMAT": "plain", **env},
        )

        def listening() -> bool:
            if child.process.poll() is not None:
                raise RuntimeError(f"outbox relay {name} exited: see {child.log}")
            return b"outbox relay started" in child.log.read_bytes()[offset:]

        wait_for(listening, timeout=90, what=f"outbox relay {name} to start", every=0.02)
        return child

    def outbox_pending(self) -> int:
        """Rows in the outbox (not yet published)."""
        import psycopg

        with psycopg.connect(self.database_url, autocommit=True) as conn:
            return conn.execute("SELECT count(*) FROM shop_outboxmessage").fetchone()[0]

    def outbox_empty(self, *, timeout: float) -> None:
        wait_for(lambda: self.outbox_pending() == 0, timeout=timeout, what="the outbox empty",
                 every=0.2)  # fmt: skip


def rss_peak_mib(pid: int) -> float | None:
    """VmHWM (peak resident set) of a live process, in MiB."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def children_pids(pid: int) -> list[int]:
    """Direct children of a process (a gunicorn master's workers, a Celery pool)."""
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(p) for p in text.split()]
