"""Figure 10 (issue 13): the transactional outbox, measured against the shop before it.

One ``Stack`` (the emulator, a PostgreSQL database of its own); every SQS call of the web
servers and of ``manage.py outbox_relay`` goes through ``tests/aws_proxy.py`` (pointed at by
``AWS_ENDPOINT_URL_SQS``), which counts the calls and can make SQS answer late.

- **Requests, before and after, one interleaved run** (``http_bench``'s slices, taken in
  turn): rungs b (``GET /api/me/``) and c (``POST /api/orders/``, 3 lines) on this checkout,
  whose relay runs beside it, and b' and c' on the shop before the outbox (``BEFORE_COMMIT``,
  main just before the outbox merge, extracted with ``git archive``; or ``--before DIR`` /
  ``BENCH_OUTBOX_BEFORE``), which publishes on commit in the request; c/b and c'/b'.
- **Isolation**: the same rungs c and c' with every SQS request held 500 ms by the proxy
  (``c~``, ``c'~``), in the same rounds: the order's p50 and p99 against the normal slices.
- **SQS calls per confirmed order at rung c's load**: wrk on rung c with a Celery worker and
  the relay through the counter, until every order's email is sent: every SQS call
  (the relay's SendMessageBatch, the worker's receives and deletes) per order.
- **Order (201) to email in SES**, 5 orders a second (``worker_orders.py place``): the
  outbox path (commit, relay, worker) against ``bench/baseline.py`` fed as before the outbox
  (the placing process publishes right after the commit, ``place --publish direct``).
- **Relay throughput**: a thousand committed outbox rows (one transaction) published by one
  relay, from the commit to an empty outbox, against a plain boto3 ``SendMessageBatch`` loop
  sending the same bodies (built beforehand) to a fresh queue.
- **Crash**: a relay SIGKILLed by the proxy right after SQS took its second batch (before it
  could delete the rows), then a relay started again: orders without an email, duplicate
  emails (the emulator's SES store), rows published twice (redelivered, the worker skips them).

Each row's note carries the load average when it was measured: the machine is shared.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

if __package__ in (None, ""):  # run as a script: bench/ is sys.path[0], the project root is not
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import http_bench
from bench.common import ROOT, Child, Figure, Stack, database_drop, database_new, wait_for
from bench.http_bench import Load, Rung, Size
from bench.worker_bench import CUSTOMERS, Run, calls_note, emails_per_order, latencies, percentile
from tests.aws_proxy import AwsProxy

G10 = "10 outbox"
#: main just before the outbox was merged (no shop/outbox/__init__.py): the "before" of the figures.
BEFORE_COMMIT = "0416a87"
#: How late SQS answers in the isolation slices (seconds).
LATE = 0.5


@dataclass(frozen=True)
class Dimensions:
    requests: Size
    calls_seconds: float  # wrk on rung c, with the worker, for the calls per order
    rate: float  # orders a second for the order-to-email latency
    seconds: float  # ... for this long, each side
    throughput: int  # outbox rows the relay publishes, and the boto3 loop sends
    crash: int  # orders whose rows the relay is killed publishing (> 10: two batches)


SIZES = {
    "full": Dimensions(
        requests=Size(customers=20, products=30, warmup=2, rounds=4, slice=3, connections=8),
        calls_seconds=5,
        rate=5.0,
        seconds=30,
        throughput=1000,
        crash=200,
    ),
    "tiny": Dimensions(
        requests=Size(
            customers=3, products=6, warmup=0, rounds=1, slice=1, connections=4, workers=1
        ),
        calls_seconds=1,
        rate=5.0,
        seconds=1,
        throughput=20,
        crash=12,
    ),
}


def load_note() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.1f} {five:.1f} {fifteen:.1f}"


def before_checkout(cleanup: contextlib.ExitStack, given: Path | None) -> Path | None:
    """The shop before the outbox: ``given``, else ``BEFORE_COMMIT`` extracted from this
    repository into a temporary directory (``git archive``: no worktree is touched); None
    when the repository does not have that commit (a shallow clone)."""
    given = given or (Path(p) if (p := os.environ.get("BENCH_OUTBOX_BEFORE")) else None)
    if given:
        return given.resolve()
    found = subprocess.run(
        ["git", "cat-file", "-e", f"{BEFORE_COMMIT}^{{commit}}"], cwd=ROOT, capture_output=True
    )
    if found.returncode != 0:
        return None
    where = Path(cleanup.enter_context(tempfile.TemporaryDirectory(prefix="bench-before-")))
    archive = subprocess.run(
        ["git", "archive", BEFORE_COMMIT], cwd=ROOT, capture_output=True, check=True
    )
    subprocess.run(["tar", "-x", "-C", str(where)], input=archive.stdout, check=True)
    return where


# --- requests and isolation ---------------------------------------------------------------


def interleaved(
    rungs: list[Rung], late: dict[Rung, float], proxy: AwsProxy, dimensions: Size, log: Path
) -> list[Load]:
    """``http_bench.interleaved``, with SQS held ``late[rung]`` seconds during each slice."""
    options = {"connections": dimensions.connections, "log": log}

    def measured(rung: Rung, seconds: float, *, warmup: bool = False) -> Load:
        proxy.delay["sqs"] = late[rung]
        try:
            if warmup:
                return http_bench.wrk_load(rung=rung, seconds=seconds, **options)
            return http_bench.measured_slice(rung, seconds=seconds, **options)
        finally:
            proxy.delay["sqs"] = 0

    if dimensions.warmup:
        for rung in rungs:
            measured(rung, dimensions.warmup, warmup=True)
    slices: dict[Rung, list[Load]] = {rung: [] for rung in rungs}
    for number in range(dimensions.rounds):
        for rung in rungs if number % 2 == 0 else rungs[::-1]:
            slices[rung].append(measured(rung, dimensions.slice))
    for rung in rungs:
        for _ in range(http_bench.EMPTY_SLICE_RETRIES):
            if any(part.requests for part in slices[rung]):
                break
            slices[rung].append(measured(rung, dimensions.slice))
    return [Load.merged(slices[rung]) for rung in rungs]


def before_database(stack: Stack, before: Path) -> str:
    """A database for the shop before the outbox: migrated by that checkout's own migrations,
    with this stack's products copied in (the columns both schemas have). Returns its URL;
    the caller drops it (``bench.common.database_drop``)."""
    import psycopg

    url = database_new(f"{stack.database}_before")
    env = {**stack.env, "DATABASE_URL": url, "DJANGO_SETTINGS_MODULE": "shop.settings"}
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"],
        cwd=before,
        env={**env, "DJANGO_DEBUG": "false"},
        check=True,
        capture_output=True,
    )
    columns_sql = (
        "SELECT column_name FROM information_schema.columns WHERE table_name = 'orders_product'"
    )
    with psycopg.connect(stack.database_url) as mine, psycopg.connect(url) as theirs:
        shared = {row[0] for row in mine.execute(columns_sql)} & {
            row[0] for row in theirs.execute(columns_sql)
        }
        columns = ", ".join(sorted(shared))
        rows = mine.execute(f"SELECT {columns} FROM orders_product").fetchall()
        marks = ", ".join(["%s"] * len(shared))
        with theirs.cursor() as cursor:
            cursor.executemany(f"INSERT INTO orders_product ({columns}) VALUES ({marks})", rows)
    return url


def requests(
    stack: Stack, proxy: AwsProxy, dims: Dimensions, before: Path | None, log_dir: Path
) -> tuple[list[Figure], Child, Rung]:
    """Rungs b, c (and b', c') normal and c~ (c'~) with SQS late; returns the figures, this
    checkout's server and its rung c (for the calls per order)."""
    size = dims.requests
    tokens = log_dir / "tokens.txt"
    tokens.write_text("\n".join(http_bench.customers_sign_up(stack, count=size.customers)) + "\n")
    skus = log_dir / "skus.txt"
    catalog = http_bench.child_run(stack, "catalog", str(size.products))
    skus.write_text("\n".join(catalog["skus"]) + "\n")
    env = {
        "AWS_ENDPOINT_URL_SQS": proxy.url,
        "ORDER_PLACEMENT_RATE": "1000000/s",
        "ANONYMOUS_REQUEST_RATE": "1000000/s",
    }
    server = size.server

    def rungs_on(shop: Child, mark: str) -> list[tuple[Rung, float]]:
        me = Rung(f"b{mark} GET /api/me/", shop.url, "me.lua", (str(tokens),), server=shop.pid)
        order = ("order.lua", (str(tokens), str(skus)))
        return [
            (me, 0.0),
            (Rung(f"c{mark} POST /api/orders/", shop.url, *order, server=shop.pid), 0.0),
            (
                Rung(f"c{mark}~ POST /api/orders/, SQS late", shop.url, *order, server=shop.pid),
                LATE,
            ),
        ]

    new = http_bench.gunicorn_start(
        stack, name="web-outbox", app=["shop.wsgi"], server=server, **env
    )
    paired = rungs_on(new, "")
    if before is not None:
        # The shop before the outbox had one settings module, production's with DEBUG off,
        # and its own schema (the email table had another name): a database of its own.
        old_env = {
            **env,
            "DJANGO_SETTINGS_MODULE": "shop.settings",
            "DJANGO_DEBUG": "false",
            "DATABASE_URL": before_database(stack, before),
        }
        old = http_bench.gunicorn_start(
            stack, name="web-before", app=["shop.wsgi"], server=server, cwd=before, **old_env
        )
        paired += rungs_on(old, "'")
    late = dict(paired)
    rungs = [rung for rung, _ in paired]
    try:
        with http_bench.QueueDrain(stack=stack):
            loads = interleaved(rungs, late, proxy, size, log_dir / "wrk.log")
    finally:
        if before is not None:
            old.stop()
            database_drop(old_env["DATABASE_URL"])
    note = load_note()
    by = {rung.letter: load for rung, load in zip(rungs, loads, strict=True)}
    figures: list[Figure] = []
    for letter, what in [("c", "outbox"), ("c'", f"before the outbox, {BEFORE_COMMIT}")]:
        if letter not in by:
            continue
        c, b, slow = by[letter], by[letter.replace("c", "b")], by[f"{letter}~"]
        c_b = c.rps / b.rps
        mine = letter == "c"
        figures += [
            Figure(G10, f"{letter} POST /api/orders/ ({what}): throughput", round(c.rps, 1),
                   "req/s", note=f"{server.label}; {c.requests} requests in {c.seconds:.0f} s; "
                   f"{note}"),
            Figure(G10, f"{letter}: p50", round(c.p50_ms, 2), "ms"),
            Figure(G10, f"{letter}: p99", round(c.p99_ms, 2), "ms"),
            Figure(G10, f"{letter}/{letter.replace('c', 'b')} ({what})", round(c_b, 3), "",
                   ">= 0.30" if mine else "", c_b >= 0.30 if mine else None,
                   f"b{letter[1:]}: {b.rps:.1f} req/s"),
            Figure(G10, f"{letter}~ SQS {LATE * 1000:.0f} ms late: p50", round(slow.p50_ms, 2),
                   "ms", note=f"{slow.rps:.1f} req/s"),
            Figure(G10, f"{letter}~ SQS {LATE * 1000:.0f} ms late: p99", round(slow.p99_ms, 2),
                   "ms"),
        ]  # fmt: skip
        for name, p in (("p50", 50), ("p99", 99)):
            ratio = slow.percentile_ms(p) / c.percentile_ms(p)
            figures.append(
                Figure(
                    G10,
                    f"isolation{'' if mine else ' (before)'}: {name} late / normal",
                    round(ratio, 2),
                    "",
                    "<= 1.25" if mine else "",
                    ratio <= 1.25 if mine else None,
                    "same server, slices taken in turn; within noise: 1.25",
                )
            )
    if "c'" in by:
        ratio = by["c"].rps / by["c'"].rps
        figures.append(Figure(G10, "c / c' throughput (outbox / before)", round(ratio, 2), "x"))
    bad = sum(load.bad for rung, load in zip(rungs, loads, strict=True) if "'" not in rung.letter)
    figures.append(
        Figure(
            G10,
            "non-2xx responses and socket errors (outbox rungs)",
            bad,
            "",
            "0",
            bad == 0,
            "; ".join(
                f"{r.letter}: {dict(m.codes) or 0}, {m.socket_errors} socket errors"
                for r, m in zip(rungs, loads, strict=True)
            ),
        )
    )
    return figures, new, next(rung for rung, _ in paired if rung.letter == "c")


# --- SQS calls per order at rung c's load --------------------------------------------------


def last_order_id(stack: Stack) -> int:
    import psycopg

    with psycopg.connect(stack.database_url, autocommit=True) as conn:
        return conn.execute("SELECT coalesce(max(id), 0) FROM orders_order").fetchone()[0]


def order_ids_after(stack: Stack, last: int) -> list[int]:
    import psycopg

    with psycopg.connect(stack.database_url, autocommit=True) as conn:
        rows = conn.execute("SELECT id FROM orders_order WHERE id > %s ORDER BY id", [last])
        return [row_id for (row_id,) in rows.fetchall()]


def calls_at_load(
    run: Run, proxy: AwsProxy, rung: Rung, dims: Dimensions, worker: Child
) -> list[Figure]:
    """wrk on rung c while ``worker`` (on the stack's queue, through the proxy) sends."""
    stack = run.stack
    last = last_order_id(stack)
    proxy.reset()
    load = http_bench.wrk_load(
        rung=rung,
        seconds=dims.calls_seconds,
        connections=dims.requests.connections,
        log=run.log_dir / "wrk.log",
    )
    ids = order_ids_after(stack, last)
    run.drained(ids, timeout=max(300, len(ids)))
    calls = proxy.calls()
    sqs = sum(n for (service, _), n in calls.items() if service == "sqs")
    per_order = sqs / len(ids)
    return [
        Figure(G10, "SQS calls per confirmed order at rung c's load", round(per_order, 2),
               "calls", "<= 2.2", per_order <= 2.2,
               f"{len(ids)} orders by wrk at {load.rps:.0f} req/s, one worker "
               f"({calls_note(calls, 'sqs', len(ids))}); {load_note()}"),
    ]  # fmt: skip


# --- order to email ----------------------------------------------------------------------


#: Orders each side places, at the rate, before the measured ones: a pool child's first
#: task (its database connection, its SES client) and the baseline's first send are 100-300 ms
#: slower, and with 150 orders a side the 99th percentile is its two slowest.
WARMUP_ORDERS = 10


def order_to_email(run: Run, proxy: AwsProxy, dims: Dimensions) -> list[Figure]:
    """Both sides at once, through the proxy, so that the machine's load weighs on both:
    orders placed by the shop's way (commit; the relay publishes; the run's worker sends)
    and, by a second placing process at the same rate, as before the outbox (a plain
    SendMessage right after the commit, to a queue ``bench/baseline.py`` drains; their
    outbox rows go to a queue nobody reads, so the relay has both sides' rows to publish).
    Each side first places ``WARMUP_ORDERS`` the same way, not measured."""
    import threading

    count = max(2, int(dims.rate * dims.seconds))
    warmup = WARMUP_ORDERS if count > WARMUP_ORDERS else 0
    via = {"AWS_ENDPOINT_URL": proxy.url}
    base_url, _ = run.queue_pair("latency-baseline")
    sink_url, _ = run.queue_pair("latency-sink")
    proxy.reset()
    base = run.baseline(warmup + count, wait=20, ORDER_QUEUE_URL=base_url, **via)
    wait_for(lambda: proxy.calls()[("sqs", "ReceiveMessage")], timeout=60, what="baseline polling")

    def both(n: int) -> dict[str, dict[int, float]]:
        placed: dict[str, dict[int, float]] = {}

        def place(side: str, **options) -> None:
            placed[side] = run.place(n, rate=dims.rate, **options)

        sides = [
            threading.Thread(target=place, args=("outbox",)),
            threading.Thread(
                target=place,
                args=("baseline",),
                kwargs={
                    "publish": "direct",
                    "direct_queue": base_url,
                    "ORDER_QUEUE_URL": sink_url,
                    **via,
                },
            ),
        ]
        for thread in sides:
            thread.start()
        for thread in sides:
            thread.join(300)
        if set(placed) != {"outbox", "baseline"}:
            raise RuntimeError(f"placing failed: see {run.log_dir / 'worker_orders.log'}")
        run.drained(sorted(placed["outbox"]), timeout=120)
        wait_for(
            lambda: set(placed["baseline"]) <= set(proxy.accepted()),
            timeout=120,
            what="the baseline's emails",
        )
        return placed

    if warmup:
        both(warmup)
    placed = both(count)
    run.baseline_result(base, timeout=120)
    note = load_note()
    mine = latencies(placed["outbox"], proxy.accepted())
    theirs = latencies(placed["baseline"], proxy.accepted())
    p50, p99 = percentile(mine, 50), percentile(mine, 99)
    b50, b99 = percentile(theirs, 50), percentile(theirs, 99)
    load = f"{dims.rate:g} orders/s for {dims.seconds:g} s, each side, at once"
    if warmup:
        load += f", after {warmup} each not measured"
    return [
        Figure(G10, f"order (201) -> email in SES, p50 ({load})", round(p50, 1), "ms",
               note=f"commit -> relay -> worker -> SES; {len(mine)} of {count}; {note}"),
        Figure(G10, "order (201) -> email in SES, p99", round(p99, 1), "ms"),
        Figure(G10, "baseline p50 (publish in the request, boto3 loop)", round(b50, 1), "ms",
               note=f"bench/baseline.py, orders published with SendMessage after the commit "
               f"as before the outbox, placed meanwhile; {len(theirs)} of {count}"),
        Figure(G10, "baseline p99", round(b99, 1), "ms"),
        Figure(G10, "order to email p50 / baseline p50", round(p50 / b50, 2), "", "<= 1.5",
               p50 / b50 <= 1.5),
        Figure(G10, "order to email p99 / baseline p99", round(p99 / b99, 2), "", "<= 1.5",
               p99 / b99 <= 1.5),
    ]  # fmt: skip


# --- relay throughput ----------------------------------------------------------------------


class OutboxWatch:
    """The outbox's row count every 20 ms, in a thread, with when it was read."""

    def __init__(self, stack: Stack) -> None:
        import psycopg

        self._conn = psycopg.connect(stack.database_url, autocommit=True)
        self._stop = threading.Event()
        self.samples: list[tuple[float, int]] = []
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def _watch(self) -> None:
        while not self._stop.wait(0.02):
            count = self._conn.execute("SELECT count(*) FROM shop_outboxmessage").fetchone()[0]
            self.samples.append((time.time(), count))

    def __enter__(self) -> OutboxWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(10)
        self._conn.close()

    def empty_after(self, at: float, *, timeout: float) -> float:
        def found() -> float | None:
            return next((t for t, n in list(self.samples) if t >= at and n == 0), None)

        return wait_for(found, timeout=timeout, what="the outbox empty")


def relay_throughput(run: Run, proxy: AwsProxy, dims: Dimensions) -> list[Figure]:
    """The run's relay (warm: it has published before), through the proxy, as the loop."""
    count = dims.throughput
    queue_url, _ = run.queue_pair("throughput")  # nobody consumes it
    with OutboxWatch(run.stack) as watch:
        made = run.django(
            "worker_orders.py", "bulk", "--count", str(count), "--outbox",
            ORDER_QUEUE_URL=queue_url,
        )  # fmt: skip
        done = watch.empty_after(made["committed_at"], timeout=max(120, count / 5))
    relay_rate = count / (done - made["committed_at"])
    relay_note = load_note()
    loop_url, _ = run.queue_pair("throughput-loop")
    ids = [order_id for order_id, _ in made["orders"]]
    loop = child_run(run, "sendloop", loop_url, json.dumps(ids), AWS_ENDPOINT_URL=proxy.url)
    loop_rate = count / loop["seconds"]
    ratio = relay_rate / loop_rate
    return [
        Figure(G10, f"relay: {count} committed rows published", round(relay_rate, 1),
               "messages/s", note=f"one transaction's commit -> the outbox empty (claim, "
               f"SendMessageBatch, delete, 'queued' recorded); {relay_note}"),
        Figure(G10, "plain boto3 SendMessageBatch loop, same bodies", round(loop_rate, 1),
               "messages/s", note=f"batches of 10, bodies built beforehand; {load_note()}"),
        Figure(G10, "relay / boto3 loop", round(ratio, 2), "", ">= 0.5", ratio >= 0.5),
    ]  # fmt: skip


# --- a relay killed mid-batch -------------------------------------------------------------


def crash(run: Run, proxy: AwsProxy, dims: Dimensions, worker: Child) -> list[Figure]:
    """The run's relay stopped, orders placed (their rows wait), a relay killed by the proxy
    mid-batch, one started again (it stays the run's relay)."""
    count = dims.crash
    run.relay_stop()
    ids = sorted(run.place(count))
    worker.skipped_before = worker.log.read_bytes()[worker.offset :].count(b"outcome=skipped")
    proxy.reset()
    lease = {"OUTBOX_LEASE_SECONDS": "2", "AWS_ENDPOINT_URL_SQS": proxy.url}
    doomed = run.stack.spawn(
        "relay-killed",
        [sys.executable, "manage.py", "outbox_relay"],
        **{"LOG_LEVEL": "INFO", "LOG_FORMAT": "plain", **lease},
    )
    answered = Counter()

    def kill_at_second_batch(service: str, action: str) -> None:
        if action != "SendMessageBatch":
            return
        answered[action] += 1
        if answered[action] == 2:  # SQS took the batch; the relay will never hear it
            os.killpg(doomed.pid, signal.SIGKILL)

    proxy.after_answer = kill_at_second_batch
    try:
        doomed.process.wait(120)
    finally:
        proxy.after_answer = None
    killed = doomed.process.returncode == -signal.SIGKILL
    run.relay_start("relay-restarted", **lease)
    run.drained(ids, timeout=max(120, count))
    run.stack.outbox_empty(timeout=60)
    time.sleep(1)  # a redelivered message's skipped delivery
    published = proxy.batch_ids()
    twice = sum(1 for n in published.values() if n > 1)
    per_order = emails_per_order(run.stack.aws_url)
    missing = sum(1 for o in ids if not per_order[o])
    duplicates = sum(max(0, per_order[o] - 1) for o in ids)
    skipped = worker.log.read_bytes()[worker.offset :].count(b"outcome=skipped")
    skipped -= getattr(worker, "skipped_before", 0)
    note = (
        f"{count} orders; killed with SIGKILL after SQS answered its 2nd SendMessageBatch"
        f"{'' if killed else ' (NOT KILLED: it exited by itself)'}; restarted; {load_note()}"
    )
    return [
        Figure(G10, "relay killed mid-batch: orders without an email", missing, "", "0",
               missing == 0 and killed, note),
        Figure(G10, "relay killed mid-batch: duplicate emails", duplicates, "", "0",
               duplicates == 0, "emails per order in the emulator's SES store"),
        Figure(G10, "relay killed mid-batch: rows published twice", twice, "rows",
               note=f"at least once: SQS took them, the rows were not deleted; the worker "
               f"skipped {skipped} deliveries"),
    ]  # fmt: skip


# --- children -----------------------------------------------------------------------------


def child_run(run: Run, mode: str, *args: str, **env: str) -> dict:
    result = subprocess.run(
        [sys.executable, __file__, "--child", mode, *args],
        cwd=ROOT,
        env={**run.stack.env, **env},
        capture_output=True,
        text=True,
        timeout=600,
    )
    (run.log_dir / f"outbox-child-{mode}.log").write_text(result.stdout + result.stderr)
    if result.returncode != 0:
        raise RuntimeError(f"child {mode} failed: {result.stderr[-2000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def child_sendloop(queue_url: str, ids: str) -> dict:
    """A plain boto3 loop: the same confirmation tasks, SendMessageBatch by 10, timed."""
    import boto3
    from django.conf import settings

    from shop.aws.sqs.envelope import envelope_encode

    bodies = [
        envelope_encode(task_name=settings.CONFIRMATION_TASK_NAME, kwargs={"order_id": order_id})
        for order_id in json.loads(ids)
    ]
    sqs = boto3.session.Session().client(
        "sqs", region_name=settings.AWS_REGION, endpoint_url=os.environ["AWS_ENDPOINT_URL"]
    )
    sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])  # connected
    started = time.monotonic()
    for first in range(0, len(bodies), 10):
        batch = bodies[first : first + 10]
        answer = sqs.send_message_batch(
            QueueUrl=queue_url,
            Entries=[{"Id": str(n), "MessageBody": body} for n, body in enumerate(batch)],
        )
        assert not answer.get("Failed"), answer["Failed"]
    return {"seconds": time.monotonic() - started, "sent": len(bodies)}


# --- the run ------------------------------------------------------------------------------


def run(*, size: str, log_dir: Path, before: Path | None = None) -> list[Figure]:
    dims = SIZES[size]
    log_dir.mkdir(parents=True, exist_ok=True)
    with contextlib.ExitStack() as cleanup:
        before = before_checkout(cleanup, before)
        with http_bench.moto_environment():  # the request figures' QueueDrain purges
            stack = cleanup.enter_context(Stack(log_dir=log_dir, name="outbox"))
        proxy = cleanup.enter_context(AwsProxy(stack.aws_url))
        bench = Run(stack, log_dir)
        bench.proxy_url = proxy.url  # type: ignore[attr-defined]
        cleanup.callback(bench.close)
        cleanup.callback(bench.relay_stop)
        bench.django("worker_orders.py", "setup", "--customers", str(CUSTOMERS))
        bench.relay_start(AWS_ENDPOINT_URL_SQS=proxy.url)
        figures, web, rung_c = requests(stack, proxy, dims, before, log_dir)
        # One worker for the rest, on the stack's queue, through the proxy: rung c's
        # customers verified in SES for it (the sandbox check), the queue emptied of the
        # request figures' messages (their emails are not measured).
        ses = bench.aws("ses")
        for n in range(dims.requests.customers):
            ses.verify_email_identity(EmailAddress=f"bench-{n:03d}@example.com")
        stack.outbox_empty(timeout=300)
        bench.aws("sqs").purge_queue(QueueUrl=stack.queue_url)
        worker, _ = bench.worker("worker", queue_url=stack.queue_url, AWS_ENDPOINT_URL=proxy.url)
        figures += calls_at_load(bench, proxy, rung_c, dims, worker)
        web.stop()
        figures += order_to_email(bench, proxy, dims)
        crashed = crash(bench, proxy, dims, worker)
        bench.worker_stop(worker)
        figures += relay_throughput(bench, proxy, dims) + crashed
    if before is None:
        figures.append(
            Figure(G10, "before the outbox", None, note=f"not measured: {BEFORE_COMMIT} missing")
        )
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=sorted(SIZES), default="full")
    parser.add_argument("--log-dir", type=Path, default=ROOT / "var" / "bench" / "outbox")
    parser.add_argument("--before", type=Path, help=f"the shop before the outbox ({BEFORE_COMMIT})")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("child_args", nargs="*", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        http_bench._django()
        handlers = {"sendloop": child_sendloop}
        print(json.dumps(handlers[args.child](*args.child_args)))
        return 0
    started = time.monotonic()
    for figure in run(size=args.size, log_dir=args.log_dir, before=args.before):
        met = "" if figure.met is None else ("met" if figure.met else "NOT MET")
        print(f"{figure.name:<58} {figure.value!s:>9} {figure.unit:<10} {figure.target:<8} "
              f"{met:<7} {figure.note}")  # fmt: skip
    print(f"wall time {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
