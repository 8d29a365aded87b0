"""Micro-benchmarks in one process: email rendering, ID-token verification, order_place,
``GET /api/schema/`` (built per request by drf-spectacular's own generator, the baseline, and
once per process by the shop's, side by side).

No server, no network: the Cognito key is pre-loaded and no relay runs (order_place writes
its outbox rows; nothing publishes them); a throwaway SQLite file. Part of ``make bench``
(``bench/run.py``); see bench/README.md.
"""

from __future__ import annotations

import itertools
import json
import os
import resource
import statistics
import sys
import time
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any
from unittest import mock

ROOT = Path(__file__).resolve().parent.parent
DB_PATH = Path(f"/tmp/shop-bench-{os.getpid()}.sqlite3")
WARMUP = 10  # untimed calls before each timed loop
SIZES = {"full": (2000, 2000, 300, 100), "tiny": (50, 50, 20, 5)}
RENDERS, TOKEN_CALLS, ORDERS, SCHEMA_GETS = SIZES["full"]
KID = "bench-key"

Row = tuple[str, float | int, str]


def environment_set() -> None:
    """What settings read, set before django.setup(); a shell's own values do not leak in."""
    os.environ.update(
        DJANGO_SETTINGS_MODULE="shop.settings.development",  # no secrets needed; DEBUG off below
        DATABASE_URL=f"sqlite:///{DB_PATH}",
        COGNITO_USER_POOL_ID="us-east-1_bench",
        COGNITO_APP_CLIENT_ID="bench-client",
        COGNITO_REQUIRE_EMAIL_VERIFIED="true",
    )
    for name in ("COGNITO_ISSUER", "COGNITO_JWKS_URL"):  # settings derive them from the pool
        os.environ.pop(name, None)


def timed(call: Callable[[], object], count: int) -> list[float]:
    """Milliseconds per call, after WARMUP untimed calls."""
    for _ in range(WARMUP):
        call()
    samples: list[float] = []
    for _ in range(count):
        start = time.perf_counter()
        call()
        samples.append((time.perf_counter() - start) * 1000)
    return samples


def summary(label: str, samples: list[float]) -> list[Row]:
    p95 = statistics.quantiles(samples, n=20)[-1]
    return [(f"{label}, mean", statistics.fmean(samples), "ms"), (f"{label}, p95", p95, "ms")]


def order_context(*, lines: int = 5) -> dict[str, Any]:
    """A confirmation_context-shaped dict, built by hand (no database)."""
    items = []
    for n in range(1, lines + 1):
        price = Decimal("19.99") + n
        item = {"sku": f"BENCH-{n}", "name": f"Product {n} <Deluxe & Co>", "quantity": n}
        items.append(item | {"unit_price": price, "line_total": price * n})
    shipping = {"name": "Alice Example", "line1": "1 Main St", "line2": "Apt 4"}
    shipping |= {"city": "Springfield", "postal_code": "12345", "country": "US"}
    total = sum((item["line_total"] for item in items), Decimal("0"))
    return dict(order_number=12345, currency="USD", total=total, shipping=shipping, lines=items)


def bench_rendering() -> list[Row]:
    from notifications import rendering

    context = order_context()
    # template_compiled has no cache_clear, so the compile cost is the first call in this
    # fresh process: both templates checked and compiled, plus one render of each.
    start = time.perf_counter()
    rendering.confirmation_render_context(context=context)
    first: Row = ("email: first call (compiles both)", (time.perf_counter() - start) * 1000, "ms")
    samples = timed(lambda: rendering.confirmation_render_context(context=context), RENDERS)
    return [first, *summary(f"email: render html+text, 5 lines ({RENDERS}x)", samples)]


def bench_tokens() -> list[Row]:
    import jwt
    from cryptography.hazmat.primitives.asymmetric import rsa
    from django.conf import settings

    from shop.aws import cognito

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
    keys = cognito.key_set()
    keys._keys[KID] = jwt.PyJWK.from_dict({**jwk, "kid": KID, "alg": "RS256"})
    now = int(time.time())
    claims = {"email": "alice@example.com", "email_verified": True, "token_use": "id"}
    claims |= {"iss": settings.COGNITO_ISSUER, "aud": settings.COGNITO_APP_CLIENT_ID}
    claims |= {"iat": now, "auth_time": now, "exp": now + 3600}
    tokens = [
        jwt.encode(claims | {"sub": f"user-{n}"}, key, "RS256", {"kid": KID}) for n in range(20)
    ]
    cycle = itertools.cycle(tokens)
    samples = timed(lambda: cognito.id_token_verify(token=next(cycle)), TOKEN_CALLS)
    rows = summary(f"token: id_token_verify ({TOKEN_CALLS}x)", samples)
    return [*rows, ("token: JWKS fetches (key pre-loaded)", keys.fetch_count, "")]


def bench_orders() -> list[Row]:
    from django.core.management import call_command
    from django.test import override_settings

    from orders.services import LineRequest, ShippingAddress, order_place, product_upsert

    call_command("migrate", verbosity=0)
    skus = [f"BENCH-{n}" for n in range(6)]
    for n, sku in enumerate(skus):
        product_upsert(sku=sku, name=f"Bench {n}", price=Decimal("9.99") + n, stock=10_000_000)
    carts = itertools.cycle(
        [[LineRequest(sku=skus[(n + k) % 6], quantity=k + 1) for k in range(3)] for n in range(6)]
    )
    address = ShippingAddress(
        name="Alice", line1="1 Main St", city="Springfield", postal_code="12345", country="US"
    )

    def place() -> None:
        order_place(
            customer_id="bench-user",
            customer_email="alice@example.com",
            shipping_address=address,
            lines=next(carts),
        )

    # DEBUG off as in production: no per-query log in connection.queries.
    with override_settings(DEBUG=False):
        samples = timed(place, ORDERS)
    throughput = ORDERS / sum(samples) * 1000
    rows: list[Row] = [(f"orders: order_place, 3 lines ({ORDERS}x)", throughput, "orders/s")]
    rows += summary("orders: order_place", samples)
    from shop.models import OutboxMessage

    written = OutboxMessage.objects.count()
    return [*rows, ("orders: outbox rows written, not published (+warm-up)", written, "")]


def bench_schema() -> list[Row]:
    """An anonymous ``GET /api/schema/`` through the whole stack (middleware, DRF, the
    renderer), JSON and YAML, with drf-spectacular's generator and with the shop's."""
    from django.core.cache import cache
    from django.test import Client
    from drf_spectacular.generators import SchemaGenerator as StockGenerator
    from drf_spectacular.views import SpectacularAPIView

    from shop.web.api import SchemaGenerator

    client = Client(HTTP_HOST="localhost")

    def get(query: str) -> Callable[[], None]:
        def call() -> None:
            cache.clear()  # the anonymous rate limit is not what is measured
            response = client.get(f"/api/schema/{query}")
            assert response.status_code == 200, response.status_code

        return call

    rows: list[Row] = []
    for label, query in (("JSON", "?format=json"), ("YAML", "")):
        with mock.patch.object(SpectacularAPIView, "generator_class", StockGenerator):
            before = timed(get(query), SCHEMA_GETS)
        after = timed(get(query), SCHEMA_GETS)
        rows += summary(f"schema: GET {label}, built per request (drf-spectacular)", before)
        rows += summary(f"schema: GET {label}, built once per process (shop)", after)
    rows.append(("schema: builds in this process (shop's generator)", SchemaGenerator.builds, ""))
    return rows


def peak_memory_mib() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024


def run(*, size: str, log_dir: Path) -> list:
    """The micro figures, as rows of the benchmark table (``bench.common.Figure``)."""
    global RENDERS, TOKEN_CALLS, ORDERS, SCHEMA_GETS
    from bench.common import Figure

    RENDERS, TOKEN_CALLS, ORDERS, SCHEMA_GETS = SIZES[size]
    environment_set()
    import django

    django.setup()
    try:
        rows = bench_rendering() + bench_tokens() + bench_orders() + bench_schema()
    finally:
        from django.db import connections

        connections.close_all()
        for path in DB_PATH.parent.glob(DB_PATH.name + "*"):  # the file and any -journal
            path.unlink()
    rows.append(("process: peak RSS (ru_maxrss)", peak_memory_mib(), "MiB"))
    note = "one process, SQLite, no network; order_place writes its outbox rows, no relay"
    return [Figure("0 micro", label, value, unit, note=note) for label, value, unit in rows]


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    for figure in run(size=(sys.argv[1:2] or ["full"])[0], log_dir=Path("/tmp")):
        print(f"{figure.name:<55} {figure.value:>12.3f} {figure.unit}")
