"""Figures 1 (requests), 2 (SQL per order) and the web halves of 7 (memory) and 8 (JWKS).

1. gunicorn with the settings docs/performance.md recommends for 2 cores (``SERVER``), loaded
   by wrk on loopback (Debian's package; installed with apt-get when missing) with real ID
   tokens of the emulator's Cognito for a rotating set of customers, three rungs:
   (a) the bare WSGI app ``bench/wsgi_ok.py`` (the server's ceiling), (b) ``GET /api/me/``
   (token check and one query), (c) ``POST /api/orders/`` with 3 lines (its outbox rows
   written in the order's transaction; ``manage.py outbox_relay`` runs beside the server and
   publishes them, ``Stack.relay``); and the decomposition between them, on the same shop server
   (``bench/web_settings.py``: production settings with a bench-only URLconf):
   (d) a plain Django view through the whole middleware stack, (e) a DRF view with no
   authentication, (f) the same view with the Cognito authentication (a remembered token),
   (g) ``/healthz`` (one query), (h) ``GET /api/products/`` (anonymous: the throttle, a
   page of the catalog). req/s, p50, p99 and the workers' CPU per request each, the ratio of
   each to a, b/a and c/b, and every non-2xx. Both servers run side by side and the rungs
   are measured in slices taken in turn, so that other load on the machine weighs on each
   rung alike (``interleaved``); the order queue is emptied meanwhile, as the worker would
   (``QueueDrain``).
2. Queries of placing an order (1 and 50 lines), of ``GET /api/orders/`` (1 and 50 orders on
   the page) and of the admin's order list (1 and 100 orders), counted with Django's
   ``CaptureQueriesContext`` in a child process on the stack's database and emulator.
7. Peak RSS (VmHWM) of each gunicorn worker of the shop after rungs b and c.
8. JWKS fetches of each gunicorn worker over rungs b and c: the ``shop_cognito_jwks_fetches``
   counter, read per process from the ``PROMETHEUS_MULTIPROC_DIR`` files.

``python bench/http_bench.py [--size tiny|full] [--compare] [--profile [b,c,...]]
[--before DIR] [--rounds N] [--slice S] [--warmup S]``:
``--compare`` runs the rungs under each of ``CANDIDATES`` (how ``SERVER`` was chosen);
``--before`` serves another checkout (the code before a change) from a second gunicorn and
measures its rungs b'-h' in the same run (bench/README.md, "Measuring a change");
``--profile`` records a py-spy profile of one worker during each named rung (b and c
unless named; collapsed stacks, for flamegraph.pl or speedscope, in the log directory).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.common import (  # noqa: E402
    BIN,
    Child,
    Figure,
    Stack,
    children_pids,
    http_ok,
    rss_peak_mib,
    wait_for,
)
from scripts.emulator import free_port  # noqa: E402

WRK_DIR = Path(__file__).resolve().parent / "wrk"
CUSTOMER_PASSWORD = "Bench-Passw0rd!"
STOCK = 1_000_000_000  # nothing runs out during a run
PLAIN_STATIC = "django.contrib.staticfiles.storage.StaticFilesStorage"
ADDRESS = {
    "name": "Bench Customer",
    "line1": "1 Main St",
    "city": "Springfield",
    "postal_code": "12345",
    "country": "US",
}


@dataclass(frozen=True)
class Size:
    customers: int
    products: int
    warmup: float  # seconds of untimed load per rung
    rounds: int  # each rung is measured in this many slices, the rungs in turn
    slice: float  # seconds of each slice
    connections: int  # wrk's open connections (one wrk thread)
    #: gunicorn workers of each server (``SERVER``'s 3 at the full size). One at the tiny size:
    #: every worker imports Django, about a second of CPU each, which the suite need not pay
    #: to keep the figures working.
    workers: int = 3

    @property
    def server(self) -> Server:
        """``SERVER`` with this size's workers."""
        return replace(SERVER, workers=self.workers)


SIZES = {
    "full": Size(customers=20, products=30, warmup=3, rounds=4, slice=4, connections=8),
    # wrk's shortest run (1 s) per rung and no warm-up, to keep make test short with 8 rungs.
    # Under the test suite's own load a slice may complete no request: it is taken again
    # (``interleaved``).
    "tiny": Size(customers=3, products=6, warmup=0, rounds=1, slice=1, connections=4, workers=1),
}


@dataclass(frozen=True)
class Server:
    """gunicorn's process model; every rung runs under the same one."""

    worker_class: str
    workers: int
    threads: int = 1

    @property
    def label(self) -> str:
        threads = f" x {self.threads} threads" if self.threads > 1 else ""
        return f"{self.workers} {self.worker_class} workers{threads}"

    def args(self) -> list[str]:
        args = ["--workers", str(self.workers), "--worker-class", self.worker_class]
        return [*args, "--threads", str(self.threads)] if self.threads > 1 else args


# docs/performance.md's recommendation for 2 cores: gunicorn's default (sync) workers,
# WEB_CONCURRENCY=3.
# `--compare` measured each of CANDIDATES under the same load: 3 sync workers served the most
# requests and orders with the shortest tails; more processes or threads only add context
# switches on 2 cores, where a request waits little (PostgreSQL, SQS on loopback).
SERVER = Server("sync", workers=3)
CANDIDATES = [
    Server("sync", workers=2),
    Server("sync", workers=3),
    Server("sync", workers=4),
    Server("sync", workers=5),
    Server("gthread", workers=2, threads=4),
    Server("gthread", workers=3, threads=4),
]


# --- tools --------------------------------------------------------------------------------


def wrk_path() -> str:
    """Debian's wrk, installed with apt-get (as root) when missing; else a clear error."""
    found = shutil.which("wrk")
    if found:
        return found
    why = ""
    if os.geteuid() != 0:
        why = "not root, so apt-get cannot install it"
    elif not shutil.which("apt-get"):
        why = "this machine has no apt-get"
    else:
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        install = ["apt-get", "install", "-y", "--no-install-recommends", "wrk"]
        for command in (install, ["apt-get", "update"], install):
            result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=900)
            if command is install and result.returncode == 0 and shutil.which("wrk"):
                return shutil.which("wrk") or "wrk"
            why = result.stderr[-1000:]
    raise RuntimeError(f"the HTTP benchmark needs wrk (apt-get install wrk): {why}")


@dataclass
class Load:
    """What wrk measured for one rung: one run, or several slices of it merged."""

    requests: int
    seconds: float
    latency_us: Counter[int]  # every latency recorded, with how often
    non2xx: int = 0
    codes: Counter[str] = field(default_factory=Counter)
    socket_errors: int = 0
    cpu_seconds: float = 0.0  # on-CPU time of the server's workers meanwhile

    @classmethod
    def from_wrk(cls, data: dict) -> Load:
        return cls(
            requests=data["requests"],
            seconds=data["duration_us"] / 1e6,
            latency_us=Counter({value: count for value, count in data["latency_us"]}),
            non2xx=data["non2xx"],
            codes=Counter(data["codes"]),
            socket_errors=sum(data["errors"][k] for k in ("connect", "read", "write", "timeout")),
        )

    @classmethod
    def merged(cls, slices: list[Load]) -> Load:
        total = cls(requests=0, seconds=0.0, latency_us=Counter())
        for part in slices:
            total.requests += part.requests
            total.seconds += part.seconds
            total.latency_us.update(part.latency_us)
            total.non2xx += part.non2xx
            total.codes.update(part.codes)
            total.socket_errors += part.socket_errors
            total.cpu_seconds += part.cpu_seconds
        return total

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    def percentile_ms(self, p: float) -> float:
        wanted = sum(self.latency_us.values()) * p / 100
        seen = 0
        for value in sorted(self.latency_us):
            seen += self.latency_us[value]
            if seen >= wanted:
                return value / 1000
        return float("nan")

    @property
    def p50_ms(self) -> float:
        return self.percentile_ms(50)

    @property
    def p99_ms(self) -> float:
        return self.percentile_ms(99)

    @property
    def cpu_ms(self) -> float:
        """Workers' CPU per request: what a request costs the server, which other load on
        the machine moves far less than it moves throughput."""
        return self.cpu_seconds * 1000 / self.requests if self.requests else float("nan")

    @property
    def bad(self) -> int:
        return self.non2xx + self.socket_errors


@dataclass(frozen=True)
class Rung:
    label: str  # its letter first
    url: str
    script: str
    args: tuple[str, ...] = ()
    server: int = 0  # the gunicorn master's pid (its workers' CPU is counted)

    @property
    def letter(self) -> str:
        return self.label.split()[0]


def wrk_load(*, rung: Rung, seconds: float, connections: int, log: Path) -> Load:
    command = [
        wrk_path(),
        *("--threads", "1", "--connections", str(connections)),
        *("--duration", f"{max(1, round(seconds))}s", "--timeout", "10s"),
        *("--script", str(WRK_DIR / rung.script), rung.url, "--", *rung.args),
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 60)
    with log.open("a") as out:
        out.write(f"$ {' '.join(command)}\n{result.stdout}{result.stderr}\n")
    for line in result.stdout.splitlines():
        if line.startswith("WRK_JSON "):
            return Load.from_wrk(json.loads(line.removeprefix("WRK_JSON ")))
    raise RuntimeError(f"wrk printed no summary (exit {result.returncode}): {result.stderr[-500:]}")


# --- the stack's customers, catalog and web server ----------------------------------------


def customers_sign_up(stack: Stack, *, count: int) -> list[str]:
    """``count`` Cognito users of the stack's pool, signed in: their ID tokens."""
    import boto3

    idp = boto3.session.Session().client(
        "cognito-idp", region_name=stack.env["AWS_REGION"], endpoint_url=stack.aws_url
    )
    pool, client_id = stack.env["COGNITO_USER_POOL_ID"], stack.env["COGNITO_APP_CLIENT_ID"]
    tokens = []
    for n in range(count):
        email = f"bench-{n:03d}@example.com"
        idp.admin_create_user(
            UserPoolId=pool,
            Username=email,
            UserAttributes=[
                {"Name": "email", "Value": email},
                {"Name": "email_verified", "Value": "true"},
            ],
            MessageAction="SUPPRESS",
        )
        idp.admin_set_user_password(
            UserPoolId=pool, Username=email, Password=CUSTOMER_PASSWORD, Permanent=True
        )
        answer = idp.initiate_auth(
            ClientId=client_id,
            AuthFlow="USER_PASSWORD_AUTH",
            AuthParameters={"USERNAME": email, "PASSWORD": CUSTOMER_PASSWORD},
        )
        tokens.append(answer["AuthenticationResult"]["IdToken"])
    return tokens


def child_run(stack: Stack, mode: str, *args: str, **env: str) -> dict:
    """This module in a child process with the stack's environment (Django set up there)."""
    result = subprocess.run(
        [sys.executable, __file__, "--child", mode, *args],
        cwd=ROOT,
        env={**stack.env, **env},
        capture_output=True,
        text=True,
        timeout=600,
    )
    (stack.log_dir / f"http-child-{mode}.log").write_text(result.stdout + result.stderr)
    if result.returncode != 0:
        raise RuntimeError(f"child {mode} failed: {result.stderr[-2000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def gunicorn_start(
    stack: Stack, *, name: str, app: list[str], server: Server, cwd: Path = ROOT, **env
) -> Child:
    """gunicorn as the Dockerfile runs it (logging config, tmp dir, access log), on loopback,
    with the code of ``cwd`` (this checkout, or ``--before``'s)."""
    port = free_port()
    command = [
        str(BIN / "gunicorn"),
        *app,
        "-c",
        "python:shop.gunicorn_conf",
        "--bind",
        f"127.0.0.1:{port}",
        "--worker-tmp-dir",
        "/dev/shm",
        "--no-control-socket",
        "--access-logfile",
        "-",
        *server.args(),
    ]
    child = stack.spawn(name, command, cwd=cwd, **env)
    child.url = f"http://127.0.0.1:{port}"
    wait_for(lambda: http_ok(f"{child.url}/healthz"), timeout=60, what=f"{name} to answer")
    wait_for(
        lambda: len(children_pids(child.pid)) >= server.workers,
        timeout=60,
        what=f"{name}'s {server.workers} workers",
    )
    return child


def jwks_fetches_per_process(metrics_dir: Path) -> dict[int, float]:
    """``shop_cognito_jwks_fetches`` of each process, from prometheus_client's files."""
    from prometheus_client.mmap_dict import MmapedDict

    counts: dict[int, float] = {}
    for path in metrics_dir.glob("counter_*.db"):
        pid = int(path.stem.split("_")[-1])
        for key, value, *_ in MmapedDict.read_all_values_from_file(str(path)):
            if json.loads(key)[0] == "shop_cognito_jwks_fetches":
                counts[pid] = counts.get(pid, 0) + value
    return counts


class QueueDrain:
    """Empties the order queue every half second, standing in for the Celery worker.

    The emulator's SendMessage reads every message of the queue (moto computes the queue's
    attributes on each send): 8 ms with 20 messages queued, 60 ms with 1,400, so without a
    consumer the publish on commit would slow down as the run goes on, which SQS's does not.
    Receiving costs the emulator even more (the same attributes, per message received), on
    the cores the shop runs on; a purge costs it nothing. moto allows a purge a minute
    unless ``MOTO_SQS_ENFORCE_STRICT_QUEUE_PURGE_BEHAVIOUR`` is false (``moto_environment``).
    """

    def __init__(self, *, stack: Stack) -> None:
        import threading

        import boto3

        self._sqs = boto3.session.Session().client(
            "sqs", region_name=stack.env["AWS_REGION"], endpoint_url=stack.aws_url
        )
        self._queue_url = stack.queue_url
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._drain, name="queue-drain", daemon=True)

    def __enter__(self) -> QueueDrain:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(30)

    def _drain(self) -> None:
        while not self._stop.wait(0.5):
            self._sqs.purge_queue(QueueUrl=self._queue_url)


@contextlib.contextmanager
def moto_environment() -> Iterator[None]:
    """The emulator ``Stack`` starts inherits this process's environment: purges allowed."""
    name = "MOTO_SQS_ENFORCE_STRICT_QUEUE_PURGE_BEHAVIOUR"
    before = os.environ.get(name)
    os.environ[name] = "false"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = before


class Profiler:
    """py-spy recording one process for a while (``--profile``); a no-op when off."""

    def __init__(self, *, enabled: bool, log_dir: Path) -> None:
        self.enabled = enabled
        self.log_dir = log_dir
        self.process: subprocess.Popen | None = None

    def start(self, *, pid: int, name: str, seconds: float) -> None:
        if not self.enabled:
            return
        spy = shutil.which("py-spy", path=str(BIN)) or shutil.which("py-spy")
        if not spy:
            raise RuntimeError("--profile needs py-spy (pip install -r requirements-dev.txt)")
        self.output = self.log_dir / f"profile-{name}.txt"  # collapsed stacks
        self.process = subprocess.Popen(
            [
                *(spy, "record", "--pid", str(pid), "--duration", str(max(1, int(seconds)))),
                *("--rate", "200", "--format", "raw", "--output", str(self.output)),
            ],
            stdout=subprocess.DEVNULL,
            stderr=(self.log_dir / f"profile-{name}.log").open("w"),
        )

    def stop(self, what: str) -> None:
        if self.process is not None:
            self.process.wait(60)
            print(f"profile ({what}): {self.output}", file=sys.stderr)
            self.process = None


# --- the run ------------------------------------------------------------------------------


def run(
    *,
    size: str,
    log_dir: Path,
    server: Server | None = None,
    profile: tuple[str, ...] = (),
    sql: bool = True,
    before: Path | None = None,
    dimensions: Size | None = None,
) -> list[Figure]:
    """Figures 1, 2, 7 and 8. ``before``: another checkout (say the commit before a change),
    served by a second shop gunicorn beside this one, whose rungs b-h (b', c', ...) are
    measured in the same interleaved run, each right after this checkout's."""
    dimensions = dimensions or SIZES[size]
    server = server or dimensions.server
    wrk_path()
    profiler = Profiler(enabled=bool(profile), log_dir=log_dir)
    wrk_log = log_dir / "wrk.log"
    with contextlib.ExitStack() as cleanup:
        with moto_environment():
            stack = cleanup.enter_context(Stack(log_dir=log_dir, name="http"))
        cleanup.enter_context(QueueDrain(stack=stack))
        # The outbox relay publishes the orders' confirmation tasks (and would their events),
        # in its own process on the same cores, as in production.
        relay = stack.relay()
        tokens = customers_sign_up(stack, count=dimensions.customers + 2)
        sql_tokens, tokens = tokens[:2], tokens[2:]
        token_file = log_dir / "tokens.txt"
        token_file.write_text("\n".join(tokens) + "\n")
        catalog = child_run(stack, "catalog", str(dimensions.products))
        sku_file = log_dir / "skus.txt"
        sku_file.write_text("\n".join(catalog["skus"]) + "\n")
        counted = child_run(stack, "sql", *sql_tokens)["figures"] if sql else []
        figures = [Figure(**figure) for figure in counted]

        bare = gunicorn_start(
            stack, name="gunicorn-ok", app=["--pythonpath", "bench", "wsgi_ok"], server=server
        )
        metrics_dir = log_dir / "prometheus-web"
        shutil.rmtree(metrics_dir, ignore_errors=True)
        metrics_dir.mkdir(parents=True)
        shop_env = {
            # Production settings with the decomposition views (bench/web_settings.py).
            "DJANGO_SETTINGS_MODULE": "bench.web_settings",
            "ORDER_PLACEMENT_RATE": "1000000/s",
            "ANONYMOUS_REQUEST_RATE": "1000000/s",
        }
        web = gunicorn_start(
            stack,
            name="gunicorn-shop",
            app=["shop.wsgi"],
            server=server,
            PROMETHEUS_MULTIPROC_DIR=str(metrics_dir),
            **shop_env,
        )
        rungs = rungs_of(bare=bare, shop=web, tokens=token_file, skus=sku_file)
        if before is not None:
            old = gunicorn_start(
                stack,
                name="gunicorn-shop-before",
                app=["shop.wsgi"],
                server=server,
                cwd=before,
                PROMETHEUS_MULTIPROC_DIR=str(log_dir / "prometheus-web-before"),
                **shop_env,
            )
            cleanup.callback(old.stop)
            paired = rungs_of(bare=bare, shop=old, tokens=token_file, skus=sku_file)
            rungs = [
                rungs[0],
                *[
                    rung
                    for mine, theirs in zip(rungs[1:], paired[1:], strict=True)
                    for rung in (
                        mine,
                        replace(theirs, label=f"{theirs.letter}' {theirs.label[2:]}"),
                    )
                ],
            ]
        loads = interleaved(rungs, dimensions=dimensions, log=wrk_log)
        worker = children_pids(web.pid)[0]
        seconds = dimensions.rounds * dimensions.slice
        for rung in rungs if profile else []:
            if rung.letter in profile:
                profiler.start(pid=worker, name=rung.letter, seconds=seconds)
                load = wrk_load(
                    rung=rung, seconds=seconds, connections=dimensions.connections, log=wrk_log
                )
                profiler.stop(f"{rung.label}: {load.rps:.0f} req/s")
        workers = children_pids(web.pid)
        rss = {pid: rss_peak_mib(pid) or 0.0 for pid in workers}
        fetches = jwks_fetches_per_process(metrics_dir)
        web.stop()
        bare.stop()
        stack.outbox_empty(timeout=300)  # what the orders wrote, all published
        relay.stop()
        placed = child_run(stack, "placed")

    figures = request_figures(rungs, loads, server=server, placed=placed) + figures
    worst_rss = max(rss.values())
    figures.append(
        Figure(
            "7 memory",
            "web worker peak RSS (VmHWM), largest",
            round(worst_rss, 1),
            "MiB",
            "< 200",
            worst_rss < 200,
            f"{len(rss)} gunicorn workers after rungs b and c: "
            + ", ".join(f"{v:.0f}" for v in sorted(rss.values())),
        )
    )
    per_worker = [fetches.get(pid, 0) for pid in workers]
    most = max(per_worker)
    figures.append(
        Figure(
            "8 once per process",
            "JWKS fetches per web process, most",
            int(most),
            "",
            "<= 1",
            most <= 1,
            f"{len(workers)} gunicorn workers over rungs b and c: {[int(n) for n in per_worker]}"
            f"; {int(sum(fetches.values()))} in all",
        )
    )
    return figures


def rungs_of(*, bare: Child, shop: Child, tokens: Path, skus: Path) -> list[Rung]:
    """Rungs a-c (issue 6) and the decomposition d-h (issue 15), in the order measured."""
    token = str(tokens)

    def on_shop(label: str, script: str, *args: str) -> Rung:
        return Rung(label, shop.url, script, args, server=shop.pid)

    return [
        Rung("a bare WSGI", bare.url, "ok.lua", server=bare.pid),
        on_shop("b GET /api/me/", "me.lua", token),
        on_shop("c POST /api/orders/ 3 lines", "order.lua", token, str(skus)),
        on_shop("d Django view, all middleware", "get.lua", "/bench/django/"),
        on_shop("e DRF view, no auth", "get.lua", "/api/bench/drf/"),
        on_shop("f DRF view, Cognito auth", "get.lua", "/api/bench/drf-cognito/", token),
        on_shop("g /healthz", "get.lua", "/healthz"),
        on_shop("h GET /api/products/", "get.lua", "/api/products/"),
    ]


def cpu_seconds(pids: list[int]) -> float:
    """Time the processes' threads have spent on a CPU (``/proc/PID/task/*/schedstat``)."""
    total = 0
    for pid in pids:
        for stat in Path(f"/proc/{pid}/task").glob("*/schedstat"):
            with contextlib.suppress(OSError, ValueError, IndexError):
                total += int(stat.read_text().split()[0])
    return total / 1e9


def measured_slice(rung: Rung, *, seconds: float, connections: int, log: Path) -> Load:
    """One wrk run, with the CPU the rung's server workers spent meanwhile."""
    workers = children_pids(rung.server) if rung.server else []
    before = cpu_seconds(workers)
    load = wrk_load(rung=rung, seconds=seconds, connections=connections, log=log)
    load.cpu_seconds = cpu_seconds(workers) - before
    return load


#: Slices of a rung taken again at most, when one completed no request (``interleaved``).
EMPTY_SLICE_RETRIES = 5


def interleaved(rungs: list[Rung], *, dimensions: Size, log: Path) -> list[Load]:
    """Each rung warmed up, then measured in slices taken in turn, every other round in the
    reverse order (a, b, c, c, b, a, a, b, c, ...).

    The machine's other load (other people's tests) then weighs on every rung alike, so the
    ratios between rungs hold even when the absolute numbers move; the reversed rounds cancel
    what a rung's place in the round does to it (with ``--before``, one run of the same
    code on both servers, all rounds forward, measured the second of each pair 2-17% faster
    for six of the seven pairs). A slice that completed no request (a tiny run's 1 s under
    a test suite's load) is taken again, a few times at most.
    """
    options = {"connections": dimensions.connections, "log": log}
    if dimensions.warmup:
        for rung in rungs:
            wrk_load(rung=rung, seconds=dimensions.warmup, **options)  # first requests, pools
    slices: dict[Rung, list[Load]] = {rung: [] for rung in rungs}
    for number in range(dimensions.rounds):
        for rung in rungs if number % 2 == 0 else rungs[::-1]:
            slices[rung].append(measured_slice(rung, seconds=dimensions.slice, **options))
    for rung in rungs:
        for _ in range(EMPTY_SLICE_RETRIES):
            if any(part.requests for part in slices[rung]):
                break
            slices[rung].append(measured_slice(rung, seconds=dimensions.slice, **options))
    return [Load.merged(slices[rung]) for rung in rungs]


def request_figures(
    rungs: list[Rung], loads: list[Load], *, server: Server, placed: dict
) -> list[Figure]:
    group = "1 requests"
    figures = []
    ceiling = loads[0]
    for rung, measured in zip(rungs, loads, strict=True):
        tail = measured.p99_ms / measured.p50_ms if measured.p50_ms else float("inf")
        # Issue 6 set the tail's target for a, b and c; the decomposition rungs have none.
        tail_target = "< 4x p50" if rung.letter in "abc" else ""
        figures += [
            Figure(
                group,
                f"{rung.label}: throughput",
                round(measured.rps, 1),
                "req/s",
                note=f"{server.label}; {measured.requests} requests in {measured.seconds:.0f} s",
            ),
            Figure(group, f"{rung.label}: p50", round(measured.p50_ms, 2), "ms"),
            Figure(
                group,
                f"{rung.label}: worker CPU per request",
                round(measured.cpu_ms, 3),
                "ms",
                note="on-CPU time of the server's workers over the slices / requests",
            ),
            Figure(
                group,
                f"{rung.label}: p99",
                round(measured.p99_ms, 2),
                "ms",
                tail_target,
                tail < 4 if tail_target else None,
                f"{tail:.1f}x p50",
            ),
        ]
        if rung.letter != "a":
            ratio = measured.rps / ceiling.rps
            target = ">= 0.25" if rung.letter == "b" else ""
            figures.append(
                Figure(
                    group,
                    f"ratio {rung.letter}/a",
                    round(ratio, 3),
                    "",
                    target,
                    ratio >= 0.25 if target else None,
                    rung.label,
                )
            )
    by_letter = {rung.letter: measured for rung, measured in zip(rungs, loads, strict=True)}
    c_b = by_letter["c"].rps / by_letter["b"].rps
    bad = sum(measured.bad for measured in loads)
    figures.append(Figure(group, "ratio c/b", round(c_b, 3), "", ">= 0.30", c_b >= 0.30))
    if "b'" in by_letter:  # --before
        figures.append(
            Figure(group, "ratio c'/b'", round(by_letter["c'"].rps / by_letter["b'"].rps, 3))
        )
    figures += [
        Figure(
            group,
            "non-2xx responses and socket errors",
            bad,
            "",
            "0",
            bad == 0 and placed["unqueued"] == 0,
            "; ".join(
                f"{rung.letter}: {dict(m.codes) or 0} non-2xx, {m.socket_errors} socket errors"
                for rung, m in zip(rungs, loads, strict=True)
            )
            + f"; {placed['orders']} orders placed, {placed['unqueued']} of them not queued "
            "(not published by the relay once the run ended)",
        ),
    ]
    return figures


# --- child processes: Django set up with the stack's environment --------------------------


def _django() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "shop.settings.development")
    import django

    django.setup()


def child_catalog(count: int) -> dict:
    from decimal import Decimal

    from orders.services import product_upsert

    skus = [f"BENCH-{n:03d}" for n in range(count)]
    for n, sku in enumerate(skus):
        product_upsert(sku=sku, name=f"Bench {n}", price=Decimal("9.99") + n, stock=STOCK)
    return {"skus": skus}


def child_placed() -> dict:
    """Orders in the database, and those whose confirmation was never queued."""
    from notifications.models import OrderEmail
    from orders.models import Order

    unqueued = OrderEmail.objects.filter(queued_at__isnull=True).count()
    return {"orders": Order.objects.count(), "unqueued": unqueued}


def child_sql(one_token: str, many_token: str) -> dict:
    """Query counts (figure 2) through the whole Django stack, on the stack's database."""
    import jwt
    from django.conf import settings
    from django.contrib.auth import get_user_model
    from django.db import connection
    from django.test import Client, override_settings
    from django.test.utils import CaptureQueriesContext
    from rest_framework.pagination import PageNumberPagination

    from orders import services
    from orders.models import Order, Product

    skus = list(Product.objects.order_by("sku").values_list("sku", flat=True)[:50])
    if len(skus) < 50:
        skus += child_catalog(50)["skus"][len(skus) :]
    client = Client(HTTP_HOST="127.0.0.1")
    # The admin's pages name static files; without collectstatic's manifest (not needed for
    # counting queries) the plain storage serves their names.
    plain = {**settings.STORAGES, "staticfiles": {"BACKEND": PLAIN_STATIC}}
    override_settings(STORAGES=plain).enable()

    def counted(method: str, path: str, *, expect: int, **extra) -> int:
        with CaptureQueriesContext(connection) as queries:
            response = getattr(client, method)(path, **extra)
        assert response.status_code == expect, (path, response.status_code, response.content)
        print(f"{method.upper()} {path}: {len(queries)} queries", file=sys.stderr)
        for query in queries.captured_queries:  # the child's log shows them
            print(f"    {query['sql'][:120]}", file=sys.stderr)
        return len(queries)

    def place(token: str, lines: int) -> int:
        body = {"shipping_address": ADDRESS}
        body["items"] = [{"sku": sku, "quantity": 1} for sku in skus[:lines]]
        return counted(
            "post",
            "/api/orders/",
            expect=201,
            data=json.dumps(body),
            content_type="application/json",
            HTTP_AUTHORIZATION=f"Bearer {token}",
        )

    def listing(token: str) -> int:
        return counted("get", "/api/orders/", expect=200, HTTP_AUTHORIZATION=f"Bearer {token}")

    def subject(token: str) -> str:
        return jwt.decode(token, options={"verify_signature": False})["sub"]

    def more_orders(token: str, count: int) -> None:
        claims = jwt.decode(token, options={"verify_signature": False})
        for _ in range(count):
            services.order_place(
                customer_id=claims["sub"],
                customer_email=claims["email"],
                shipping_address=services.ShippingAddress(**ADDRESS),
                lines=[services.LineRequest(sku=sku, quantity=1) for sku in skus[:3]],
            )

    staff = get_user_model().objects.create_superuser("bench-staff", "staff@example.com", None)
    client.force_login(staff)
    admin = "/admin/orders/order/"
    place(one_token, 1)  # not counted: the first JWKS fetch, SQS connection; the only order
    counted("get", admin, expect=200)  # not counted: the admin's first page
    counts = {"admin_1": counted("get", admin, expect=200), "list_1": listing(one_token)}
    counts["me"] = counted("get", "/api/me/", expect=200, HTTP_AUTHORIZATION=f"Bearer {one_token}")
    counts["place_1"] = place(many_token, 1)
    counts["place_50"] = place(many_token, 50)
    more_orders(many_token, 48)
    assert Order.objects.filter(customer_id=subject(many_token)).count() == 50
    PageNumberPagination.page_size = 50  # the API's page is 20 orders; 50 for this count only
    counts["list_50"] = listing(many_token)
    more_orders(one_token, 100 - Order.objects.count())
    assert Order.objects.count() == 100
    counts["admin_100"] = counted("get", admin, expect=200)
    return {"figures": [f.as_dict() for f in sql_figures(counts)], "counts": counts}


def sql_figures(counts: dict) -> list[Figure]:
    group = "2 SQL per order"
    same_place = counts["place_1"] == counts["place_50"]
    return [
        Figure(group, "GET /api/me/", counts["me"], "queries", "1", counts["me"] == 1),
        Figure(
            group,
            "place order, 1 line",
            counts["place_1"],
            "queries",
            "<= 10",
            counts["place_1"] <= 10,
        ),
        Figure(
            group,
            "place order, 50 lines",
            counts["place_50"],
            "queries",
            "= 1 line, <= 10",
            same_place and counts["place_50"] <= 10,
            "BEGIN and COMMIT included, none after the commit; statements in http-child-sql.log",
        ),
        Figure(group, "GET /api/orders/, 1 order", counts["list_1"], "queries"),
        Figure(
            group,
            "GET /api/orders/, 50 orders",
            counts["list_50"],
            "queries",
            "= 1 order",
            counts["list_50"] == counts["list_1"],
            "page size 50 for this count (API: 20)",
        ),
        Figure(group, "admin order list, 1 order", counts["admin_1"], "queries"),
        Figure(
            group,
            "admin order list, 100 orders",
            counts["admin_100"],
            "queries",
            "= 1 order",
            counts["admin_100"] == counts["admin_1"],
        ),
    ]


def decomposition(figures: list[Figure]) -> str:
    """Rung by rung, one line each: req/s, p50, p99 and the ratio to a (also rows above)."""
    rows = {f.name: f.value for f in figures if f.group == "1 requests"}
    lines = [f"{'rung':<34} {'req/s':>8} {'p50 ms':>7} {'p99 ms':>7} {'/a':>6} {'CPU ms':>7}"]
    for name in rows:
        if name.endswith(": throughput"):
            label = name.removesuffix(": throughput")
            ratio = rows.get(f"ratio {label.split()[0]}/a", 1.0)
            lines.append(
                f"{label:<34} {rows[name]:>8} {rows[f'{label}: p50']:>7} "
                f"{rows[f'{label}: p99']:>7} {ratio:>6} "
                f"{rows[f'{label}: worker CPU per request']:>7}"
            )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=sorted(SIZES), default="full")
    parser.add_argument("--compare", action="store_true", help="every server in CANDIDATES")
    parser.add_argument(
        "--profile",
        nargs="?",
        const="b,c",
        default="",
        help="py-spy of one worker during each rung named (letters; default b,c)",
    )
    parser.add_argument("--log-dir", type=Path)
    parser.add_argument(
        "--before",
        type=Path,
        help="another checkout (the code before a change): its rungs b'-h' in the same run",
    )
    parser.add_argument("--rounds", type=int, help="slices per rung (default: the size's)")
    parser.add_argument("--slice", type=float, help="seconds per slice (default: the size's)")
    parser.add_argument("--warmup", type=float, help="seconds of warm-up per rung")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("child_args", nargs="*", help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.child:
        _django()
        handlers = {"catalog": lambda n: child_catalog(int(n)), "sql": child_sql}
        handlers["placed"] = child_placed
        print(json.dumps(handlers[options.child](*options.child_args)))
        return 0
    log_dir = options.log_dir or Path(tempfile.mkdtemp(prefix="bench-http-"))
    servers = CANDIDATES if options.compare else [SIZES[options.size].server]
    for server in servers:
        started = time.monotonic()
        figures = run(
            size=options.size,
            log_dir=log_dir / server.label.replace(" ", "-"),
            server=server,
            profile=tuple(letter for letter in options.profile.split(",") if letter),
            before=options.before.resolve() if options.before else None,
            dimensions=replace(
                SIZES[options.size],
                **{
                    name: value
                    for name in ("rounds", "slice", "warmup")
                    if (value := getattr(options, name)) is not None
                },
            ),
            sql=not options.compare,
        )
        print(f"\n{server.label} ({time.monotonic() - started:.0f} s, logs in {log_dir})")
        print(decomposition(figures))
        for figure in figures:
            verdict = {True: "met", False: "NOT MET", None: ""}[figure.met]
            print(
                f"{figure.group:<20} {figure.name:<42} {figure.value!s:>9} {figure.unit:<8}"
                f" {figure.target:<16} {verdict:<8} {figure.note}"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
