"""Curve points of running trials, from the worker that measures them to the process that
owns the database (which stores them, tells Optuna and shows them): :func:`open_channel`.

Workers never touch the database (see ``worker.py``), so each point travels to the sweep's
process, the one that claimed the trial. The channel is the simplest one each backend has:

- ``--jobs 1``: the trial trains in the sweep's own process: the point is handed over at once
  (:class:`DirectPoints`);
- loky worker processes (this machine): each point is one line appended to the trial's file
  ``live-<trial id>.jsonl`` in a folder of the sweep process (:class:`FilePoints`), read
  by the sweep process in its wait loop. A line is written whole as it is measured, so a
  worker killed mid-trial has passed on every point it measured; there is no server to
  start or to outlive a killed sweep (a ``multiprocessing`` Manager's process would), nothing
  to connect to, and the folder goes with the sweep's shared-data folder (removed when the
  sweep ends, or by the next sweep when it was killed);
- Dask: the workers may be other machines without a shared folder, but each reaches the
  scheduler: a ``distributed.Queue`` there (:class:`DaskPoints`).

A point lost on the way (a full disk, a scheduler gone) only leaves the running trial's live
curve short: the whole curve is stored when the trial ends, as before.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Callable, Sequence
from contextlib import suppress
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from numsweep.engine import CurvePoint
from numsweep.storage import CurveRecord, Storage, StorageError

Message = tuple[int, int, tuple[CurvePoint, ...]]
"""(numsweep trial id, the trial's planned updates, the points it just measured)."""


def _encode(trial_id: int, total: int, points: Sequence[CurvePoint]) -> list[Any]:
    return [trial_id, total, [[p.step, p.split, p.loss, p.cost, p.acc, p.lr] for p in points]]


def _decode(raw: Sequence[Any]) -> Message:
    trial_id, total, points = raw
    return int(trial_id), int(total), tuple(
        CurvePoint(int(s), str(sp), float(lo), float(c), float(a), float(lr))
        for s, sp, lo, c, a, lr in points)


class DirectPoints:
    """The trial trains in this process: each point goes to ``handle`` at once."""

    def __init__(self, handle: Callable[[list[Message]], None]) -> None:
        self.handle = handle

    def put(self, trial_id: int, total: int, points: Sequence[CurvePoint]) -> None:
        self.handle([(trial_id, total, tuple(points))])


@dataclass(frozen=True)
class FilePoints:
    """Worker side of the loky channel: appends a JSON line per point to the trial's file."""

    folder: str

    def put(self, trial_id: int, total: int, points: Sequence[CurvePoint]) -> None:
        line = json.dumps(_encode(trial_id, total, points)) + "\n"
        # one write of a whole line to a file opened for appending: never half a line
        # beside another writer's, and whole once written
        fd = os.open(Path(self.folder) / f"live-{trial_id}.jsonl",
                     os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, line.encode())
        finally:
            os.close(fd)


@dataclass(frozen=True)
class DaskPoints:
    """Worker side of the Dask channel: the scheduler's queue ``name``."""

    name: str

    def put(self, trial_id: int, total: int, points: Sequence[CurvePoint]) -> None:
        _dask_queue(self.name).put(_encode(trial_id, total, points))


@lru_cache(maxsize=4)
def _dask_queue(name: str) -> Any:
    """The queue, made once per worker process (through the worker's client)."""
    from distributed import Queue

    return Queue(name)


class FileChannel:
    """Sweep side of :class:`FilePoints`: reads the lines added since the last look."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.sink = FilePoints(str(folder))
        self.read: dict[Path, int] = {}  # file -> bytes taken so far

    def take(self) -> list[Message]:
        out: list[Message] = []
        try:
            paths = sorted(self.folder.glob("live-*.jsonl"))
        except OSError:
            return out
        for path in paths:
            start = self.read.get(path, 0)
            try:
                with path.open("rb") as f:
                    f.seek(start)
                    data = f.read()
            except OSError:
                continue
            whole = data[: data.rfind(b"\n") + 1]  # a line being written waits for the next look
            self.read[path] = start + len(whole)
            for line in whole.splitlines():
                with suppress(ValueError):
                    out.append(_decode(json.loads(line)))
        return out

    def forget(self, trial_id: int) -> None:
        path = self.folder / f"live-{trial_id}.jsonl"
        self.read.pop(path, None)
        path.unlink(missing_ok=True)

    def close(self) -> None:
        pass  # the folder is the shared-data folder's: removed with it


class DaskChannel:
    """Sweep side of :class:`DaskPoints`: takes what the scheduler's queue holds."""

    def __init__(self, client: Any) -> None:
        from distributed import Queue

        self.queue = Queue(f"numsweep-live-{uuid.uuid4().hex}", client=client)
        self.sink = DaskPoints(self.queue.name)

    def take(self) -> list[Message]:
        try:
            if not self.queue.qsize():
                return []
            return [_decode(raw) for raw in self.queue.get(batch=True)]
        except Exception:  # the scheduler went away: the trials' ends say what is lost
            return []

    def forget(self, trial_id: int) -> None:
        pass

    def close(self) -> None:
        pass


class DirectChannel:
    """Sweep side of :class:`DirectPoints`: nothing waits to be taken."""

    def __init__(self, handle: Callable[[list[Message]], None]) -> None:
        self.sink = DirectPoints(handle)

    def take(self) -> list[Message]:
        return []

    def forget(self, trial_id: int) -> None:
        pass

    def close(self) -> None:
        pass


Channel = FileChannel | DaskChannel | DirectChannel


def open_channel(pool: Any, folder: Callable[[], Path] | None,
                 handle: Callable[[list[Message]], None]) -> Channel:
    """The channel for trials run by ``pool`` (a ``make_executor`` executor): Dask's queue
    for a Dask cluster, the ``folder()`` files for worker processes of this machine, else
    (``--jobs 1``) ``handle`` called at once."""
    from numsweep.sweeps.executors import DaskExecutor, InlineExecutor

    if isinstance(pool, DaskExecutor):
        return DaskChannel(pool.client)
    if isinstance(pool, InlineExecutor) or folder is None:
        return DirectChannel(handle)
    return FileChannel(folder())


def curve_records(trial_id: int, points: Sequence[CurvePoint]) -> list[CurveRecord]:
    return [CurveRecord(trial_id, p.step, p.split, p.loss, p.cost, p.acc, p.lr)
            for p in points]


def store_points(storage: Storage, trial_id: int, points: Sequence[CurvePoint]) -> bool:
    """Store a running trial's points (:meth:`Storage.add_running_curve_points`); False
    when the trial no longer runs or the database did not take them (they are stored with
    its whole curve when it ends)."""
    try:
        return storage.add_running_curve_points(trial_id, curve_records(trial_id, points))
    except StorageError:
        return False


def watcher(sink: Any, trial_id: int) -> Callable[[tuple[CurvePoint, ...], int], None]:
    """The engine's point watcher (``engine.train.PointWatcher``) of one trial: puts its
    points into ``sink``; a channel that broke never stops the training."""

    def watch(points: tuple[CurvePoint, ...], total: int) -> None:
        with suppress(Exception):
            sink.put(trial_id, total, points)

    return watch
