"""SES figures of issue 11: 9 the fleet's send rate against a throttling SES, and the size of
the remaining window for a duplicate email.

One ``Stack`` (the emulator and a PostgreSQL database of its own). SES is reached through
``tests/aws_proxy.py``: it answers GetSendQuota with a MaxSendRate of ``rate`` and
``Throttling`` (HTTP 400, as real SES) to any send above ``rate`` sends in a second, and
records every send (when it arrived, when SES's answer came back, what it did).

- **Throttling**: two workers of two processes each (four sending processes, two main
  processes: two "machines"; one worker at the tiny size) drain a burst of orders placed at
  once, twice:
  *governed*: the production default, every process on the one schedule in PostgreSQL at the
  account's rate (``SES_MAX_SEND_RATE`` unset: GetSendQuota's MaxSendRate);
  *baseline*: a schedule at four times the rate, what four processes pacing alone at the
  account's rate send (django-ses's per-process throttle did that). Figures: attempts per
  second, the most in any one second, SES's Throttling answers per email, attempts throttled
  back onto the queue, emails in the DLQ, duplicates, drain time.
- **The duplicate window**: for every email of the governed run, the time from SES's answer
  reaching the proxy to the worker's log line ``outcome=sent``, written right after the
  record's ``sent`` committed (JSON log timestamps, milliseconds). A worker that dies, or
  loses its database, inside that window has sent an email whose ``sent`` is not recorded:
  the redelivery sends it again. The other part of the window is an answer slower than
  ``SES_READ_TIMEOUT`` (10 s), shown by ``tests/notifications/test_ses_faults.py``.
"""

from __future__ import annotations

import json
import sys
import time
from collections import Counter
from datetime import datetime
from pathlib import Path

if __package__ in (None, ""):  # run as a script: bench/ is sys.path[0], the project root is not
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import Figure, Stack
from bench.worker_bench import CUSTOMERS, Run, emails_per_order, percentile
from tests.aws_proxy import AwsProxy

G9 = "9 SES throttling and duplicates"
#: ``workers`` of CONCURRENCY (2) processes each: four sending processes in a full run.
SIZES = {
    "full": {"orders": 300, "rate": 10, "workers": 2},
    "tiny": {"orders": 8, "rate": 8, "workers": 1},
}


def _most_in_a_second(times: list[float]) -> int:
    times = sorted(times)
    most, start = 0, 0
    for end, at in enumerate(times):
        while times[start] <= at - 1.0:
            start += 1
        most = max(most, end - start + 1)
    return most


def _sent_lines(workers: list) -> dict[int, float]:
    """Order id -> when its worker logged ``outcome=sent`` (epoch s), from the JSON logs."""
    sent: dict[int, float] = {}
    for worker in workers:
        text = worker.log.read_bytes()[worker.offset :].decode(errors="replace")
        for line in text.splitlines():
            if "outcome=sent" not in line or not line.startswith("{"):
                continue
            record = json.loads(line)
            at = datetime.fromisoformat(record["timestamp"]).timestamp()
            sent.setdefault(int(record["order_id"]), at)
    return sent


def drain(run: Run, name: str, size: dict, *, fleet_rate: str) -> dict:
    """One burst through the throttling proxy; what the proxy and the stack saw."""
    count, rate = size["orders"], size["rate"]
    queue_url, dlq_url = run.queue_pair(name)
    with AwsProxy(run.stack.aws_url) as proxy:
        proxy.quota(rate)
        proxy.throttle(rate)
        env = {
            "AWS_ENDPOINT_URL_SES": proxy.url,
            "SES_MAX_SEND_RATE": fleet_rate,
            "CONFIRMATION_RETRY_DELAYS": "1,1,1",
        }
        mine = [
            run.worker(f"{name}-{n + 1}", queue_url=queue_url, **env)[0]
            for n in range(size["workers"])
        ]
        orders = sorted(run.place(count, ORDER_QUEUE_URL=queue_url))
        run.drained(orders, timeout=max(120, 10 * count / rate))
        sends = proxy.sends()
        sent_at = _sent_lines(mine)
        for worker in mine:
            run.worker_stop(worker)
    dead = run.aws("sqs").get_queue_attributes(
        QueueUrl=dlq_url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    throttled_back = sum(
        worker.log.read_bytes()[worker.offset :].count(b"outcome=throttled") for worker in mine
    )
    return {
        "orders": orders,
        "sends": sends,
        "sent_at": sent_at,
        "dead": sum(int(v) for v in dead.values()),
        "throttled_back": throttled_back,
    }


def _figures(label: str, result: dict, rate: int, per_order: Counter[int]) -> list[Figure]:
    sends, orders = result["sends"], result["orders"]
    attempts = [send.at for send in sends]
    accepted = [send for send in sends if send.outcome == "forwarded"]
    throttling = len(sends) - len(accepted)
    seconds = max(attempts) - min(attempts)
    duplicates = sum(max(0, per_order[o] - 1) for o in orders)
    missing = sum(1 for o in orders if not per_order[o])
    return [
        Figure(G9, f"{label}: attempts per second", round((len(attempts) - 1) / seconds, 2),
               "sends/s", f"<= {rate * 1.1:g}" if label == "governed" else "",
               (len(attempts) - 1) / seconds <= rate * 1.1 if label == "governed" else None,
               f"SendRawEmail requests, first to last, {len(orders)} orders"),
        Figure(G9, f"{label}: most attempts in one second", _most_in_a_second(attempts),
               "sends", note=f"SES's quota: {rate}/s"),
        Figure(G9, f"{label}: SES Throttling answers per email", round(throttling / len(orders), 2),
               "", "<= 0.25" if label == "governed" else "",
               throttling / len(orders) <= 0.25 if label == "governed" else None,
               f"{throttling} in all, each retried in the same attempt after the next slot"),
        Figure(G9, f"{label}: attempts throttled back onto the queue", result["throttled_back"],
               "", note="no slot within the attempt's wait budget"),
        Figure(G9, f"{label}: emails in the DLQ", result["dead"], "", "0", result["dead"] == 0),
        Figure(G9, f"{label}: duplicate or missing emails", duplicates + missing, "", "0",
               duplicates + missing == 0, "emails per order in the emulator's SES store"),
        Figure(G9, f"{label}: drain time", round(seconds, 1), "s",
               note=f"{len(accepted)} accepted at {len(accepted) / max(seconds, 1e-9):.1f}/s"),
    ]  # fmt: skip


def run(*, size: str, log_dir: Path) -> list[Figure]:
    sizes = SIZES[size]
    rate = sizes["rate"]
    with Stack(log_dir=log_dir, name="ses") as stack:
        bench = Run(stack, log_dir)
        try:
            bench.django("worker_orders.py", "setup", "--customers", str(CUSTOMERS))
            bench.relay_start()  # publishes the orders' outbox rows (SQS direct, no proxy)
            governed = drain(bench, "governed", sizes, fleet_rate="")
            baseline = drain(bench, "baseline", sizes, fleet_rate=str(4 * rate))
            per_order = emails_per_order(stack.aws_url)
        finally:
            bench.relay_stop()
            bench.close()
    windows = [
        (result_at - send.answered_at) * 1000
        for send in governed["sends"]
        if send.outcome == "forwarded" and send.order in governed["sent_at"]
        for result_at in [governed["sent_at"][send.order]]
    ]
    figures = _figures("governed", governed, rate, per_order)
    figures += _figures(f"baseline (fleet rate {4 * rate}/s)", baseline, rate, per_order)
    figures += [
        Figure(G9, "duplicate window: SES's answer -> 'sent' committed, p50",
               round(percentile(windows, 50), 1), "ms",
               note=f"{len(windows)} emails; to the worker's outcome=sent log line (after "
               "the commit); a worker lost in this window sends the email again"),
        Figure(G9, "duplicate window, p99", round(percentile(windows, 99), 1), "ms"),
        Figure(G9, "duplicate window, max", round(max(windows), 1), "ms",
               note="plus any answer slower than SES_READ_TIMEOUT (10 s) or past the soft "
               "time limit: tests/notifications/test_ses_faults.py"),
    ]  # fmt: skip
    return figures


def main() -> int:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=sorted(SIZES), default="full")
    parser.add_argument("--log-dir", type=Path, default=Path("var/bench/ses"))
    args = parser.parse_args()
    started = time.monotonic()
    for figure in run(size=args.size, log_dir=args.log_dir):
        met = "" if figure.met is None else ("met" if figure.met else "NOT MET")
        print(f"{figure.name:<58} {figure.value!s:>9} {figure.unit:<8} {figure.target:<8} "
              f"{met:<7} {figure.note}")  # fmt: skip
    print(f"wall time {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
