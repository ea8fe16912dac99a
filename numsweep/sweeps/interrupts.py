"""Ctrl-C (or SIGTERM) in a sweep process: stop writing, drop this process's own database
locks, and mark the running trials interrupted within a few seconds."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Protocol

from numsweep.storage import Storage

HEARTBEAT_JOIN_SECONDS = 2.0
"""How long an interrupt waits for the heartbeat thread's last write to end."""


class _Beating(Protocol):
    thread: threading.Thread

    def stop(self) -> None: ...


def mark_interrupted(storage: Storage, heart: _Beating, trial_ids: Sequence[int],
                     message: str, *, sweep_id: int | None, worker: str) -> int:
    """Mark this process's running trials INTERRUPTED; returns how many were.

    The heartbeat thread is stopped and waited for first, so that no thread of this process
    writes; then any write transaction that the interrupt cut short in this process is rolled
    back (else the marking would wait on a lock its own process holds, up to the busy
    timeout), and the marking waits only briefly for other processes' locks."""
    heart.stop()
    if heart.thread.is_alive() and heart.thread is not threading.current_thread():
        heart.thread.join(HEARTBEAT_JOIN_SECONDS)
    return storage.interrupt_trials_promptly(trial_ids, message, sweep_id=sweep_id,
                                             worker=worker)
