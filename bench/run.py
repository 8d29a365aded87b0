"""`make bench`: every benchmark, one table, and `bench/results/latest.json`.

Each module (``micro``, ``http_bench``, ``worker_bench``, ``ses_bench``, ``outbox_bench``)
runs in a process of its own (each sets Django up with its own settings) and returns rows
(``bench.common.Figure``); this script prints them side by side with their targets and writes
them as JSON with the machine they ran on. Benchmarks assert nothing: an unmet target is a row
that says so, never a failure.

    python bench/run.py [--size full|tiny]
        [--only micro,http_bench,worker_bench,ses_bench,outbox_bench] [--out PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MODULES = ["micro", "http_bench", "worker_bench", "ses_bench", "outbox_bench"]
RESULTS = ROOT / "bench" / "results"

RUNNER = """
import json, sys
from pathlib import Path
sys.path.insert(0, {root!r})
import importlib
module = importlib.import_module("bench." + {name!r})
figures = module.run(size={size!r}, log_dir=Path({log!r}))
Path({out!r}).write_text(json.dumps([f.as_dict() for f in figures]))
"""


def module_run(name: str, size: str, work: Path) -> tuple[list[dict], str]:
    """(rows, error) of one module, run in a child process."""
    out, log = work / f"{name}.json", work / name
    log.mkdir(parents=True, exist_ok=True)
    code = RUNNER.format(root=str(ROOT), name=name, size=size, log=str(log), out=str(out))
    started = time.monotonic()
    with (work / f"{name}.out").open("wb") as output:
        process = subprocess.run(
            [sys.executable, "-c", code], cwd=ROOT, stdout=output, stderr=subprocess.STDOUT
        )
    seconds = time.monotonic() - started
    if process.returncode != 0 or not out.exists():
        tail = (work / f"{name}.out").read_text(errors="replace")[-2000:]
        return [], f"{name} failed (exit {process.returncode}) after {seconds:.0f} s:\n{tail}"
    print(f"  {name}: {seconds:.0f} s", flush=True)
    return json.loads(out.read_text()), ""


def machine() -> dict:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory = ""
    try:
        kib = int(Path("/proc/meminfo").read_text().split()[1])
        memory = f"{kib / 2**20:.0f} GiB"
    except (OSError, ValueError, IndexError):
        pass
    return {
        "cpus": os.cpu_count(),
        "cpu": model,
        "memory": memory,
        "python": platform.python_version(),
        "system": platform.platform(),
    }


#: The reference loop: its size (about 50-60 ms of one core on this project's 2-core machine)
#: and how many times it runs (about 2 s in all). Its time says how fast the machine was
#: during a run (a shared host's speed moves from day to day, and within a second too: one
#: process's runs of it spread 2x, so only a mean over seconds is steady, to about 7%), so
#: that runs of different days can be told apart from a change in the code.
REFERENCE_LOOP = 1_000_000
REFERENCE_RUNS = 40


def reference_loop_ms(runs: int = REFERENCE_RUNS) -> float:
    """CPU milliseconds of a fixed pure-Python loop: the mean of ``runs``."""
    times = []
    for _ in range(runs):
        started = time.process_time()
        total = 0
        for i in range(REFERENCE_LOOP):
            total += i
        times.append(time.process_time() - started)
    return round(statistics.mean(times) * 1000, 1)


def cpu_times() -> list[int]:
    """The machine's CPU counters (/proc/stat's first line, in clock ticks); [] elsewhere."""
    try:
        return [int(n) for n in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return []


def steal_share(before: list[int], after: list[int]) -> float | None:
    """The share of the CPUs' time the hypervisor gave to others between two readings."""
    if len(before) < 8 or len(after) < 8:
        return None
    spent = [b - a for a, b in zip(before, after, strict=False)]
    return round(spent[7] / sum(spent), 3) if sum(spent) else None


def shown(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, int) or (isinstance(value, float) and value.is_integer() and value > 99):
        return f"{int(value):,}"
    return f"{value:,.3f}" if abs(value) < 10 else f"{value:,.1f}"


def table(rows: list[dict]) -> str:
    header = ("figure", "value", "unit", "target", "met")
    lines = [
        (
            f"{r['group']} | {r['name']}",
            shown(r["value"]),
            r["unit"],
            r["target"],
            {True: "yes", False: "NO", None: ""}[r["met"]],
        )
        for r in rows
    ]
    widths = [max(len(str(c)) for c in column) for column in zip(header, *lines, strict=True)]
    out = []
    for cells in [header, *lines]:
        out.append(
            "  ".join(
                str(c).rjust(w) if i == 1 else str(c).ljust(w)
                for i, (c, w) in enumerate(zip(cells, widths, strict=True))
            ).rstrip()
        )
    return "\n".join(out)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=["full", "tiny"], default="full")
    parser.add_argument("--only", default=",".join(MODULES))
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    names = [name for name in args.only.split(",") if name]
    started = time.monotonic()
    print(f"make bench ({args.size}): {', '.join(names)}", flush=True)
    # The tiny size (the test suite's, five at a time) only keeps the figure working: 2 runs.
    runs = REFERENCE_RUNS if args.size == "full" else 2
    speed = {"reference_loop_ms_start": reference_loop_ms(runs)}
    counters = cpu_times()
    rows: list[dict] = []
    errors: list[str] = []
    with tempfile.TemporaryDirectory(prefix="shop-bench-") as tmp:
        for name in names:
            module_rows, error = module_run(name, args.size, Path(tmp))
            rows += module_rows
            if error:
                errors.append(error)
    speed["reference_loop_ms_end"] = reference_loop_ms(runs)
    speed["steal"] = steal_share(counters, cpu_times())
    result = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "size": args.size,
        "command": f"make bench{' BENCH_SIZE=tiny' if args.size == 'tiny' else ''}",
        "machine": {**machine(), **speed},
        "seconds": round(time.monotonic() - started, 1),
        "figures": rows,
        "errors": errors,
    }
    out = args.out or (RESULTS / ("latest.json" if args.size == "full" else "tiny.json"))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    info = result["machine"]
    print(f"\n{info['cpus']} x {info['cpu']}, {info['memory']}, Python {info['python']}")
    steal = "unknown" if info["steal"] is None else f"{info['steal']:.1%}"
    print(
        f"reference loop {info['reference_loop_ms_start']} ms at the start, "
        f"{info['reference_loop_ms_end']} ms at the end (less is a faster machine); "
        f"CPU time taken by the hypervisor during the run: {steal}"
    )
    print(table(rows))
    unmet = [r for r in rows if r["met"] is False]
    print(f"\n{len(rows)} figures, {len(unmet)} targets not met, {result['seconds']} s; {out}")
    for error in errors:
        print(f"\nERROR {error}", file=sys.stderr)
    # Benchmarks never fail on a figure; only a benchmark that could not run is an error.
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
