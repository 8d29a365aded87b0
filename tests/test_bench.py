"""Benchmarks are not tests: this only runs each one at a tiny size to keep them working.

It checks that every figure the issue asks for is produced with a value, never what the value
is (timing belongs in ``make bench``, whose targets are rows, not failures). One test per
module of ``bench/run.py``, so that xdist runs them side by side (each has its own emulator,
database and processes).
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
#: Issue 6's figures 1 to 8 (and 0, the in-process micro-benchmarks), issue 11's 9 (SES
#: throttling and the duplicate window) and issue 13's 10 (the outbox, before and after), by
#: their numbers, as each module of bench/run.py produces them.
FIGURES = {
    "micro": {"0"},
    "http_bench": {"1", "2", "7", "8"},
    "worker_bench": {"3", "4", "5", "6", "7", "8"},
    "ses_bench": {"9"},
    "outbox_bench": {"10"},
}


def _postgres_up() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 5432), timeout=1):
            return True
    except OSError:
        return False


def test_the_modules_cover_every_figure():
    from bench import run

    assert set(FIGURES) == set(run.MODULES)
    assert set().union(*FIGURES.values()) == {str(n) for n in range(11)}


@pytest.mark.subprocess
@pytest.mark.skipif(not _postgres_up(), reason="the benchmarks run on the machine's PostgreSQL")
@pytest.mark.parametrize("module", FIGURES)
def test_every_benchmark_runs_at_a_tiny_size(tmp_path, module):
    out = tmp_path / "tiny.json"
    process = subprocess.run(
        [sys.executable, "bench/run.py", "--size", "tiny", "--only", module, "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert process.returncode == 0, process.stdout[-3000:] + process.stderr[-3000:]
    result = json.loads(out.read_text())
    assert result["errors"] == []
    # How fast the machine was, at both ends of the run (runs of different days compare).
    speed = result["machine"]
    assert speed["reference_loop_ms_start"] > 0 and speed["reference_loop_ms_end"] > 0
    assert speed["steal"] is None or 0 <= speed["steal"] < 1
    figures = result["figures"]
    numbers = {figure["group"].split()[0] for figure in figures}
    assert numbers >= FIGURES[module], f"figures missing: {sorted(FIGURES[module] - numbers)}"
    # Every figure with a target was measured (its verdict is make bench's business).
    assert [f["name"] for f in figures if f["target"] and f["value"] is None] == []
    if module == "http_bench":
        _assert_every_rung_measured(figures)


#: Figure 1's rungs: a-c (issue 6) and the decomposition d-h (issue 15), by their letters.
RUNGS = "abcdefgh"
PARTS = ("throughput", "p50", "p99", "worker CPU per request")


def _assert_every_rung_measured(figures: list[dict]) -> None:
    """Each rung's req/s, p50, p99, worker CPU per request and ratio to a (a itself has
    none) have a value."""
    values = {f["name"]: f["value"] for f in figures if f["group"].split()[0] == "1"}
    found = {}
    for name, value in values.items():
        letter, _, rest = name.partition(" ")
        for part in PARTS:
            if len(letter) == 1 and rest.endswith(f": {part}"):
                found.setdefault(letter, set()).add(part)
                assert value is not None and value > 0, (name, value)
    assert {letter: sorted(parts) for letter, parts in found.items()} == {
        letter: sorted(PARTS) for letter in RUNGS
    }
    ratios = {name: value for name, value in values.items() if name.startswith("ratio ")}
    assert set(ratios) == {f"ratio {letter}/a" for letter in RUNGS[1:]} | {"ratio c/b"}
    assert all(value is not None and value > 0 for value in ratios.values()), ratios
