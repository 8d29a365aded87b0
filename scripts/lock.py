#!/usr/bin/env python3
"""The lock files: compiled from the hand-edited requirement lists, and checked against them.

    python scripts/lock.py compile [--upgrade-package NAME ...]   (make lock; needs PyPI)
    python scripts/lock.py check                                   (make lint; offline)

``requirements.txt`` (production) and ``requirements-dev.txt`` (tools, on top of it) are the
lists people edit. pip-tools' ``pip-compile --generate-hashes`` turns each into a lock that pins
every package, transitive ones included, with the hashes PyPI publishes for it:
``requirements.lock`` and ``requirements-dev.lock``. The development lock is compiled with the
production lock as a constraint (``-c requirements.lock`` in requirements-dev.txt, as pip-tools
documents for layered requirements), so the packages both have are at the same versions.

pip-tools records the command but not what the lock was compiled from, so this script adds
that to the lock's header: the SHA-256 of every input file (the list and the files it names
with -r/-c, comments and blank lines left out). ``check`` recomputes them, offline, and fails
when a list changed after its lock was compiled; it also checks that every pin has hashes and
that the two locks agree on the packages they share.

Compiling asks PyPI only, with this machine's pip configuration left out
(``PIP_CONFIG_FILE=/dev/null``): a local index or wheel directory could offer files PyPI does
not have, and their hashes would make the lock uninstallable anywhere else.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
#: lock -> the hand-edited list it is compiled from; in this order (dev needs the prod lock).
LOCKS = {"requirements.lock": "requirements.txt", "requirements-dev.lock": "requirements-dev.txt"}
INDEX_URL = "https://pypi.org/simple"
INPUT_LINE = re.compile(r"^# input: (?P<path>\S+) sha256=(?P<digest>[0-9a-f]{64})$")
PIN = re.compile(r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)==(?P<version>\S+)")
HEADER = (
    "# Compiled from these files (SHA-256 of their lines without comments and blank lines);\n"
    "# `make lint` fails when one of them changed after this file was compiled:\n"
)


def significant_lines(path: Path) -> list[str]:
    lines = []
    for raw in path.read_text().splitlines():
        line = raw.split(" #", 1)[0].strip() if not raw.lstrip().startswith("#") else ""
        if line:
            lines.append(line)
    return lines


def inputs(requirements: str) -> list[str]:
    """The file and every file it names with -r / -c, recursively, relative to ROOT."""
    found: list[str] = []

    def visit(name: str) -> None:
        if name in found:
            return
        found.append(name)
        for line in significant_lines(ROOT / name):
            option, _, target = line.partition(" ")
            if option in {"-r", "-c", "--requirement", "--constraint"}:
                visit(target.strip())

    visit(requirements)
    return found


def digest(name: str) -> str:
    text = "\n".join(significant_lines(ROOT / name)) + "\n"
    return hashlib.sha256(text.encode()).hexdigest()


def header_lines(requirements: str) -> str:
    return HEADER + "".join(
        f"# input: {name} sha256={digest(name)}\n" for name in inputs(requirements)
    )


def compile_lock(lock: str, requirements: str, upgrade: list[str]) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    env["PIP_CONFIG_FILE"] = os.devnull  # no local indexes, find-links or constraints
    env["CUSTOM_COMPILE_COMMAND"] = "make lock"  # pip-compile names it in the header
    command = [
        str(Path(sys.executable).with_name("pip-compile")),
        "--quiet",
        "--generate-hashes",
        "--allow-unsafe",  # pip and setuptools are pinned too: everything that is installed
        "--strip-extras",
        "--no-emit-index-url",
        f"--index-url={INDEX_URL}",
        f"--output-file={lock}",
        *[f"--upgrade-package={name}" for name in upgrade],
        requirements,
    ]
    subprocess.run(command, cwd=ROOT, env=env, check=True)
    path = ROOT / lock
    lines = path.read_text().splitlines(keepends=True)
    # After pip-compile's own header: the comment lines the file starts with.
    end = next(n for n, line in enumerate(lines) if not line.startswith("#"))
    path.write_text("".join([*lines[:end], header_lines(requirements), "#\n", *lines[end:]]))
    print(f"{lock}: compiled from {', '.join(inputs(requirements))}")


def pins(lock: str) -> dict[str, str]:
    """{normalized name: version} of a lock; fails on a pin without a hash."""
    found: dict[str, str] = {}
    entries = re.split(r"\n(?=\S)", (ROOT / lock).read_text())
    for entry in entries:
        match = PIN.match(entry)
        if not match:
            continue
        name = re.sub(r"[-_.]+", "-", match["name"]).lower()
        if "--hash=sha256:" not in entry:
            raise SystemExit(f"{lock}: {name} is pinned without a hash")
        found[name] = match["version"]
    return found


def check() -> list[str]:
    problems = []
    for lock, requirements in LOCKS.items():
        path = ROOT / lock
        if not path.exists():
            problems.append(f"{lock} is missing: run `make lock`")
            continue
        recorded = {
            m["path"]: m["digest"]
            for m in map(INPUT_LINE.match, path.read_text().splitlines())
            if m
        }
        wanted = inputs(requirements)
        if set(recorded) != set(wanted):
            problems.append(f"{lock} was compiled from {sorted(recorded)}, not {wanted}")
        for name in wanted:
            if name in recorded and recorded[name] != digest(name):
                problems.append(f"{lock} is out of date: {name} changed since it was compiled")
    if not problems:
        prod, dev = (pins(lock) for lock in LOCKS)
        for name, version in prod.items():
            if dev.get(name, version) != version:
                problems.append(f"{name}: {version} in requirements.lock, {dev[name]} in dev")
            if name not in dev:
                problems.append(f"{name} is in requirements.lock but not in the dev lock")
    return problems


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    compile_parser = commands.add_parser("compile", help="compile both locks (needs PyPI)")
    compile_parser.add_argument(
        "--upgrade-package", "-P", action="append", default=[], metavar="NAME",
        help="let pip-compile move this package (e.g. a transitive one) to its newest version",
    )  # fmt: skip
    commands.add_parser("check", help="fail when a lock is out of date with its list (offline)")
    args = parser.parse_args()
    if args.command == "compile":
        for lock, requirements in LOCKS.items():
            compile_lock(lock, requirements, args.upgrade_package)
        return 0
    problems = check()
    for problem in problems:
        print(f"lock check: {problem}", file=sys.stderr)
    if problems:
        print("lock check: run `make lock` (docs/development.md: Dependencies)", file=sys.stderr)
        return 1
    print(f"lock check: {', '.join(LOCKS)} up to date with their requirement lists")
    return 0


if __name__ == "__main__":
    sys.exit(main())
