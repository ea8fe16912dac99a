"""Which trial a dead worker process was running.

When one loky worker dies (killed, out of memory), loky fails every trial in flight and kills
the other workers, so the exception alone cannot say whose trial killed it. Each worker
therefore leaves ``running-<trial id>.pid`` (its pid) in the sweep's shared-data folder while
it runs a trial, and a thread of the sweep process watches those processes (Linux pidfds)
and notes the order they die in: the first to die in a burst ran the trial that counts as
lost; the others were killed by loky or never started, and run again without counting.
"""

from __future__ import annotations

import contextlib
import os
import select
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from numsweep.storage import Storage

LOST_PREFIX = "worker process lost"
"""How the message of an attempt lost with its worker begins (these are counted)."""
BURST_SECONDS = 5.0
"""Deaths within this long after a first one are taken as loky's clean-up of the pool."""
POLL_MS = 50


def _pid_file(folder: str | Path, trial_id: int) -> Path:
    return Path(folder) / f"running-{trial_id}.pid"


def execute_announced(task: Any) -> Any:
    """:func:`numsweep.sweeps.worker.execute` in a worker process, leaving the pid file
    while the trial runs (when the task has a shared-data folder)."""
    from numsweep.sweeps.worker import execute

    if task.shared is None:
        return execute(task)
    path = _pid_file(task.shared.folder, task.trial_id)
    with contextlib.suppress(OSError):  # else the watcher does not know: the loss counts
        path.write_text(str(os.getpid()))
    try:
        return execute(task)
    finally:
        path.unlink(missing_ok=True)


def execute_group_announced(task: Any) -> Any:
    """:func:`numsweep.sweeps.worker.execute_group` in a worker process, leaving a pid file
    for each trial of the group while the group runs (all name this process: a group dies
    whole)."""
    from numsweep.sweeps.worker import execute_group

    paths = [_pid_file(t.shared.folder, t.trial_id) for t in task.trials
             if t.shared is not None]
    for path in paths:
        with contextlib.suppress(OSError):  # else the watcher does not know: the loss counts
            path.write_text(str(os.getpid()))
    try:
        return execute_group(task)
    finally:
        for path in paths:
            path.unlink(missing_ok=True)


def execute_slots_announced(task: Any) -> Any:
    """:func:`numsweep.sweeps.slot_training.execute_slots` in a worker process, leaving a
    pid file for each trial while it is a member of the group (members change at each
    refill: only the trials the group holds when it dies count as its)."""
    from numsweep.sweeps.slot_training import execute_slots

    written: set[Path] = set()

    def join(tasks: Any) -> None:
        for t in tasks:
            if t.shared is not None:
                path = _pid_file(t.shared.folder, t.trial_id)
                with contextlib.suppress(OSError):  # else the watcher does not know
                    path.write_text(str(os.getpid()))
                    written.add(path)

    def leave(tasks: Any) -> None:
        for t in tasks:
            if t.shared is not None:
                path = _pid_file(t.shared.folder, t.trial_id)
                path.unlink(missing_ok=True)
                written.discard(path)

    try:
        return execute_slots(task, on_join=join, on_leave=leave)
    finally:
        for path in written:
            path.unlink(missing_ok=True)


class DeathWatch:
    """A daemon thread that notes when the worker processes named by pid files die."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.lock = threading.Lock()
        self.died: dict[int, tuple[int, float]] = {}  # pid -> (burst poll number, time)
        self.watched: dict[str, int] = {}  # pid file name -> pid
        self.seen_at: dict[int, float] = {}  # pid -> when it was first watched
        self.polls = 0
        self.thread = threading.Thread(target=self._watch, name="numsweep-deaths",
                                       daemon=True)
        self.thread.start()

    def _watch(self) -> None:
        poller = select.poll()
        fds: dict[int, int] = {}
        while self.folder.is_dir():
            try:
                paths = list(self.folder.glob("running-*.pid"))
            except OSError:
                break  # the sweep removed its folder: it is over
            for path in paths:
                if path.name in self.watched:
                    continue
                try:
                    pid = int(path.read_text())
                    fd = os.pidfd_open(pid)
                except (OSError, ValueError, AttributeError):
                    continue  # not written yet, gone already, or no pidfds here
                self.watched[path.name] = pid
                with self.lock:
                    self.seen_at.setdefault(pid, time.monotonic())
                fds[fd] = pid
                poller.register(fd, select.POLLIN)
            events = poller.poll(POLL_MS)
            if events:
                with self.lock:
                    self.polls += 1
                    now = time.monotonic()
                    for fd, _ in events:
                        self.died[fds.pop(fd)] = (self.polls, now)
                        poller.unregister(fd)
                        os.close(fd)
        for fd in fds:
            os.close(fd)

    def was_first_to_die(self, trial_id: int, patience: float = 1.0) -> bool | None:
        """True when the worker running ``trial_id`` died first in its burst of deaths,
        False when another died before it or the trial never started on a worker, None
        when it cannot be told (then the loss counts)."""
        path = _pid_file(self.folder, trial_id)
        try:
            pid = int(path.read_text())
        except FileNotFoundError:
            return False  # queued, never started: nothing of it ran
        except (OSError, ValueError):
            return None
        give_up = time.monotonic() + patience
        while True:
            with self.lock:
                # deaths before this one, while this worker was already running: those
                # broke the pool it was in (a death before it started broke an older pool)
                death = self.died.get(pid)
                born = self.seen_at.get(pid, 0.0)
                earlier = [t for p, (n, t) in self.died.items()
                           if death is not None and n < death[0] and t >= born
                           and death[1] - t <= BURST_SECONDS]
            if death is not None:
                path.unlink(missing_ok=True)
                return not earlier
            if time.monotonic() > give_up or path.name not in self.watched:
                return None
            time.sleep(0.02)


_WATCHES: dict[str, DeathWatch] = {}


def watch_worker_deaths(shared: Any) -> None:
    """Start watching the worker processes of the shared-data folder (once per folder)."""
    if shared is None or not hasattr(os, "pidfd_open"):
        return
    for stale in [f for f, w in _WATCHES.items() if not w.thread.is_alive()]:
        del _WATCHES[stale]
    if str(shared.folder) not in _WATCHES:
        _WATCHES[str(shared.folder)] = DeathWatch(Path(shared.folder))


@dataclass(frozen=True)
class LossVerdict:
    """What to do with a trial whose worker pool broke: ``fail`` it (lost too often), or
    run it again; ``message`` is stored with the interrupted or failed attempt."""

    fail: bool
    message: str
    short: str


def judge_worker_loss(storage: Storage, trial_id: int, exc: BaseException,
                      folder: str | Path | None, max_lost: int) -> LossVerdict:
    """Count the loss against ``trial_id`` only if its own worker died first (``folder``:
    the sweep's shared-data folder); fail it when that makes ``max_lost`` losses of its
    planned trial (attempts lost for other reasons, such as Ctrl-C, do not count)."""
    watch = _WATCHES.get(str(folder)) if folder is not None else None
    first = watch.was_first_to_die(trial_id) if watch is not None else None
    why = f"{type(exc).__name__}"
    if first is False:
        return LossVerdict(False, f"re-queued: another worker process died ({why}); runs "
                                  f"again, not counted as lost", "re-queued")
    lost = storage.count_lost_attempts(trial_id, LOST_PREFIX) + 1
    if lost >= max_lost:
        return LossVerdict(True, f"{LOST_PREFIX} {lost} times: {why}: {exc}", "failed")
    return LossVerdict(False, f"{LOST_PREFIX} ({why}; {lost} of {max_lost}); runs again",
                       "worker process lost")
