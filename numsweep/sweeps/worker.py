"""What runs inside a worker process: train one trial, never raise."""

from __future__ import annotations

import os
import socket
import traceback
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from threadpoolctl import threadpool_limits

from numsweep.engine import Dataset, Split, TrialResult, TrialSpec, load_dataset, make_split
from numsweep.engine import train as train_engine


@dataclass(frozen=True)
class TrialTask:
    trial_id: int
    spec: TrialSpec
    data_source: str | None
    blas_threads: int | None = None


@dataclass(frozen=True)
class TrialOutcome:
    trial_id: int
    result: TrialResult | None
    error: str = ""
    traceback: str = ""
    worker: str = ""


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


@lru_cache(maxsize=2)
def _dataset(source: str | None) -> Dataset:
    return load_dataset(source)


@lru_cache(maxsize=4)
def _split(source: str | None, n_train: int | None, n_val: int, dtype: str) -> Split:
    return make_split(_dataset(source), n_train, n_val, np.dtype(dtype))


def execute(task: TrialTask) -> TrialOutcome:
    """Train ``task.spec``; any exception becomes a failed outcome with its traceback."""
    try:
        spec = task.spec
        split = _split(task.data_source, spec.n_train, spec.n_val, spec.dtype)
        with threadpool_limits(limits=task.blas_threads):
            result = train_engine(spec, split)
        return TrialOutcome(task.trial_id, result, worker=worker_name())
    except Exception as exc:  # the sweep records it and goes on
        return TrialOutcome(task.trial_id, None, error=f"{type(exc).__name__}: {exc}",
                            traceback=traceback.format_exc(), worker=worker_name())
