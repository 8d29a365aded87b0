"""Watching the outside while a fault is injected: queue depths over time, pool processes.

- ``DepthSampler`` reads the order queue's and the DLQ's counts (visible, in flight, delayed)
  every 50 ms in a thread, for "exactly one message at every moment" checks.
- ``sender_pid`` finds which process of a worker owns a TCP connection (by the client port a
  proxy saw), so a test kills the pool child that is really sending, and nothing else.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from tests.pipeline import sqs


@dataclass(frozen=True)
class Depth:
    at: float  # time.monotonic()
    visible: int
    in_flight: int
    delayed: int
    dead: int  # every message in the DLQ, in whatever state

    @property
    def total(self) -> int:
        return self.visible + self.in_flight + self.delayed + self.dead


def queue_depth(queue_url: str) -> tuple[int, int, int]:
    """(visible, in flight, delayed) messages: SQS's three approximate counts."""
    attributes = sqs().get_queue_attributes(
        QueueUrl=queue_url,
        AttributeNames=[
            "ApproximateNumberOfMessages",
            "ApproximateNumberOfMessagesNotVisible",
            "ApproximateNumberOfMessagesDelayed",
        ],
    )["Attributes"]
    return (
        int(attributes["ApproximateNumberOfMessages"]),
        int(attributes["ApproximateNumberOfMessagesNotVisible"]),
        int(attributes["ApproximateNumberOfMessagesDelayed"]),
    )


class DepthSampler:
    """``with DepthSampler(queue_url, dlq_url) as depths:`` ... ``depths.samples``."""

    def __init__(self, queue_url: str, dlq_url: str, every: float = 0.05):
        self.queue_url, self.dlq_url, self.every = queue_url, dlq_url, every
        self.samples: list[Depth] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _read(self) -> Depth:
        visible, in_flight, delayed = queue_depth(self.queue_url)
        return Depth(time.monotonic(), visible, in_flight, delayed, sum(queue_depth(self.dlq_url)))

    def _run(self) -> None:
        while not self._stop.is_set():
            depth = self._read()
            # SQS's counts are separate approximations, read at slightly different instants:
            # a message whose visibility timeout ends between two of them is counted in both,
            # and the emulator moves a message to the DLQ in two steps. A changed total is
            # therefore read again until two readings in a row agree: a real second (or a
            # missing) message stays for seconds, a counting artefact for microseconds.
            while self.samples and depth.total != self.samples[-1].total:
                again = self._read()
                if (again.total, again.dead) == (depth.total, depth.dead):
                    break
                depth = again
            self.samples.append(depth)
            self._stop.wait(self.every)

    def __enter__(self) -> DepthSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(10)


def pool_children(pid: int) -> list[int]:
    """Direct children of a process: a Celery worker's prefork pool."""
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def _socket_inodes(local_port: int) -> set[str]:
    """Inodes of the IPv4 TCP sockets bound to 127.0.0.1:local_port."""
    wanted = f"0100007F:{local_port:04X}"
    inodes = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[1] == wanted:
            inodes.add(fields[9])
    return inodes


def sender_pid(worker_pid: int, client_port: int) -> int | None:
    """The process among the worker's pool children that owns the connection whose client
    end is 127.0.0.1:client_port (the port a proxy saw the request come from)."""
    inodes = {f"socket:[{inode}]" for inode in _socket_inodes(client_port)}
    for pid in pool_children(worker_pid):
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(f"/proc/{pid}/fd/{fd}") in inodes:
                    return pid
            except OSError:
                continue
    return None
