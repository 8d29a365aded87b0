"""The outbox relay in tests: one pass in the test's process, or a real relay process."""

from __future__ import annotations

from pathlib import Path

from notifications import services
from shop.models import OutboxMessage
from shop.outbox.relay import RelayCounts, outbox_relay_once
from tests.pipeline import ChildProcess, wait_for


def relay_once() -> RelayCounts:
    """What ``manage.py outbox_relay --once`` does, in this process (this test's connection
    sees the rows the test wrote, committed or not)."""
    return outbox_relay_once(on_published=services.confirmation_queued_record)


def pending() -> int:
    return OutboxMessage.objects.count()


class Relay(ChildProcess):
    """``manage.py outbox_relay`` against the session's emulator and the test database."""

    def start(self, *, wait: bool = True) -> Relay:
        self.spawn("manage", "outbox_relay")
        if wait:
            self.wait_started()
        return self

    def wait_started(self) -> None:
        wait_for(
            lambda: "outbox relay started" in self.text(),
            timeout=60,
            what=f"outbox relay up ({self.log})",
        )

    def terminate(self) -> None:
        import os
        import signal

        if self.process and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGTERM)


def relay_process(log: Path, **env: str) -> Relay:
    return Relay(log, env=env).start()
