"""Worker figures of issue 6: 3 throughput, 4 order-to-inbox latency, 5 AWS calls per order,
6 scale-out, and the worker half of 7 (peak RSS) and 8 (template compilations per process).

Everything runs against one ``Stack`` (the emulator and a PostgreSQL database of its own),
with real ``celery -A shop worker`` processes started as production starts them (the
documented command, JSON logs at INFO) with the pool and concurrency docs/performance.md
recommends for 2 cores.
Orders are placed with ``orders.services.order_place`` in a process with the stack's
environment (``bench/worker_orders.py``), so each confirmation is recorded in the order's
transaction with its outbox row by the app's own code, and published by the run's
``manage.py outbox_relay`` (``Run.relay_start``; for figures 4 and 5 through the counter).
Recipients are verified in the emulator's SES first: the worker's sandbox check is part of
the measured path. Each figure gets a queue pair of its
own, so no worker's leftover long poll can swallow another figure's messages.

- 3: a burst of queued orders drained by one worker (emails/s), against ``bench/baseline.py``
  (plain boto3: receive 10, render, SendRawEmail, DeleteMessageBatch) on the same orders.
- 4 and 5: through ``tests/aws_proxy.py``, a counting proxy in front of the emulator: an
  idle worker's ReceiveMessage calls, then orders at a steady rate: every SQS and SES call
  per confirmed order, and the latency from each order's commit (``order_place`` returned:
  the API's 201) to SES accepting its email (the emulator's answer to SendRawEmail), for the
  worker and then for the baseline loop under the same load.
- 6: a larger burst drained by two worker processes on the same queue; emails per order
  counted in the emulator's SES store (``/moto-api/data.json``), the DLQ counted.
- 7 and 8: VmHWM of every worker process after its run; compilations from the log line
  ``notifications.rendering`` writes per compile.

``SES_MAX_SEND_RATE`` is 1000 for these runs: the emulator reports SES's sandbox quota of
1 email/s (fixed in moto, never enforced), and the fleet's send schedule follows the
account's quota by default, so with the production default every figure would measure that
quota, not the worker. Each send still takes its slot of the schedule in PostgreSQL (one
``UPDATE ... RETURNING``). One row measures the worker with the production default, to show
it; ``bench/ses_bench.py`` measures the schedule against an SES that throttles.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import statistics
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from pathlib import Path

if __package__ in (None, ""):  # run as a script: bench/ is sys.path[0], the project root is not
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import (
    BIN,
    ROOT,
    Child,
    Figure,
    Stack,
    children_pids,
    rss_peak_mib,
    wait_for,
)
from tests.aws_proxy import AwsProxy

#: What docs/performance.md recommends for a worker on 2 cores (measured: see the module's report).
POOL = "prefork"
CONCURRENCY = 2
CUSTOMERS = 50

SIZES = {
    "full": {
        "burst": 2000,
        "throttled": 20,
        "idle_seconds": 60,
        "rate": 5.0,
        "seconds": 60,
        "scale": 10_000,
        "scale_stack": True,  # figure 6 on a fresh emulator and database of its own
    },
    # Only to keep every figure working (tests/test_bench.py): as small as still produces each.
    "tiny": {
        "burst": 10,
        "throttled": 2,
        "idle_seconds": 1,
        "rate": 5.0,
        "seconds": 1,
        "scale": 20,
        # Figure 6 on the same stack: its emails are counted per order id either way, and a
        # second emulator, database and migration cost the test suite seconds of CPU.
        "scale_stack": False,
    },
}

G3, G4, G5, G6, G7, G8 = (
    "3 worker throughput",
    "4 order-to-inbox latency",
    "5 AWS calls per order",
    "6 scale-out",
    "7 memory",
    "8 once per process",
)


class Run:
    """One benchmark run on one stack: helpers shared by the figures, and what they saw."""

    def __init__(self, stack: Stack, log_dir: Path):
        self.stack = stack
        self.log_dir = log_dir
        self.workers: list[Child] = []
        self.rss: list[tuple[str, str, float]] = []  # (worker, "main"/"child", MiB)
        #: Environment added to every worker of the run (to compare settings by hand).
        self.worker_env: dict[str, str] = {}
        self._db = None
        self._relay: Child | None = None

    def relay_start(self, name: str = "relay", **env: str) -> Child:
        """The outbox relay of the run (one at a time: a second one, say through a counting
        proxy, replaces it). Orders placed write outbox rows; it publishes them."""
        self.relay_stop()
        self._relay = self.stack.relay(name, **env)
        return self._relay

    def relay_stop(self) -> None:
        if self._relay is not None:
            self._relay.stop()
            self._relay = None

    # --- the parts ---------------------------------------------------------------------
    def queue_pair(self, name: str) -> tuple[str, str]:
        """A fresh queue and DLQ, provisioned as the stack's own (redrive policy included)."""
        from shop.aws import provisioning

        result = provisioning.provision(
            provisioning.Plan(
                endpoint_url=self.stack.aws_url,
                queue_name=f"{self.stack.name}-{name}",
                visibility_timeout=self.stack.visibility_timeout,
            )
        )
        return result.queue_url, result.dlq_url

    def django(self, script: str, *args: str, **env: str) -> dict:
        """Run one of the Django-side helpers with the stack's environment; its JSON result."""
        out = self.log_dir / f"{script}-{time.monotonic_ns()}.json"
        with (self.log_dir / f"{Path(script).stem}.log").open("ab") as log:
            subprocess.run(
                [sys.executable, f"bench/{script}", *args, "--out", str(out)],
                cwd=ROOT,
                env={**self.stack.env, **env},
                check=True,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        result = json.loads(out.read_text())
        out.unlink()
        return result

    def place(
        self,
        count: int,
        *,
        rate: float = 0,
        publish: str = "outbox",
        direct_queue: str = "",
        **env: str,
    ) -> dict[int, float]:
        args = ["place", "--count", str(count), "--customers", str(CUSTOMERS)]
        if rate:
            args += ["--rate", str(rate)]
        args += ["--publish", publish]
        if direct_queue:
            args += ["--direct-queue", direct_queue]
        return dict(
            (order_id, at)
            for order_id, at in self.django("worker_orders.py", *args, **env)["orders"]
        )

    def worker(
        self, name: str, *, queue_url: str, options: tuple[str, ...] = (), **env: str
    ) -> tuple[Child, float]:
        """A worker as production runs it; returns it and when it said "ready" (epoch s)."""
        log = self.log_dir / f"{name}.log"
        offset = log.stat().st_size if log.exists() else 0  # a log left by an earlier run
        command = [str(BIN / "celery"), "-A", "shop", "worker", "--loglevel", "INFO", "--pool",
                   POOL, "--concurrency", str(CONCURRENCY), "-n", f"{name}@%h"]  # fmt: skip
        child = self.stack.spawn(
            name,
            [*command, *options],
            **{
                "ORDER_QUEUE_URL": queue_url,
                "LOG_LEVEL": "INFO",
                "LOG_FORMAT": "json",
                "SES_MAX_SEND_RATE": "1000",
                **self.worker_env,
                **env,
            },
        )
        child.offset = offset  # type: ignore[attr-defined]
        self.workers.append(child)

        def ready() -> float | None:
            if child.process.poll() is not None:
                raise RuntimeError(f"worker {name} exited: see {child.log}")
            return time.time() if b" ready." in child.log.read_bytes()[offset:] else None

        return child, wait_for(ready, timeout=90, what=f"worker {name} ready", every=0.02)

    def worker_stop(self, child: Child) -> None:
        """Record the peak RSS of the worker's processes, then stop it (warm shutdown)."""
        for pid in children_pids(child.pid):
            self.rss.append((child.name, "child", rss_peak_mib(pid) or 0.0))
        self.rss.append((child.name, "main", rss_peak_mib(child.pid) or 0.0))
        child.stop()

    def sent(self, order_ids: list[int]) -> tuple[int, int, float]:
        """(emails sent, attempts failed, last sent_at as epoch s) of these orders' records.

        Each figure places its orders in one run, so their ids are one range (index scan).
        """
        import psycopg

        if self._db is None or self._db.closed:
            # One connection for all polls: a new one every 100 ms would load PostgreSQL too.
            self._db = psycopg.connect(self.stack.database_url, autocommit=True)
        row = self._db.execute(
            "SELECT count(sent_at), count(*) FILTER (WHERE status = 'failed'),"
            " extract(epoch FROM max(sent_at))"
            " FROM notifications_orderemail WHERE order_id BETWEEN %s AND %s",
            (min(order_ids), max(order_ids)),
        ).fetchone()
        return int(row[0]), int(row[1]), float(row[2] or 0)

    def close(self) -> None:
        if self._db is not None:
            self._db.close()

    def drained(
        self, order_ids: list[int], *, timeout: float, feeder: Child | None = None
    ) -> float:
        """Wait until every order's email is sent; when the last one was (epoch s)."""

        def done() -> float | None:
            if feeder is not None and feeder.process.poll():
                raise RuntimeError(f"the feeder failed: see {feeder.log}")
            sent, failed, last = self.sent(order_ids)
            if failed:
                raise RuntimeError(f"{failed} confirmation attempts failed: see the worker logs")
            return last if sent == len(order_ids) else None

        return wait_for(done, timeout=timeout, what=f"{len(order_ids)} emails", every=0.2)

    def baseline(self, count: int, *, wait: int, **env: str) -> Child:
        out = self.log_dir / f"baseline-{time.monotonic_ns()}.json"
        child = self.stack.spawn(
            f"baseline-{len(self.stack.children)}",
            [
                sys.executable,
                "bench/baseline.py",
                "--count",
                str(count),
                "--wait",
                str(wait),
                "--timeout",
                str(max(120, count)),
                "--out",
                str(out),
            ],
            **env,
        )
        child.out = out  # type: ignore[attr-defined]
        return child

    @staticmethod
    def baseline_result(child: Child, *, timeout: float) -> dict:
        child.process.wait(timeout)
        if child.process.returncode != 0:
            raise RuntimeError(f"baseline failed: see {child.log}")
        return json.loads(child.out.read_text())  # type: ignore[attr-defined]

    def emulator_cpu(self) -> float:
        """CPU seconds the emulator's process has used so far."""
        stat = Path(f"/proc/{self.stack.emulator.process.pid}/stat").read_text()
        fields = stat.rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def first_sent(self, order_ids: list[int]) -> float:
        row = self._db.execute(
            "SELECT extract(epoch FROM min(sent_at)) FROM notifications_orderemail"
            " WHERE order_id BETWEEN %s AND %s",
            (min(order_ids), max(order_ids)),
        ).fetchone()
        return float(row[0])

    def aws(self, service: str):
        import boto3

        return boto3.session.Session().client(
            service, region_name="us-east-1", endpoint_url=self.stack.aws_url
        )


# --- figure 3: throughput ------------------------------------------------------------------
def burst(run: Run, size: dict) -> list[Figure]:
    count = size["burst"]
    queue_url, _ = run.queue_pair("burst")
    started = time.time()
    orders = run.place(count, ORDER_QUEUE_URL=queue_url)
    placing = count / (time.time() - started)
    ids = sorted(orders)

    emulator = run.emulator_cpu()
    base = run.baseline_result(
        run.baseline(count, wait=1, ORDER_QUEUE_URL=queue_url), timeout=max(300, count)
    )
    base_rate = base["sent"] / (base["last_sent"] - base["started"])
    base_emulator = (run.emulator_cpu() - emulator) / count * 1000

    ids_file = run.log_dir / "burst-orders.json"
    ids_file.write_text(json.dumps({"orders": [[i, 0] for i in ids]}))
    run.django(
        "worker_orders.py", "republish", "--ids-from", str(ids_file), ORDER_QUEUE_URL=queue_url
    )
    emulator = run.emulator_cpu()
    worker, ready = run.worker("burst", queue_url=queue_url)
    last = run.drained(ids, timeout=max(300, count))
    rate = count / (last - ready)
    worker_emulator = (run.emulator_cpu() - emulator) / count * 1000
    run.worker_stop(worker)

    # The production default SES_MAX_SEND_RATE (the account's quota): the emulator's 1/s.
    throttled_url, _ = run.queue_pair("throttled")
    sample = sorted(run.place(size["throttled"], ORDER_QUEUE_URL=throttled_url))
    worker, ready = run.worker("throttled", queue_url=throttled_url, SES_MAX_SEND_RATE="")
    throttled = len(sample) / (run.drained(sample, timeout=300) - ready)
    run.worker_stop(worker)

    ratio = rate / base_rate
    setup = f"{POOL}, concurrency {CONCURRENCY}"
    return [
        Figure(G3, f"worker ({setup}), {count} queued orders", round(rate, 1), "emails/s",
               note=f"from 'ready' to the last sent_at; emulator CPU {worker_emulator:.0f} ms "
               f"per email; orders were placed at {placing:.0f}/s"),
        Figure(G3, "baseline: plain boto3 loop, same orders", round(base_rate, 1), "emails/s",
               note="receive 10, render, SendRawEmail each, DeleteMessageBatch; emulator CPU "
               f"{base_emulator:.0f} ms per email"),
        Figure(G3, "worker / baseline", round(ratio, 2), "", ">= 0.50", ratio >= 0.5),
        Figure(G3, f"worker with the default SES_MAX_SEND_RATE, {len(sample)} orders",
               round(throttled, 2), "emails/s",
               note="production default: the account's quota, the emulator's fixed 1 email/s, "
               "for the whole fleet; every other row runs with 1000/s"),
    ]  # fmt: skip


# --- figures 4 and 5: steady load through the counting proxy ------------------------------
def percentile(values: list[float], q: int) -> float:
    if len(values) < 2:
        return values[0] if values else float("nan")
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


def latencies(orders: dict[int, float], accepted: dict[int, float]) -> list[float]:
    return [(accepted[o] - at) * 1000 for o, at in orders.items() if o in accepted]


def idle_rate(polls: list[float], seconds: float) -> tuple[float, bool, str]:
    """Receive calls a minute from their times in an idle window: from the gaps between them
    (a window's edges would cut a 20 s poll), else by count over a window of a minute or more.
    Also whether that tells anything (a window shorter than one long poll does not)."""
    note = f"{len(polls)} calls in {seconds:g} s idle"
    if len(polls) >= 2:
        return round(60 * (len(polls) - 1) / (polls[-1] - polls[0]), 2), True, note
    rate = round(len(polls) / seconds * 60, 2)
    if seconds >= 60:
        return rate, True, note
    return rate, False, note + ": too short a window to tell (a long poll lasts up to 20 s)"


def calls_note(calls: Counter, service: str, orders: int) -> str:
    mine = sorted(((a, n) for (s, a), n in calls.items() if s == service), key=lambda x: -x[1])
    return ", ".join(f"{action} {n / orders:.2f}" for action, n in mine) or "none"


def steady(run: Run, size: dict) -> list[Figure]:
    count = int(size["rate"] * size["seconds"])
    with AwsProxy(run.stack.aws_url) as counter:
        via = {"AWS_ENDPOINT_URL": counter.url}
        # The outbox relay publishes through the counter too: its SendMessageBatch calls
        # are the orders' sends.
        run.relay_start("relay-steady", **via)
        # An idle worker: its receive calls.
        queue_url, _ = run.queue_pair("steady")
        worker, _ = run.worker("steady", queue_url=queue_url, **via)
        counter.reset()
        time.sleep(size["idle_seconds"])
        polls = [at for at, _, action in counter.log() if action == "ReceiveMessage"]
        idle, idle_known, idle_note = idle_rate(polls, size["idle_seconds"])

        # The same worker under steady load: calls and latency.
        counter.reset()
        orders = run.place(count, rate=size["rate"], ORDER_QUEUE_URL=queue_url, **via)
        run.drained(sorted(orders), timeout=120)
        calls = counter.calls()
        worker_ms = latencies(orders, counter.accepted())
        run.worker_stop(worker)

        # The baseline loop under the same load (long polling, as the worker).
        base_url, _ = run.queue_pair("steady-baseline")
        counter.reset()
        base = run.baseline(count, wait=20, ORDER_QUEUE_URL=base_url, **via)
        wait_for(
            lambda: counter.calls()[("sqs", "ReceiveMessage")], timeout=60, what="baseline polling"
        )
        base_orders = run.place(count, rate=size["rate"], ORDER_QUEUE_URL=base_url, **via)
        run.baseline_result(base, timeout=120)
        base_ms = latencies(base_orders, counter.accepted())
        run.relay_start()  # the run's own again, not through the counter

    sqs = sum(n for (service, _), n in calls.items() if service == "sqs")
    ses = sum(n for (service, _), n in calls.items() if service == "ses")
    p50, p99 = percentile(worker_ms, 50), percentile(worker_ms, 99)
    b50, b99 = percentile(base_ms, 50), percentile(base_ms, 99)
    load = f"{size['rate']:g} orders/s for {size['seconds']} s"
    missing = count - len(worker_ms)
    return [
        Figure(G4, f"worker p50 ({load})", round(p50, 1), "ms",
               note="order_place returned (the commit: the 201) -> relay -> worker -> SES accepted"
               + (f"; {missing} not seen" if missing else "")),
        Figure(G4, "worker p99", round(p99, 1), "ms"),
        Figure(G4, "baseline p50, same load", round(b50, 1), "ms", note="long polling, 20 s"),
        Figure(G4, "baseline p99", round(b99, 1), "ms"),
        Figure(G4, "worker p50 / baseline p50", round(p50 / b50, 2), "", "<= 1.5",
               p50 / b50 <= 1.5),
        Figure(G5, f"SQS calls per confirmed order ({load})", round(sqs / count, 2), "calls",
               "<= 3.5", sqs / count <= 3.5, calls_note(calls, "sqs", count)),
        Figure(G5, "SES calls per confirmed order", round(ses / count, 2), "calls",
               note=calls_note(calls, "ses", count)),
        Figure(G5, "idle worker ReceiveMessage calls", idle, "per minute", "<= 4",
               idle <= 4 if idle_known else None, idle_note),
    ]  # fmt: skip


# --- figure 6: scale-out ---------------------------------------------------------------------
_SUBJECT_RE = re.compile(rb"Subject: Your order #(\d+) is confirmed")


def emails_per_order(aws_url: str) -> Counter[int]:
    """Emails in the emulator's SES store, counted per order number (from the subject)."""
    with urllib.request.urlopen(f"{aws_url}/moto-api/data.json", timeout=300) as response:
        data = json.loads(response.read())
    counts: Counter[int] = Counter()
    for message in data.get("ses", {}).get("RawMessage", []):
        match = _SUBJECT_RE.search(message.get("raw_data", "").encode())
        if match:
            counts[int(match.group(1))] += 1
    return counts


def fed_drain(run: Run, name: str, count: int, *, workers: int) -> tuple[list[int], float, int]:
    """``count`` bulk-created orders fed to ``workers`` worker processes on one queue:
    (order ids, first to last email in seconds, messages left in the DLQ)."""
    queue_url, dlq_url = run.queue_pair(name)
    ids_file = run.log_dir / f"{name}-orders.json"
    orders = run.django("worker_orders.py", "bulk", "--count", str(count))
    ids_file.write_text(json.dumps(orders))
    ids = sorted(order_id for order_id, _ in orders["orders"])
    started = [run.worker(f"{name}-{n + 1}", queue_url=queue_url)[0] for n in range(workers)]
    feeder = run.stack.spawn(
        f"feed-{name}",
        [
            sys.executable,
            "bench/worker_orders.py",
            "feed",
            "--ids-from",
            str(ids_file),
            "--out",
            str(run.log_dir / f"feed-{name}.json"),
        ],
        ORDER_QUEUE_URL=queue_url,
    )
    last = run.drained(ids, timeout=max(300, count / 3), feeder=feeder)
    seconds = last - run.first_sent(ids)
    feeder.process.wait(60)
    for worker in started:
        run.worker_stop(worker)
    attributes = run.aws("sqs").get_queue_attributes(
        QueueUrl=dlq_url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return ids, seconds, sum(int(value) for value in attributes.values())


def scale_out(parent: Run, size: dict, log_dir: Path) -> list[Figure]:
    """On a stack of its own (a fresh emulator whose SES store holds only these emails), or,
    at the tiny size, on the parent's (whose store also holds the other figures' emails)."""
    count = size["scale"]
    single = max(10, count // 5)
    with contextlib.ExitStack() as own:
        if size["scale_stack"]:
            stack = own.enter_context(Stack(log_dir=log_dir, name="workerscale"))
        else:
            stack = parent.stack
            log_dir.mkdir(parents=True, exist_ok=True)
        run = Run(stack, log_dir)
        try:
            if size["scale_stack"]:
                run.django("worker_orders.py", "setup", "--customers", str(CUSTOMERS))
            _, one_seconds, _ = fed_drain(run, "scale-one", single, workers=1)
            ids, seconds, dead = fed_drain(run, "scale-two", count, workers=2)
            per_order = emails_per_order(stack.aws_url)
        finally:
            run.close()
            parent.rss += run.rss
            parent.workers += run.workers
    one_rate = (single - 1) / one_seconds
    rate = (count - 1) / seconds
    emails = sum(per_order[order_id] for order_id in ids)
    duplicates = sum(max(0, per_order[order_id] - 1) for order_id in ids)
    missing = sum(1 for order_id in ids if not per_order[order_id])
    fed = "fed by confirmation_enqueue keeping 200-400 queued (the emulator's receive costs in "
    fed += "proportion to queue depth)"
    return [
        Figure(G6, f"emails in SES for {count} orders (2 workers)", emails, "emails",
               f"= {count}", emails == count, f"{missing} orders without one"),
        Figure(G6, "duplicate emails", duplicates, "", "0", duplicates == 0,
               "emails per order counted in the emulator's SES store"),
        Figure(G6, "messages in the DLQ", dead, "", "0", dead == 0),
        Figure(G6, "drain time, 2 workers", round(seconds, 1), "s",
               note="first to last email (sent_at)"),
        Figure(G6, "throughput, 2 workers", round(rate, 1), "emails/s", note=fed),
        Figure(G6, f"throughput, 1 worker, {single} orders, same way", round(one_rate, 1),
               "emails/s"),
        Figure(G6, "speed-up, 2 workers vs 1", round(rate / one_rate, 2), "x",
               note=f"{POOL} x{CONCURRENCY} each; 2 cores shared with the emulator, PostgreSQL "
               "and the feeder"),
    ]  # fmt: skip


# --- figures 7 and 8 (worker half) --------------------------------------------------------
# notifications.rendering logs one line per process and template, at its first use.
_IN_USE_RE = re.compile(
    r"email template (\S+) in use in pid (\d+): compiled (\d+) time\(s\) here, "
    r"(\d+) in parent pid (\d+)"
)


def memory_and_compiles(run: Run) -> list[Figure]:
    main = max((mib for _, role, mib in run.rss if role == "main"), default=0.0)
    child = max((mib for _, role, mib in run.rss if role == "child"), default=0.0)
    compiles: dict[tuple[str, str, str], int] = {}  # (worker, pid, template) -> compilations
    for worker in run.workers:
        text = worker.log.read_bytes()[worker.offset :].decode(errors="replace")
        for template, pid, here, in_parent, parent in _IN_USE_RE.findall(text):
            compiles[(worker.name, pid, template)] = int(here)
            if parent == str(worker.pid):  # the worker's main process, before it forked
                compiles[(worker.name, parent, template)] = int(in_parent)
    most = max(compiles.values(), default=0)
    mains = {key[:2] for key in compiles} & {(w.name, str(w.pid)) for w in run.workers}
    in_mains = sum(n for (name, pid, _), n in compiles.items() if (name, pid) in mains)
    note = (
        f"{sum(compiles.values())} compilations in {len({k[:2] for k in compiles})} processes "
        f"({in_mains} in {len(mains)} main processes, by the system check before the fork)"
    )
    return [
        Figure(G7, "Celery worker main process, peak RSS (VmHWM)", round(main, 1), "MiB",
               "< 200", main < 200, f"max over {len(run.workers)} workers after their runs"),
        Figure(G7, "Celery pool child, peak RSS (VmHWM)", round(child, 1), "MiB", "< 200",
               child < 200, f"max over {sum(r == 'child' for _, r, _ in run.rss)} children"),
        Figure(G8, "template compilations per worker process (max per template)", most, "",
               "<= 1", most <= 1, note),
    ]  # fmt: skip


def run(*, size: str, log_dir: Path) -> list[Figure]:
    sizes = SIZES[size]
    with Stack(log_dir=log_dir, name="worker") as stack:
        bench = Run(stack, log_dir)
        try:
            bench.django("worker_orders.py", "setup", "--customers", str(CUSTOMERS))
            bench.relay_start()
            figures = burst(bench, sizes)
            figures += steady(bench, sizes)
            if not sizes["scale_stack"]:
                figures += scale_out(bench, sizes, log_dir / "scale")
        finally:
            bench.relay_stop()
            bench.close()  # before the stack drops its database
    if sizes["scale_stack"]:
        figures += scale_out(bench, sizes, log_dir / "scale")
    figures += memory_and_compiles(bench)
    return figures


def main() -> int:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=sorted(SIZES), default="full")
    parser.add_argument("--log-dir", type=Path, default=ROOT / "var" / "bench" / "worker")
    args = parser.parse_args()
    started = time.monotonic()
    figures = run(size=args.size, log_dir=args.log_dir)
    for figure in figures:
        met = "" if figure.met is None else ("met" if figure.met else "NOT MET")
        print(f"{figure.group:<26} {figure.name:<62} {figure.value!s:>9} {figure.unit:<10} "
              f"{figure.target:<8} {met:<7} {figure.note}")  # fmt: skip
    print(f"wall time {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
