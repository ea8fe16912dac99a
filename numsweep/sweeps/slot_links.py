"""The line between a slot group's feed (in the worker that trains it) and the sweep process
that owns the stage (which stores ended trials, asks Optuna and claims the next ones):
:func:`open_link`.

A feed asks two questions (``engine.slots.Feed``): ``refill`` (these trials ended, give me
trials for my free slots) and ``report`` (these trials are at a period end, which do I
stop?). Each is one request and one answer; the worker waits for the answer. The line is the
simplest one each backend has, as for curve points (``live.py``):

- ``--jobs 1``: the group trains in the sweep's own process: the question is a call
  (:class:`DirectLink`);
- loky worker processes (this machine): a request is a file in the sweep's shared-data folder
  (``slotreq-<group>-<n>.pkl``, written whole by a rename), answered by a file
  ``slotans-<group>-<n>.pkl``; the sweep process looks every :data:`SERVE_SECONDS` while slot
  groups run, and the worker every :data:`ANSWER_POLL_SECONDS` (:class:`FileLink`);
- Dask: the scheduler's queues, one for the requests of all groups and one per group for
  its answers (:class:`DaskLink`).

A worker whose sweep process is gone (its folder removed, its parent changed, its scheduler
away) gets :class:`LinkBroken`: its group ends, its trials are taken for lost by the next
resume.
"""

from __future__ import annotations

import os
import pickle
import time
import uuid
from collections.abc import Callable, Sequence
from contextlib import suppress
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

SERVE_SECONDS = 0.015
"""How often the sweep process looks for requests of its slot groups while they run."""
ANSWER_POLL_SECONDS = 0.002
"""How often a worker looks for the answer to its request."""
GONE_CHECK_SECONDS = 1.0
"""How often a waiting worker checks that its sweep process is still there."""

Request = tuple[str, int, Any]
"""(``"refill"`` or ``"report"``, the group's id, the question's arguments)."""


class LinkBroken(RuntimeError):
    """The sweep process that owns the group is gone: no answer will come."""


class SweepSideError(Exception):
    """The sweep process could not answer (its database went away, ...): raised through
    the group trained in its own process, then as ``error`` again outside it, so that the
    sweep stops as it does on that error, not failing the group's trials."""

    def __init__(self, error: Exception) -> None:
        super().__init__(str(error))
        self.error = error


Answer = Callable[[str, int, Any], Any]
"""The sweep side: answers one request (kind, group id, arguments)."""


class DirectLink:
    """The group trains in the sweep's process: each question is a call of ``answer``."""

    def __init__(self, answer: Answer) -> None:
        self.answer = answer

    def ask(self, kind: str, group: int, args: Any) -> Any:
        try:
            return self.answer(kind, group, args)
        except Exception as exc:
            raise SweepSideError(exc) from exc


def _write_whole(path: Path, payload: bytes) -> None:
    part = path.with_name(path.name + ".part")
    part.write_bytes(payload)
    part.replace(path)  # a reader never sees half a request


@dataclass(frozen=True)
class FileLink:
    """Worker side of the loky line: files in the sweep's shared-data folder."""

    folder: str

    def ask(self, kind: str, group: int, args: Any) -> Any:
        folder = Path(self.folder)
        tag = f"{group}-{uuid.uuid4().hex[:12]}"
        parent = os.getppid()
        answer = folder / f"slotans-{tag}.pkl"
        _write_whole(folder / f"slotreq-{tag}.pkl", pickle.dumps((kind, group, args)))
        checked = time.monotonic()
        while True:
            try:
                payload = answer.read_bytes()
            except FileNotFoundError:
                now = time.monotonic()
                if now - checked > GONE_CHECK_SECONDS:
                    checked = now
                    if not folder.is_dir() or os.getppid() != parent:
                        raise LinkBroken("the sweep process is gone") from None
                time.sleep(ANSWER_POLL_SECONDS)
                continue
            answer.unlink(missing_ok=True)
            return _unpacked(payload)


def _unpacked(payload: bytes) -> Any:
    ok, value = pickle.loads(payload)  # written by this machine's sweep process
    if not ok:
        raise RuntimeError(value)
    return value


@dataclass(frozen=True)
class DaskLink:
    """Worker side of the Dask line: the scheduler's queue ``name`` for requests, and
    ``name-<group>`` for the group's answers."""

    name: str

    def ask(self, kind: str, group: int, args: Any) -> Any:
        from distributed import Queue

        _dask_queue(self.name).put(pickle.dumps((kind, group, args)))
        try:
            payload = Queue(f"{self.name}-{group}").get()
        except Exception as exc:  # the scheduler went away
            raise LinkBroken(f"the Dask scheduler is gone: {exc}") from None
        return _unpacked(payload)


@lru_cache(maxsize=4)
def _dask_queue(name: str) -> Any:
    from distributed import Queue

    return Queue(name)


def _answered(answer: Answer, kind: str, group: int, args: Any
              ) -> tuple[bytes, Exception | None]:
    """The answer as the worker reads it, and the error of the sweep side, if any (the
    worker's group fails with its message; the sweep process raises it once answered)."""
    try:
        return pickle.dumps((True, answer(kind, group, args))), None
    except Exception as exc:
        return pickle.dumps((False, f"the sweep process could not answer: "
                                    f"{type(exc).__name__}: {exc}")), exc


class FileServer:
    """Sweep side of :class:`FileLink`: answers the requests waiting in ``folder``."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.link = FileLink(str(folder))

    def serve(self, answer: Answer) -> int:
        try:
            paths = sorted(self.folder.glob("slotreq-*.pkl"),
                           key=lambda p: p.stat().st_mtime_ns)
        except OSError:
            return 0
        for path in paths:
            try:
                kind, group, args = pickle.loads(path.read_bytes())
            except (OSError, EOFError, pickle.UnpicklingError):
                continue
            path.unlink(missing_ok=True)
            tag = path.name[len("slotreq-"):]
            payload, error = _answered(answer, kind, group, args)
            _write_whole(self.folder / f"slotans-{tag}", payload)
            if error is not None:
                raise error
        return len(paths)


class DaskServer:
    """Sweep side of :class:`DaskLink`."""

    def __init__(self, client: Any) -> None:
        from distributed import Queue

        self.client = client
        self.requests = Queue(f"numsweep-slots-{uuid.uuid4().hex}", client=client)
        self.link = DaskLink(self.requests.name)

    def serve(self, answer: Answer) -> int:
        from distributed import Queue

        try:
            if not self.requests.qsize():
                return 0
            raws: Sequence[bytes] = self.requests.get(batch=True)
        except Exception:  # the scheduler went away: the groups' ends say what is lost
            return 0
        failed: Exception | None = None
        for raw in raws:
            kind, group, args = pickle.loads(raw)
            payload, error = _answered(answer, kind, group, args)
            failed = failed or error
            with suppress(Exception):  # the scheduler went away: the group's end says so
                Queue(f"{self.requests.name}-{group}", client=self.client).put(payload)
        if failed is not None:
            raise failed
        return len(raws)


class DirectServer:
    """Sweep side of :class:`DirectLink`: nothing waits to be served."""

    def __init__(self, answer: Answer) -> None:
        self.link = DirectLink(answer)

    def serve(self, answer: Answer) -> int:
        return 0


Server = FileServer | DaskServer | DirectServer


def open_link(pool: Any, folder: Callable[[], Path] | None, answer: Answer) -> Server:
    """The line for slot groups run by ``pool`` (a ``make_executor`` executor): Dask's
    queues for a Dask cluster, files in ``folder()`` for worker processes of this machine,
    else (``--jobs 1``) ``answer`` called at once."""
    from numsweep.sweeps.executors import DaskExecutor, InlineExecutor

    if isinstance(pool, DaskExecutor):
        return DaskServer(pool.client)
    if isinstance(pool, InlineExecutor) or folder is None:
        return DirectServer(answer)
    return FileServer(folder())
