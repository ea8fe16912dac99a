"""What runs inside a worker process: train one trial, never raise.

Workers never touch the database or the main Optuna study. The dataset split arrives as
``.npy`` files opened with ``np.load(mmap_mode="r")``, so N workers share one copy in the page
cache. Pruning decisions are made in the worker on a snapshot of the study taken when the
trial was proposed (see :class:`PruneSnapshot`), so they do not depend on worker timing.
"""

from __future__ import annotations

import os
import socket
import traceback
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import optuna
from threadpoolctl import threadpool_limits

from numsweep.engine import Dataset, Split, TrialResult, TrialSpec, load_dataset, make_split
from numsweep.engine import train as train_engine
from numsweep.engine.train import Prepared
from numsweep.sweeps.optuna_bridge import make_pruner, pruner_state, quiet

SPLIT_FIELDS = ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test")
PREPARED_FIELDS = ("x_train", "x_val", "x_test")


@dataclass(frozen=True)
class SharedSplit:
    """A normalised split saved as ``.npy`` files in ``folder`` (``<key>.<field>.npy``), and
    for the patchify ConvNet its patch matrices (``<key>.f<f>.<field>.npy``)."""

    folder: str
    key: str
    num_classes: int
    patch_sizes: tuple[int, ...] = ()


@dataclass(frozen=True)
class PruneSnapshot:
    """What a worker needs to decide on pruning exactly as the main study would: the
    pruner's kind and the study's trials when this trial was proposed (trials whose result
    the main process had not yet taken in appear RUNNING, without intermediate values)."""

    pruner: str
    study_name: str
    trials: tuple[optuna.trial.FrozenTrial, ...]
    number: int


@dataclass(frozen=True)
class TrialTask:
    trial_id: int
    spec: TrialSpec
    data_source: str | None
    blas_threads: int | None = None
    shared: SharedSplit | None = None
    prune: PruneSnapshot | None = None
    stop_at: int | None = None
    checkpoint: str | None = None  # the trial's checkpoint file (resumed from when valid)
    weights: str | None = None  # where its network is saved when it ends without diverging


@dataclass(frozen=True)
class TrialOutcome:
    trial_id: int
    result: TrialResult | None
    error: str = ""
    traceback: str = ""
    worker: str = ""
    reports: tuple[tuple[int, float], ...] = ()
    system_attrs: Mapping[str, Any] = field(default_factory=dict)


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


@lru_cache(maxsize=2)
def cached_dataset(source: str | None) -> Dataset:
    """The dataset at ``source``, loaded once per process."""
    return load_dataset(source)


@lru_cache(maxsize=4)
def _split(source: str | None, n_train: int | None, n_val: int, dtype: str) -> Split:
    return make_split(cached_dataset(source), n_train, n_val, np.dtype(dtype))


def split_key(n_train: int | None, n_val: int, dtype: str) -> str:
    return f"n{n_train if n_train is not None else 'auto'}-v{n_val}-{dtype}"


@lru_cache(maxsize=4)
def _shared_split(shared: SharedSplit) -> Split:
    folder = Path(shared.folder)
    arrays = {name: np.load(folder / f"{shared.key}.{name}.npy", mmap_mode="r")
              for name in SPLIT_FIELDS}
    return Split(**arrays, num_classes=shared.num_classes)


@lru_cache(maxsize=4)
def _shared_patches(shared: SharedSplit, f: int) -> dict[str, np.ndarray]:
    folder = Path(shared.folder)
    return {name: np.load(folder / f"{shared.key}.f{f}.{name}.npy", mmap_mode="r")
            for name in PREPARED_FIELDS}


def prepared_for(spec: TrialSpec, split: Split, shared: SharedSplit | None) -> Prepared | None:
    """Shared patch matrices for the patchify ConvNet; None lets the engine prepare inputs
    (for the MLP and ConvNet3 that is a view of the shared images, not a copy)."""
    if shared is None or spec.model != "convnet" or spec.f not in shared.patch_sizes:
        return None
    patches = _shared_patches(shared, spec.f)
    return Prepared(patches["x_train"], split.y_train, patches["x_val"], split.y_val,
                    patches["x_test"], split.y_test)


def load_split(task: TrialTask) -> Split:
    if task.shared is not None:
        return _shared_split(task.shared)
    spec = task.spec
    return _split(task.data_source, spec.n_train, spec.n_val, spec.dtype)


class SnapshotPruner:
    """Answers the engine's reporter with the Optuna pruner of the snapshot."""

    def __init__(self, snapshot: PruneSnapshot) -> None:
        with quiet():
            self.study = optuna.create_study(study_name=snapshot.study_name,
                                             direction="maximize",
                                             pruner=make_pruner(snapshot.pruner))
            self.study.add_trials(list(snapshot.trials))
            self.trial = self.study.ask()
        if self.trial.number != snapshot.number:
            raise RuntimeError(f"pruning snapshot numbering is off: {self.trial.number} != "
                               f"{snapshot.number}")
        self.reports: list[tuple[int, float]] = []

    def __call__(self, step: int, val_acc: float) -> bool:
        self.reports.append((step, float(val_acc)))
        self.trial.report(float(val_acc), step)
        return bool(self.trial.should_prune())

    def system_attrs(self) -> dict[str, Any]:
        frozen = self.study.get_trials(deepcopy=False)[self.trial.number]
        return pruner_state(frozen)


class Recorder:
    """Keeps the end-of-cycle reports of a trial without a pruner; stops at the first end of a
    cycle at or after ``stop_at`` (to repeat a pruned trial)."""

    def __init__(self, stop_at: int | None = None) -> None:
        self.reports: list[tuple[int, float]] = []
        self.stop_at = stop_at

    def __call__(self, step: int, val_acc: float) -> bool:
        self.reports.append((step, float(val_acc)))
        return self.stop_at is not None and step >= self.stop_at


def execute(task: TrialTask) -> TrialOutcome:
    """Train ``task.spec``; any exception becomes a failed outcome with its traceback."""
    try:
        spec = task.spec
        split = load_split(task)
        reporter: SnapshotPruner | Recorder = (SnapshotPruner(task.prune) if task.prune
                                               else Recorder(task.stop_at))
        with threadpool_limits(limits=task.blas_threads):
            result = train_engine(spec, split, reporter=reporter,
                                  prepared=prepared_for(spec, split, task.shared),
                                  checkpoint=task.checkpoint, weights=task.weights)
        attrs = reporter.system_attrs() if isinstance(reporter, SnapshotPruner) else {}
        return TrialOutcome(task.trial_id, result, worker=worker_name(),
                            reports=tuple(reporter.reports), system_attrs=attrs)
    except Exception as exc:  # the sweep records it and goes on
        return TrialOutcome(task.trial_id, None, error=f"{type(exc).__name__}: {exc}",
                            traceback=traceback.format_exc(), worker=worker_name())
