"""The lock check of `make lint` (scripts/lock.py): offline, and it fails when it should."""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FILES = ["requirements.txt", "requirements-dev.txt", "requirements.lock", "requirements-dev.lock"]


@pytest.fixture
def lock(tmp_path, monkeypatch):
    """scripts/lock.py, run against a copy of the requirement files in tmp_path."""
    spec = importlib.util.spec_from_file_location("lock_script", ROOT / "scripts" / "lock.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    for name in FILES:
        shutil.copy(ROOT / name, tmp_path / name)
    monkeypatch.setattr(module, "ROOT", tmp_path)
    return module


def _edit(path: Path, old: str, new: str, count: int = 1) -> None:
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, count))


def test_the_committed_locks_are_up_to_date(lock):
    assert lock.check() == []


def test_a_comment_needs_no_new_lock_but_a_pin_does(lock, tmp_path):
    _edit(tmp_path / "requirements.txt", "Django==", "# a note\nDjango==")
    assert lock.check() == []
    _edit(tmp_path / "requirements.txt", "Django==5.2.19", "Django==5.2.20")
    problems = lock.check()
    assert "requirements.lock is out of date: requirements.txt changed" in problems[0]
    # The dev lock is compiled from requirements.txt too (-r), and from the prod lock (-c).
    assert any(p.startswith("requirements-dev.lock is out of date") for p in problems)


def test_the_dev_lock_follows_the_prod_lock(lock, tmp_path):
    _edit(tmp_path / "requirements.lock", "celery==5.7.0", "celery==5.6.0")
    assert lock.check() == [
        "requirements-dev.lock is out of date: requirements.lock changed since it was compiled"
    ]


def test_every_pin_has_hashes_and_both_locks_agree(lock, tmp_path):
    prod, dev = lock.pins("requirements.lock"), lock.pins("requirements-dev.lock")
    assert {"django", "kombu", "urllib3", "cffi"} <= set(prod)  # transitive ones too
    assert {name: dev[name] for name in prod} == prod
    assert {"pytest-xdist", "pip-tools", "pip", "setuptools"} <= set(dev)
    _edit(tmp_path / "requirements.lock", "--hash=sha256:", "--hosh=sha256:", -1)
    with pytest.raises(SystemExit, match="pinned without a hash"):
        lock.pins("requirements.lock")
