"""Prometheus metrics (prometheus-client): the shop's counters, ``/metrics``, the worker's port.

Counters are incremented where things happen (``orders.services`` on commit,
``notifications.metrics`` from Celery's task signals). Gauges of the queues are read live from
SQS at scrape time by a collector that ``notifications`` registers here
(``live_collector_register``), so this module imports no app.

Several processes: with ``PROMETHEUS_MULTIPROC_DIR`` set (prometheus_client's own variable;
an empty directory per service, emptied on each start), every process (gunicorn workers,
Celery pool children) writes its counters to files there and a scrape sums them. Without it,
a scrape sees only the process that answers it.

Who may read: a client whose address (``REMOTE_ADDR``, which ``shop.web.proxies`` has made the
real client: X-Forwarded-For counts only from ``TRUSTED_PROXY_CIDRS``) is in
``METRICS_ALLOWED_IPS``, or a signed-in staff user; anyone else gets 403. Allowed addresses
are answered by ``MetricsMiddleware`` before host validation and the HTTPS redirect, as the
health check is, since Prometheus scrapes a container by IP over plain HTTP.

The Celery worker serves its own counters on ``WORKER_METRICS_PORT`` (same address rule),
started by its main process once it is ready.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
import threading
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, Protocol
from wsgiref.simple_server import WSGIRequestHandler, make_server

from celery.signals import worker_ready
from django.conf import settings
from django.http import HttpRequest, HttpResponse, HttpResponseForbidden
from django.views.decorators.http import require_GET
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    generate_latest,
    make_wsgi_app,
    multiprocess,
)
from prometheus_client.exposition import ThreadingWSGIServer
from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

logger = logging.getLogger(__name__)

METRICS_PATH = "/metrics"

if settings.PROMETHEUS_MULTIPROC_DIR:
    # prometheus_client writes one file per process and metric type here.
    Path(settings.PROMETHEUS_MULTIPROC_DIR).mkdir(parents=True, exist_ok=True)

ORDERS_PLACED = Counter("shop_orders_placed", "Orders placed (counted when committed).")
CONFIRMATION_EMAILS_SENT = Counter(
    "shop_confirmation_emails_sent", "Order confirmation emails accepted by SES."
)
CONFIRMATION_ATTEMPTS_FAILED = Counter(
    "shop_confirmation_attempts_failed",
    "Failed attempts to send an order confirmation email (SQS retries them), by reason.",
    ["reason"],
)
CONFIRMATION_ATTEMPTS_THROTTLED = Counter(
    "shop_confirmation_attempts_throttled",
    "Attempts that found no SES send slot (the fleet's send rate) before their time limit: "
    "back on the queue shortly, not failed.",
)
SES_THROTTLING_ANSWERS = Counter(
    "shop_ses_throttling_answers",
    "SES answers 'Throttling' (above the account's send rate) to a send, each retried in the "
    "same attempt after the next send slot.",
)
JWKS_FETCHES = Counter(
    "shop_cognito_jwks_fetches",
    "Fetches of the Cognito key set (JWKS): one per web process, plus, at most every "
    "COGNITO_JWKS_MIN_REFETCH_SECONDS, one for an unknown key id or a set older than "
    "COGNITO_JWKS_MAX_AGE_SECONDS.",
)
#: refused: SES, or the sandbox rule, refused the recipient; ses_error: SES unreachable or
#: erroring; time_limit: the task's time limit; other: anything else (rendering, database).
FAILURE_REASONS = ("refused", "ses_error", "time_limit", "other")
for _reason in FAILURE_REASONS:
    CONFIRMATION_ATTEMPTS_FAILED.labels(reason=_reason)  # shown as 0 before the first failure


# --- live queue gauges --------------------------------------------------------------------


class QueueDepth(Protocol):
    """What the gauge reads of a queue (``shop.aws.sqs.QueueStats`` has it)."""

    role: str
    name: str
    visible: int
    in_flight: int
    delayed: int


class QueueDepthCollector(Collector):
    """``shop_sqs_messages{queue, role, state}`` read from SQS at each scrape.

    When SQS cannot be read (``unavailable`` raised), the depth gauges are absent and
    ``shop_sqs_up`` is 0: a scrape never fails because SQS does.
    """

    def __init__(
        self,
        *,
        stats: Callable[[], Iterable[QueueDepth]],
        unavailable: tuple[type[Exception], ...],
    ) -> None:
        self._stats = stats
        self._unavailable = unavailable

    def describe(self) -> Iterator[Metric]:
        # Names only: registering must not call SQS.
        yield from self._families()

    def collect(self) -> Iterator[Metric]:
        messages, up = self._families()
        try:
            queues = list(self._stats())
        except self._unavailable as exc:
            logger.warning("queue depth not available for /metrics: %s", exc)
            up.add_metric([], 0)
            yield up
            return
        for queue in queues:
            for state in ("visible", "in_flight", "delayed"):
                messages.add_metric([queue.name, queue.role, state], getattr(queue, state))
        up.add_metric([], 1)
        yield from (messages, up)

    @staticmethod
    def _families() -> tuple[GaugeMetricFamily, GaugeMetricFamily]:
        return (
            GaugeMetricFamily(
                "shop_sqs_messages",
                "Messages in the queue now, by state (SQS's approximate counts).",
                labels=["queue", "role", "state"],
            ),
            GaugeMetricFamily(
                "shop_sqs_up", "1 when SQS answered the queue-depth query of this scrape, else 0."
            ),
        )


class OutboxCollector(Collector):
    """``shop_outbox_pending``, ``shop_outbox_oldest_age_seconds``, ``shop_outbox_failing``:
    what the outbox holds (``stats()``: an object with ``pending``, ``oldest_age_seconds`` and
    ``failing``), read from the database at each scrape. Absent when it cannot be read."""

    def __init__(self, *, stats: Callable[[], Any], unavailable: tuple[type[Exception], ...]):
        self._stats = stats
        self._unavailable = unavailable

    def describe(self) -> Iterator[Metric]:
        yield from self._families()

    def collect(self) -> Iterator[Metric]:
        pending, oldest, failing = self._families()
        try:
            stats = self._stats()
        except self._unavailable as exc:
            logger.warning("outbox gauges not available for /metrics: %s", exc)
            return
        pending.add_metric([], stats.pending)
        oldest.add_metric([], stats.oldest_age_seconds)
        failing.add_metric([], stats.failing)
        yield from (pending, oldest, failing)

    @staticmethod
    def _families() -> tuple[GaugeMetricFamily, GaugeMetricFamily, GaugeMetricFamily]:
        return (
            GaugeMetricFamily(
                "shop_outbox_pending", "Outbox rows not yet published (due or backing off)."
            ),
            GaugeMetricFamily(
                "shop_outbox_oldest_age_seconds",
                "Age of the oldest outbox row, seconds (0 when the outbox is empty).",
            ),
            GaugeMetricFamily(
                "shop_outbox_failing", "Outbox rows whose last publish failed (backing off)."
            ),
        )


_live_collectors: list[Collector] = []


def live_collector_register(collector: Collector) -> None:
    """Add a collector read at each scrape of ``/metrics`` (web only, not the worker's port)."""
    if collector not in _live_collectors:
        _live_collectors.append(collector)


class _Scrape(Collector):
    """The counters (this process's, or all processes' in multiprocess mode) plus live ones."""

    def __init__(self, *, live: bool) -> None:
        if settings.PROMETHEUS_MULTIPROC_DIR:
            self._counters: Collector = CollectorRegistry()
            multiprocess.MultiProcessCollector(self._counters)
        else:
            self._counters = REGISTRY
        self._live = live

    def collect(self) -> Iterator[Metric]:
        yield from self._counters.collect()
        if self._live:
            for collector in _live_collectors:
                yield from collector.collect()


# --- who may read -------------------------------------------------------------------------


def client_allowed(address: str) -> bool:
    """Whether ``address`` (REMOTE_ADDR, after ``shop.web.proxies``) is in
    ``METRICS_ALLOWED_IPS``."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    candidates = [ip]
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
        candidates.append(ip.ipv4_mapped)  # "::ffff:10.0.0.5" from a dual-stack socket
    networks = [ipaddress.ip_network(n, strict=False) for n in settings.METRICS_ALLOWED_IPS]
    return any(
        candidate.version == network.version and candidate in network
        for candidate in candidates
        for network in networks
    )


def _metrics_response() -> HttpResponse:
    return HttpResponse(generate_latest(_Scrape(live=True)), content_type=CONTENT_TYPE_LATEST)


@require_GET
def metrics_view(request: HttpRequest) -> HttpResponse:
    """``GET /metrics``: allowed addresses and staff sessions; everyone else 403."""
    user = getattr(request, "user", None)
    is_staff = bool(user and user.is_active and user.is_staff)
    if not (is_staff or client_allowed(request.META.get("REMOTE_ADDR", ""))):
        return HttpResponseForbidden("Forbidden\n", content_type="text/plain")
    return _metrics_response()


class MetricsMiddleware:
    """Answers ``/metrics`` for allowed addresses before host validation and HTTPS redirect.

    Place it first, beside the health check. Other clients go on to ``metrics_view`` through
    the whole stack (sessions, so staff can read it in a browser).
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if (
            request.path == METRICS_PATH
            and request.method == "GET"
            and client_allowed(request.META.get("REMOTE_ADDR", ""))
        ):
            return _metrics_response()
        return self.get_response(request)


# --- the Celery worker's port -------------------------------------------------------------


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """Scrapes are not worth a log line each."""


def worker_metrics_serve(*, port: int, addr: str) -> ThreadingWSGIServer:
    """Serve the counters on ``addr:port`` from a daemon thread of this process."""
    app = make_wsgi_app(_Scrape(live=False))

    def guarded(environ: dict, start_response: Callable) -> Iterable[bytes]:
        if not client_allowed(environ.get("REMOTE_ADDR", "")):
            start_response("403 Forbidden", [("Content-Type", "text/plain")])
            return [b"Forbidden\n"]
        return app(environ, start_response)

    class Server(ThreadingWSGIServer):
        # IPv4 or IPv6, as the address is (as prometheus_client's own server does).
        address_family = socket.getaddrinfo(
            addr, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0][0]

    server = make_server(addr, port, guarded, Server, handler_class=_QuietHandler)
    threading.Thread(target=server.serve_forever, name="metrics-http", daemon=True).start()
    return server


@worker_ready.connect
def _worker_metrics_start(**_: Any) -> None:
    """In the worker's main process, after the pool's children were forked."""
    if not settings.WORKER_METRICS_PORT:
        return
    if not settings.PROMETHEUS_MULTIPROC_DIR:
        logger.warning(
            "WORKER_METRICS_PORT without PROMETHEUS_MULTIPROC_DIR: the counts of prefork pool "
            "children are not seen by the worker's metrics port"
        )
    server = worker_metrics_serve(
        port=settings.WORKER_METRICS_PORT, addr=settings.WORKER_METRICS_ADDR
    )
    host, port = server.server_address[:2]
    logger.info("worker metrics on http://%s:%s%s", host, port, METRICS_PATH)
