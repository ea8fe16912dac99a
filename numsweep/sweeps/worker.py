"""What runs inside a worker process: train one trial (:func:`execute`) or one fused group of
trials (:func:`execute_group`), never raise.

Workers never touch the database or the main Optuna study; the curve points of a running
trial travel to the sweep's process through the task's channel (``live.py``). The dataset
split arrives as ``.npy`` files opened with ``np.load(mmap_mode="r")``, so N workers share one
copy in the page cache. Pruning decisions are made in the worker on a snapshot of the study
taken when the trial was proposed (see :class:`PruneSnapshot`), so they do not depend on
worker timing.
"""

from __future__ import annotations

import dataclasses
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

from numsweep.engine import Split, TrialResult, TrialSpec, make_split
from numsweep.engine import train as train_engine
from numsweep.engine.inputs import Prepared
from numsweep.sweeps.dataset_cache import cached_dataset
from numsweep.sweeps.front_pruning import FrontPruner, FrontRule, RungClock
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
    front: FrontRule | None = None  # pruner = "front": numsweep's rung rule instead


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
    slot: int | None = None  # its planned place in the stage (None outside a sweep stage)
    live: Any = None  # where its curve points go as they are measured (``live.py``)


@dataclass(frozen=True)
class GroupTask:
    """Trials of one stage that share a group key (``engine.group.group_key``), trained
    together by :func:`execute_group`; the group's id is its first trial's id."""

    trials: tuple[TrialTask, ...]
    stage_id: int | None = None
    sweep_id: int | None = None
    checkpoint: str | None = None  # the group's checkpoint file (keyed by its slots)

    @property
    def group_id(self) -> int:
        return self.trials[0].trial_id

    @property
    def slots(self) -> tuple[int | None, ...]:
        return tuple(t.slot for t in self.trials)


@dataclass(frozen=True)
class TrialOutcome:
    trial_id: int
    result: TrialResult | None
    error: str = ""
    traceback: str = ""
    worker: str = ""
    reports: tuple[tuple[int, float], ...] = ()
    system_attrs: Mapping[str, Any] = field(default_factory=dict)
    group: tuple[int, int] | None = None  # (group id, group size) when trained in a group
    rungs: tuple[tuple[float, ...], ...] = ()  # pruner = "front": [step, values...] per rung


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


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


Reporter = SnapshotPruner | Recorder | FrontPruner


def trial_param_count(spec: TrialSpec, split: Split) -> int:
    """The parameters of the trial's network, before it trains (for the rung rule)."""
    from numsweep.engine.sizing import param_count

    shape = tuple(split.x_train.shape[1:])
    return param_count(spec, shape, split.num_classes)  # type: ignore[arg-type]


def make_reporter(task: TrialTask, split: Split, clock: RungClock) -> Reporter:
    """The trial's pruner (Optuna's on the snapshot, or the rung rule), else a recorder."""
    if task.prune is None:
        return Recorder(task.stop_at)
    if task.prune.front is not None:
        return FrontPruner(task.prune.front, clock, trial_param_count(task.spec, split))
    return SnapshotPruner(task.prune)


def _outcome_extras(reporter: Reporter) -> dict[str, Any]:
    if isinstance(reporter, SnapshotPruner):
        return {"system_attrs": reporter.system_attrs()}
    if isinstance(reporter, FrontPruner):
        return {"rungs": tuple(tuple(r) for r in reporter.rung_rows())}
    return {}


def _watcher(task: TrialTask) -> Any:
    if task.live is None:
        return None
    from numsweep.sweeps.live import watcher

    return watcher(task.live, task.trial_id)


def execute(task: TrialTask) -> TrialOutcome:
    """Train ``task.spec``; any exception becomes a failed outcome with its traceback."""
    try:
        spec = task.spec
        split = load_split(task)
        reporter = make_reporter(task, split, RungClock(1))
        with threadpool_limits(limits=task.blas_threads):
            result = train_engine(spec, split, reporter=reporter,
                                  prepared=prepared_for(spec, split, task.shared),
                                  checkpoint=task.checkpoint, weights=task.weights,
                                  on_points=_watcher(task))
        return TrialOutcome(task.trial_id, result, worker=worker_name(),
                            reports=tuple(reporter.reports), **_outcome_extras(reporter))
    except Exception as exc:  # the sweep records it and goes on
        return TrialOutcome(task.trial_id, None, error=f"{type(exc).__name__}: {exc}",
                            traceback=traceback.format_exc(), worker=worker_name())


def execute_group(task: GroupTask) -> list[TrialOutcome]:
    """Train a group's trials together (``engine.train_group``), one outcome per trial in
    order: a diverging trial is a failed result of its own, a pruned one leaves the group
    (its own reporter stops it), the others train on. An exception fails every trial."""
    from numsweep.engine.group import train_group

    tasks = task.trials
    group = (task.group_id, len(tasks))
    try:
        if len(tasks) == 1:
            return [dataclasses.replace(execute(tasks[0]), group=group)]
        first = tasks[0]
        split = load_split(first)
        clock = RungClock(len(tasks))  # the group's time between rungs, shared
        reporters = [make_reporter(t, split, clock) for t in tasks]
        with threadpool_limits(limits=first.blas_threads):
            results = train_group([t.spec for t in tasks], split, reporters=reporters,
                                  prepared=prepared_for(first.spec, split, first.shared),
                                  checkpoint=task.checkpoint,
                                  weights=[t.weights for t in tasks],
                                  on_points=[_watcher(t) for t in tasks])
        name = worker_name()
        return [TrialOutcome(t.trial_id, result, worker=name, reports=tuple(r.reports),
                             group=group, **_outcome_extras(r))
                for t, result, r in zip(tasks, results, reporters, strict=True)]
    except Exception as exc:  # the sweep records it for every trial and goes on
        return [TrialOutcome(t.trial_id, None, error=f"{type(exc).__name__}: {exc}",
                             traceback=traceback.format_exc(), worker=worker_name(),
                             group=group) for t in tasks]
