"""How a lost trial is detected: heartbeats of running trials, and the checks that tell a
trial whose process is gone (killed, machine lost) from one still running elsewhere."""

from __future__ import annotations

import os
import socket
import threading
from contextlib import suppress
from datetime import UTC, datetime

from numsweep.defaults import DEFAULT_GRACE as DEFAULT_GRACE  # shown by the CLI's --grace
from numsweep.storage import SlotRecord, Storage, StorageError, TrialState

POLL_SECONDS = 0.5
"""How often a process waiting on trials that other processes run looks at the database."""
MAX_LOST_ATTEMPTS = 3
"""A trial whose worker process dies this many times (it may be what kills it) is failed."""
HEARTBEAT_MAX_SECONDS = 10.0
"""The longest pause between two heartbeats (shorter for a short grace: a quarter of it)."""


class Heartbeat:
    """A daemon thread that stamps ``heartbeat_at`` of this process's running trials every
    ``interval`` seconds, so other processes can tell them from trials of a dead process."""

    def __init__(self, storage: Storage, interval: float) -> None:
        self.storage = storage
        self.interval = interval
        self.ids: set[int] = set()
        self.lock = threading.Lock()
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._beat, name="numsweep-heartbeat",
                                       daemon=True)

    def start(self) -> None:
        self.thread.start()

    def add(self, trial_id: int) -> None:
        with self.lock:
            self.ids.add(trial_id)

    def remove(self, trial_id: int) -> None:
        with self.lock:
            self.ids.discard(trial_id)

    def stop(self) -> None:
        self.stopped.set()

    def _beat(self) -> None:
        while not self.stopped.wait(self.interval):
            with self.lock:
                ids = sorted(self.ids)
            # a busy database: the next beat tries again, well within the grace
            with suppress(StorageError):
                self.storage.heartbeat(ids)


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def is_gone(worker: str) -> bool:
    """Whether ``worker`` (``host:pid``) was a process on this machine that no longer exists."""
    host, _, pid = worker.rpartition(":")
    return (host == socket.gethostname() and pid.isdigit() and int(pid) != os.getpid()
            and not pid_alive(int(pid)))


def is_lost(slot: SlotRecord, grace: float, now: datetime) -> bool:
    """Whether a RUNNING attempt's process is gone: no heartbeat for ``grace`` seconds, or it
    was started on this machine by a process that no longer exists."""
    if slot.state is not TrialState.RUNNING:
        return False
    if is_gone(slot.worker):
        return True
    return slot.heartbeat_at is None or (now - slot.heartbeat_at).total_seconds() > grace


def utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def heartbeat_interval(grace: float) -> float:
    return min(HEARTBEAT_MAX_SECONDS, grace / 4)
