"""Ctrl-C (or SIGTERM) in a sweep process: make sure it is acted on, stop writing, and mark
the running trials interrupted within seconds."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Sequence
from typing import Protocol

from numsweep.shield import interrupt, interrupt_pending
from numsweep.storage import Storage

HEARTBEAT_JOIN_SECONDS = 2.0
"""How long an interrupt waits for the heartbeat thread's last write to end."""


class _Beating(Protocol):
    thread: threading.Thread

    def stop(self) -> None: ...


def mark_interrupted(storage: Storage, heart: _Beating, trial_ids: Sequence[int],
                     message: str, *, sweep_id: int | None, worker: str) -> int:
    """Mark this process's running trials INTERRUPTED; returns how many were.

    The heartbeat thread is stopped and waited for first, so that no other thread of this
    process writes; the interrupt itself cut no transaction short (:mod:`numsweep.shield`), so
    no lock of this process is left behind, and the marking waits only briefly for other
    processes' locks."""
    acting_on_interrupt()
    heart.stop()
    if heart.thread.is_alive() and heart.thread is not threading.current_thread():
        heart.thread.join(HEARTBEAT_JOIN_SECONDS)
    return storage.interrupt_trials_promptly(trial_ids, message, sweep_id=sweep_id,
                                             worker=worker)


class TrialInterrupted(KeyboardInterrupt):
    """Ctrl-C stopped a trial this process trained by itself (``numsweep train``,
    ``range-test``, ``trial rerun``); the message says what became of it."""


def single_interrupted(storage: Storage, trial_id: int, hint: str) -> TrialInterrupted:
    """Mark trial ``trial_id``, trained in this process outside a sweep, INTERRUPTED on
    Ctrl-C (left RUNNING it would stay so: nothing takes a trial of a single run for lost),
    and return the interrupt to raise."""
    acting_on_interrupt()
    marked = storage.interrupt_trials_promptly(
        [trial_id], "interrupted (Ctrl-C or SIGTERM)" + (f"; {hint}" if hint else ""))
    return TrialInterrupted(f"trial {trial_id} interrupted" + (f"; {hint}" if hint else "")
                            if marked else "interrupted")


REDELIVER_SECONDS = 3.0
"""How long a Ctrl-C that the sweep has not acted on waits before it is raised again (one that
Python reported dropping is raised again at once, by the hook of
:func:`numsweep.shield.install_sigint_handler`)."""
HARD_EXIT_SECONDS = 15.0
"""A process still running this long after Ctrl-C ends at once with exit code 130 (its
running trials, if not marked, are taken for lost by the next resume: its pid is gone)."""


class InterruptGuard:
    """Ctrl-C and SIGTERM raise KeyboardInterrupt in the main thread (as the database work
    under way ends: :mod:`numsweep.shield`), and again after :data:`REDELIVER_SECONDS` until
    :func:`mark_interrupted` has begun: one can be lost without a trace (one that Python
    reports dropping, in a weakref callback or ``__del__``, the command's
    :func:`numsweep.shield.install_sigint_handler` raises again at once). Should the clean-up
    itself hang, the process ends :data:`HARD_EXIT_SECONDS` after the first signal."""

    active: InterruptGuard | None = None

    def __init__(self) -> None:
        self.acted = threading.Event()
        self.signalled = threading.Event()
        self.previous: dict[int, object] = {}
        self.installed = False

    def __enter__(self) -> InterruptGuard:
        if threading.current_thread() is not threading.main_thread():
            return self  # signals reach the main thread only: leave them alone
        for signum in (signal.SIGINT, signal.SIGTERM):
            self.previous[signum] = signal.signal(signum, self._on_signal)
        InterruptGuard.active = self
        self.installed = True
        return self

    def __exit__(self, *_exc: object) -> None:
        if not self.installed:
            return
        self.acted.set()
        for signum, handler in self.previous.items():
            signal.signal(signum, handler)  # type: ignore[arg-type]
        InterruptGuard.active = None

    def _on_signal(self, _signum: int, _frame: object) -> None:
        if self.acted.is_set():
            return  # stopping already: a second Ctrl-C does not cut the clean-up short
        if not self.signalled.is_set():
            self.signalled.set()
            threading.Thread(target=self._redeliver, name="numsweep-interrupt",
                             daemon=True).start()
        interrupt()  # now, or as the database work under way ends

    def _redeliver(self) -> None:
        give_up = time.monotonic() + HARD_EXIT_SECONDS
        quiet_since = time.monotonic()
        while time.monotonic() < give_up:
            if self.acted.wait(0.1):
                continue
            if interrupt_pending():  # a shielded block raises it as it ends
                quiet_since = time.monotonic()
                continue
            if time.monotonic() - quiet_since > REDELIVER_SECONDS:
                quiet_since = time.monotonic()
                os.kill(os.getpid(), signal.SIGINT)
        os.write(2, b"interrupted: the clean-up did not end in time; exiting (a resume takes "
                    b"the trials still running for lost)\n")
        os._exit(130)

def acting_on_interrupt() -> None:
    """The sweep acts on Ctrl-C from here on: no more re-raised interrupts."""
    guard = InterruptGuard.active
    if guard is not None:
        guard.acted.set()
