"""Where trials run: this process (``--jobs 1``), joblib's loky worker processes, or a Dask
cluster, all behind one ``concurrent.futures``-like executor (:func:`make_executor`)."""

from __future__ import annotations

import contextlib
import signal
import threading
import warnings
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from typing import Any

from joblib.externals.loky import get_reusable_executor

from numsweep.storage import StorageError
from numsweep.storage.retry import first_line

BACKENDS = ("loky", "dask")
DEFAULT_THREADS = 1
"""BLAS threads per trial unless ``--threads`` says otherwise: 1, whatever ``--jobs`` is, so
that ``jobs`` (at most the number of cores) trials never oversubscribe the cores and a trial's
floating-point results do not depend on ``--jobs`` (a BLAS may sum in another order with
another thread count)."""
LOKY_IDLE_SECONDS = 60
"""How long idle loky worker processes are kept for the next trials."""
DASK_CONNECT_SECONDS = 20.0


class InlineExecutor:
    """Runs each task at once in this process: ``--jobs 1`` needs no worker processes."""

    def submit(self, fn: Callable[..., Any], *args: Any) -> Future[Any]:
        future: Future[Any] = Future()
        future.set_result(fn(*args))
        return future

    def shutdown(self, wait: bool = True, **_kwargs: Any) -> None:
        pass


class BackendError(StorageError):
    """The parallel backend cannot be used (not installed, scheduler unreachable)."""


def make_executor(jobs: int, backend: str = "loky", scheduler: str | None = None,
                  timeout: float = DASK_CONNECT_SECONDS) -> Any:
    """A ``concurrent.futures`` executor: this process (``jobs`` 1), joblib's loky worker
    processes, or a Dask cluster's workers (through its client's executor)."""
    if backend == "dask":
        return DaskExecutor(scheduler, timeout)
    if backend != "loky":
        raise BackendError(f"unknown backend {backend!r} (use {' or '.join(BACKENDS)})")
    if jobs == 1:
        return InlineExecutor()
    return LokyExecutor(jobs)


@contextlib.contextmanager
def sigint_blocked() -> Iterator[None]:
    """SIGINT blocked in this thread meanwhile: the processes it starts, and the threads it
    starts (loky's manager, which replaces dead workers), inherit the blocked signal. A
    Ctrl-C meanwhile is not lost: another thread takes it, or it waits until the block ends."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    from multiprocessing import resource_tracker

    # started first: Python 3.11's starts its process with SIGINT blocked, then unblocks it
    # (not restoring the mask), which would let loky's workers started after it take Ctrl-C
    resource_tracker.ensure_running()
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})


class LokyExecutor:
    """joblib's reusable loky executor whose worker processes never see SIGINT: a Ctrl-C in a
    terminal reaches the whole process group, and the sweep process alone acts on it (it
    marks the trials interrupted and ends the workers); a worker that took it would print a
    KeyboardInterrupt traceback (while Python starts, or from the trial's task)."""

    def __init__(self, jobs: int) -> None:
        with sigint_blocked():
            self.pool = get_reusable_executor(max_workers=jobs, timeout=LOKY_IDLE_SECONDS)

    def submit(self, fn: Callable[..., Any], *args: Any) -> Future[Any]:
        with sigint_blocked():  # loky starts worker processes as tasks are submitted
            return self.pool.submit(fn, *args)

    def shutdown(self, wait: bool = True, **kwargs: Any) -> None:
        self.pool.shutdown(wait=wait, **kwargs)


def dask_slots(scheduler: str | None, timeout: float = DASK_CONNECT_SECONDS) -> int:
    """Trials a Dask cluster runs at once (one per worker thread): what ``--jobs`` is for
    ``--backend dask`` when not given, for the display and the budget planner."""
    executor = DaskExecutor(scheduler, timeout)
    try:
        return executor.threads()
    finally:
        executor.shutdown(wait=False)


def check_scheduler_address(scheduler: str) -> None:
    """A :class:`BackendError` at once for what is no scheduler address (Dask would try to
    connect to it for its timeout, then fail with a traceback): a host and a port."""
    from distributed.comm.addressing import parse_address, parse_host_port

    try:
        protocol, location = parse_address(scheduler)
        if protocol in ("tcp", "tls", "ws", "wss", "ucx"):
            parse_host_port(location)
    except (ValueError, TypeError) as exc:
        reason = ("the port is not a number" if "invalid literal" in str(exc)
                  else first_line(exc))
        raise BackendError(f"--scheduler {scheduler!r} is not a Dask scheduler address "
                           f"({reason}); give tcp://HOST:PORT, such as tcp://10.0.0.5:8786"
                           ) from None


class DaskExecutor:
    """Trials on a Dask cluster: ``distributed.Client(scheduler).get_executor()``.

    joblib's own Dask backend (``joblib.parallel_config(backend="dask")``) runs a whole
    ``Parallel`` call at once; a sweep proposes one trial at a time from the results so far,
    so it submits through the same client's ``concurrent.futures`` executor instead."""

    def __init__(self, scheduler: str | None, timeout: float) -> None:
        if not scheduler:
            raise BackendError("--backend dask needs --scheduler ADDRESS (such as "
                               "tcp://10.0.0.5:8786)")
        try:
            from distributed import Client
        except ImportError:
            raise BackendError("--backend dask needs dask.distributed "
                               "(pip install 'numsweep[dask]')") from None
        check_scheduler_address(scheduler)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                self.client = Client(scheduler, timeout=timeout, set_as_default=False)
        except (OSError, TimeoutError) as exc:
            raise BackendError(f"cannot reach the Dask scheduler at {scheduler}: "
                               f"{first_line(exc)}") from None
        self.executor = self.client.get_executor(pure=False)

    def threads(self) -> int:
        """The cluster's worker threads, all workers together (at least 1)."""
        return max(1, sum(self.client.nthreads().values()))

    def submit(self, fn: Callable[..., Any], *args: Any) -> Future[Any]:
        return self.executor.submit(fn, *args)  # type: ignore[no-any-return]

    def shutdown(self, wait: bool = True, **_kwargs: Any) -> None:
        try:
            self.executor.shutdown(wait=wait)
        finally:
            self.client.close()
