"""The worker pool a sweep process submits its trial groups to: the executor of
:func:`executors.make_executor`, made, and made again after a worker died, from the same
settings (jobs, backend, Dask scheduler, connect timeout), so that a replacement is never
another kind of pool than the one the sweep was started with."""

from __future__ import annotations

from concurrent.futures import Future
from contextlib import suppress
from typing import Any

from numsweep.sweeps.executors import DASK_CONNECT_SECONDS, DaskExecutor, make_executor


class WorkerPool:
    """``jobs`` None (Dask only): as many as the cluster has worker threads, found when the
    pool is made; :attr:`jobs` is then the count."""

    def __init__(self, jobs: int | None, backend: str, scheduler: str | None,
                 timeout: float = DASK_CONNECT_SECONDS) -> None:
        self.backend = backend
        self.scheduler = scheduler
        self.timeout = timeout
        self.jobs = jobs or 1
        self.retired: list[Any] = []  # replaced Dask executors: their clients close at the end
        self.executor: Any = self._make()
        if jobs is None and isinstance(self.executor, DaskExecutor):
            self.jobs = self.executor.threads()

    def _make(self) -> Any:
        return make_executor(self.jobs, self.backend, self.scheduler, self.timeout)

    @property
    def local(self) -> bool:
        """Whether the workers are processes of this machine (loky), which share the data
        through files and whose deaths this process watches."""
        return self.backend == "loky"

    def replace(self) -> None:
        """A fresh executor with the same settings, for one that broke (a loky worker
        died). A broken loky pool is left to end: its futures fail on their own; a Dask
        client is closed with the pool (the live channel may still read through it)."""
        old, self.executor = self.executor, self._make()
        if not self.local:
            self.retired.append(old)

    def after_worker_death(self) -> None:
        """A trial's worker died: loky's pool is broken then and is replaced; a Dask
        cluster's scheduler replaces its own workers and keeps the client usable."""
        if self.local:
            self.replace()

    def submit(self, fn: Any, *args: Any) -> Future[Any]:
        return self.executor.submit(fn, *args)  # type: ignore[no-any-return]

    def shutdown(self, wait: bool = True, **kwargs: Any) -> None:
        try:
            self.executor.shutdown(wait=wait, **kwargs)
        finally:
            for old in self.retired:
                with suppress(Exception):  # a client whose scheduler went away
                    old.shutdown(wait=False)
            self.retired.clear()
