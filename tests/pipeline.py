"""Helpers for end-to-end tests: a real Celery worker process, the queues, the SES store."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings
from django.db import connection

from shop import aws
from shop.aws import provisioning
from shop.aws.sqs.envelope import Envelope, envelope_decode
from tests.aws_emulator import TEST_QUEUE_NAME, TEST_VISIBILITY_TIMEOUT

ROOT = Path(__file__).resolve().parent.parent
#: The dead-letter queue of the session's order queue (tests/aws_emulator.py provisions both).
DLQ_URL = os.environ["TEST_DLQ_URL"]
POLL_SECONDS = 1


def database_url() -> str:
    """The test database, as a URL a child process can open (it sees only committed rows)."""
    db = connection.settings_dict
    if db["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{Path(db['NAME']).resolve()}"
    user = db.get("USER") or ""
    password = f":{db['PASSWORD']}" if db.get("PASSWORD") else ""
    return (
        f"postgres://{user}{password}@{db.get('HOST') or '127.0.0.1'}:"
        f"{db.get('PORT') or 5432}/{db['NAME']}"
    )


class ChildProcess:
    """A command of the project run as its own process group, logging to a file."""

    def __init__(self, log: Path, env: dict[str, str] | None = None):
        self.log = log
        self.env = {**os.environ, "DATABASE_URL": database_url(), **(env or {})}
        self.process: subprocess.Popen | None = None

    def spawn(self, *args: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", *args],
            cwd=ROOT,
            env=self.env,
            stdout=self.log.open("ab"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def kill(self) -> None:
        """SIGKILL the whole process group (a worker's main process and pool children)."""
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                ChildProcess.kill(self)


def kill_all(children: list[ChildProcess]) -> None:
    """SIGKILL every process group at once, then reap them (no linger: see ``Worker.stop``)."""
    for child in children:
        if child.process and child.process.poll() is None:
            os.killpg(child.process.pid, signal.SIGKILL)
    for child in children:
        if child.process:
            child.process.wait(10)


class Worker(ChildProcess):
    """``celery -A shop worker`` against the session's emulator and the test database."""

    def __init__(self, log: Path, env: dict[str, str] | None = None, concurrency: int = 1):
        super().__init__(
            log,
            {
                "ORDER_QUEUE_URL": settings.ORDER_QUEUE_URL,
                # A stopped worker's last long poll stays open on the server for up to this
                # long and may take a message the test sends after the stop (Worker.stop
                # waits it out): keep it short.
                "SQS_WAIT_TIME_SECONDS": str(POLL_SECONDS),
                **(env or {}),
            },
        )
        self.concurrency = concurrency

    def start(self) -> Worker:
        self.spawn(
            "celery", "-A", "shop", "worker", "--loglevel", "INFO", "--pool", "prefork",
            "--concurrency", str(self.concurrency),
            "--without-mingle", "--without-gossip", "--without-heartbeat",
        )  # fmt: skip
        wait_for(lambda: "ready." in self.text(), timeout=60, what=f"worker ready ({self.log})")
        return self

    def terminate(self) -> None:
        """SIGTERM the main process only: Celery's warm shutdown."""
        if self.process and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGTERM)

    def kill(self) -> None:
        """SIGKILL the worker in the middle of a test: the test goes on using the queue."""
        stopping = time.monotonic()
        super().kill()
        self.poll_linger(stopping)

    def stop(self) -> None:
        """Stop the worker in the middle of a test: the test goes on using the queue.

        (At the end of a test the ``workers`` fixture kills its workers outright, with no
        linger: the test is over, and the next test's ``queues`` are new.)
        """
        stopping = time.monotonic()
        super().stop()
        self.poll_linger(stopping)

    @staticmethod
    def poll_linger(stopping: float) -> None:
        """Wait until a worker stopped at ``stopping`` can have no long poll open any more.

        The emulator keeps serving a ReceiveMessage whose client has gone until its wait
        time is over (plus up to 1 s: moto waits for new messages in 1 s steps), and would
        give that dead client the next message sent to the queue, counting a receive. Nothing
        outside the emulator shows when that poll ends, so this waits out the bound, less
        the time the stop itself took.
        """
        remaining = stopping + POLL_SECONDS + 1.2 - time.monotonic()
        if remaining > 0:
            time.sleep(remaining)


def wait_for(predicate: Callable[[], object], *, timeout: float, what: str, every=0.2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def sqs():
    return aws.client("sqs")


def take_all(queue_url: str, *, hold: int = 30) -> list[dict]:
    """Every message now visible on the queue, received (and so hidden for ``hold`` seconds),
    not deleted."""
    taken: list[dict] = []
    while True:
        messages = (
            sqs()
            .receive_message(
                QueueUrl=queue_url,
                MaxNumberOfMessages=10,
                WaitTimeSeconds=0,
                VisibilityTimeout=hold,
            )
            .get("Messages", [])
        )
        if not messages:
            return taken
        taken += messages


def drain(queue_url: str) -> int:
    """Delete every message now in the queue (PurgeQueue is limited to once a minute)."""
    messages = take_all(queue_url)
    for message in messages:
        sqs().delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])
    return len(messages)


@dataclass(frozen=True)
class QueuePair:
    url: str
    dlq_url: str
    visibility_timeout: int


def queue_pair_reset(visibility_timeout: int = TEST_VISIBILITY_TIMEOUT) -> QueuePair:
    """Delete the order queue and its DLQ and create them again, empty, under the same names.

    The emulator allows that at once (SQS itself would refuse the names for 60 s) and, unlike
    a drain, it also drops messages in flight. The DLQ is created first: SQS redrives to the
    new one. (The ``queues`` fixture, tests/conftest.py.)
    """
    client = sqs()
    for url in (settings.ORDER_QUEUE_URL, DLQ_URL):
        with contextlib.suppress(client.exceptions.QueueDoesNotExist):
            client.delete_queue(QueueUrl=url)
    plan = provisioning.Plan(queue_name=TEST_QUEUE_NAME, visibility_timeout=visibility_timeout)
    url, dlq_url = provisioning.queues_provision(client, plan, [])
    assert (url, dlq_url) == (settings.ORDER_QUEUE_URL, DLQ_URL), "the test queues moved"
    return QueuePair(url, dlq_url, visibility_timeout)


def queue_counts(queue_url: str) -> tuple[int, int]:
    """(visible, in flight) messages."""
    attributes = sqs().get_queue_attributes(
        QueueUrl=queue_url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return (
        int(attributes["ApproximateNumberOfMessages"]),
        int(attributes["ApproximateNumberOfMessagesNotVisible"]),
    )


def dlq_bodies(dlq_url: str = DLQ_URL) -> list[str]:
    """Peek at the DLQ's raw message bodies (the messages become visible again at once)."""
    response = sqs().receive_message(
        QueueUrl=dlq_url, MaxNumberOfMessages=10, WaitTimeSeconds=0, VisibilityTimeout=0
    )
    return [message["Body"] for message in response.get("Messages", [])]


def dlq_messages(dlq_url: str = DLQ_URL) -> list[Envelope]:
    """Peek at the DLQ's Celery messages, decoded."""
    return [envelope_decode(body) for body in dlq_bodies(dlq_url)]


def dead_letter(order_id: int) -> str:
    """Put the order's real confirmation message (as the app publishes it) straight into the
    DLQ, as SQS would after maxReceiveCount failed receives. No worker may be running.
    Returns its MessageId in the DLQ."""
    from shop.aws.sqs import confirmation_enqueue

    def receive() -> list[dict]:
        response = sqs().receive_message(
            QueueUrl=settings.ORDER_QUEUE_URL,
            WaitTimeSeconds=1,
            VisibilityTimeout=30,
            MessageAttributeNames=["All"],
        )
        return response.get("Messages", [])

    confirmation_enqueue(order_id=order_id)
    [message] = wait_for(receive, timeout=15, what=f"order {order_id}'s message on the queue")
    attributes = message.get("MessageAttributes")
    sent = sqs().send_message(
        QueueUrl=DLQ_URL,
        MessageBody=message["Body"],
        **({"MessageAttributes": attributes} if attributes else {}),
    )
    sqs().delete_message(QueueUrl=settings.ORDER_QUEUE_URL, ReceiptHandle=message["ReceiptHandle"])
    return sent["MessageId"]


def sent_emails(to: str | None = None) -> list[dict]:
    """Emails the emulator's SES accepted (``/moto-api/data.json``), optionally to one address."""
    with urllib.request.urlopen(f"{settings.AWS_ENDPOINT_URL}/moto-api/data.json", timeout=5) as r:
        data = json.load(r)
    ses = data.get("ses", {})
    messages = [*ses.get("RawMessage", []), *ses.get("Message", [])]
    # The store's RawMessage destinations may list a recipient twice: count messages.
    return [m for m in messages if to is None or to in json.dumps(m.get("destinations", m))]


def subjects_by_order(prefix: str) -> dict[int, int]:
    """How many emails SES accepted per order number, for recipients starting with prefix."""
    counts: dict[int, int] = {}
    for message in sent_emails():
        raw = message.get("raw_data", "")
        if f"To: {prefix}" not in raw:
            continue
        number = int(re.search(r"Subject: .*#(\d+)", raw).group(1))
        counts[number] = counts.get(number, 0) + 1
    return counts


@contextlib.contextmanager
def row_locked(order_id: int):
    """Hold the order's email record locked from another connection, as a slow peer would.

    PostgreSQL: SELECT ... FOR UPDATE on the row, and yields the holding backend's pid (for
    ``lock_waiters``). SQLite: the database's write lock (which the worker's IMMEDIATE
    transaction must wait for); yields None.
    """
    url = database_url()
    if url.startswith("sqlite"):
        conn = sqlite3.connect(connection.settings_dict["NAME"], isolation_level=None)
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield None
        finally:
            conn.execute("ROLLBACK")
            conn.close()
        return
    import psycopg

    with psycopg.connect(url) as conn, conn.transaction():
        conn.execute(
            "SELECT 1 FROM notifications_orderemail WHERE order_id = %s FOR UPDATE",
            [order_id],
        )
        yield conn.info.backend_pid


def lock_waiters(holder: int) -> int:
    """Connections now waiting for a lock that the backend ``holder`` holds (PostgreSQL's
    ``pg_blocking_pids``): a worker's task blocked by ``row_locked``, say. Only those: a
    backend an earlier test left queued on some other lock does not count."""
    assert connection.vendor == "postgresql"
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity"
            " WHERE datname = current_database() AND %s = ANY(pg_blocking_pids(pid))",
            [holder],
        )
        return cursor.fetchone()[0]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class WebServer(ChildProcess):
    """``gunicorn shop.wsgi`` on a loopback port, with the image's gunicorn configuration."""

    def __init__(self, log: Path, env: dict[str, str] | None = None):
        super().__init__(log, env)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"

    def start(self) -> WebServer:
        self.spawn(
            "gunicorn", "shop.wsgi", "-c", "python:shop.gunicorn_conf",
            "--bind", f"127.0.0.1:{self.port}", "--workers", "1", "--timeout", "60",
        )  # fmt: skip

        def healthy() -> bool:
            try:
                with urllib.request.urlopen(f"{self.url}/healthz", timeout=2) as response:
                    return response.status == 200
            except OSError:
                return False

        wait_for(healthy, timeout=60, what=f"web server up ({self.log})")
        return self

    def request(self, method: str, path: str, body: dict | None = None, token: str = ""):
        request = urllib.request.Request(
            f"{self.url}{path}",
            method=method,
            data=json.dumps(body).encode() if body is not None else None,
            headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}"},
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read() or b"null")


def task_order_id(args: list, kwargs: dict) -> int:
    """The order a task message is for: its email's order (``email_id``), or the first
    version's ``order_id``."""
    from notifications.models import OrderEmail

    if "email_id" in kwargs:
        return OrderEmail.objects.get(pk=kwargs["email_id"]).order_id
    return kwargs["order_id"] if "order_id" in kwargs else args[0]
