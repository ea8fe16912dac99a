"""Range tests and single trainings stored as trials: what ``numsweep range-test`` and
``numsweep train`` run, checked against the data before any work and written to storage.

The range test itself (the rising learning rate or batch size, the smoothing, the stopping
rule) is :mod:`numsweep.engine.range_test`; this module stores it as a COMPLETE or FAILED
trial with one curve point per update.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from numsweep.engine import SpecError, TrialSpec, load_dataset, make_split
from numsweep.engine.build import build_network
from numsweep.engine.range_test import RangeTestResult, range_test
from numsweep.engine.sizing import check_augmentation, check_network_memory
from numsweep.storage import CurveRecord, Storage, TrialState
from numsweep.sweeps.guards import single_trial_sweep
from numsweep.sweeps.interrupts import single_interrupted

Progress = Callable[[int, int | None], None]


def check_shapes(spec: TrialSpec, image_shape: tuple[int, int, int], num_classes: int) -> None:
    """A :class:`SpecError` when the network of ``spec`` does not fit the images (a patch size
    that does not divide them, an odd convolution output), before any training."""
    check_augmentation(spec, image_shape)
    check_network_memory(spec, image_shape, num_classes)  # before anything is allocated
    try:
        build_network(spec, image_shape, num_classes, np.random.default_rng(0))
    except ValueError as exc:
        if isinstance(exc, SpecError):
            raise
        raise SpecError(f"model={spec.model}: {exc}") from None


def train_trial(spec: TrialSpec, storage: Storage, *, data_source: str | None,
                sweep_name: str = "train", progress: Progress | None = None,
                checkpoint_dir: str | None = None, keep_weights: str = "best",
                force: bool = False) -> tuple[int, Any]:
    """Train ``spec`` once and store it as a trial of ``sweep_name``: (trial id, outcome).

    The data is loaded and the network, the splits, the batches and the run's length
    checked against it first (``force``: a run longer than ``guards.LONG_RUN_UPDATES`` is
    allowed), so a configuration that cannot run is refused with a one-line error and
    stores nothing."""
    from numsweep.sweeps import run_single
    from numsweep.sweeps.guards import check_run_length, check_trial_data

    dataset = load_dataset(data_source, progress=progress)
    check_shapes(spec, dataset.image_shape, len(dataset.classes))
    check_run_length(spec, check_trial_data(spec, dataset), force=force)
    return run_single(spec, storage, data_source=data_source, sweep_name=sweep_name,
                      checkpoint_dir=checkpoint_dir, keep_weights=keep_weights)


@dataclass(frozen=True)
class StoredRangeTest:
    """A range test and the trial it is stored as."""

    trial_id: int
    result: RangeTestResult
    metrics: dict[str, float]


def run_range_test(spec: TrialSpec, mode: str, storage: Storage, *, data_source: str | None,
                   sweep_name: str = "range-test", stop_factor: float = 4.0,
                   progress: Progress | None = None, message: str = "") -> StoredRangeTest:
    """Run a ``mode`` ("lr" or "batch") range test of ``spec`` and store it as a trial: the
    curve rows hold each update's mini-batch loss, cost and accuracy with split ``lr_range``
    (step = update) or ``batch_range`` (step = that update's batch size). A test that raises
    is stored as FAILED and the error raised again. The trial keeps its data source, mode and
    ``stop_factor`` (its ``setup``), so that ``trial rerun`` repeats the same test;
    ``message`` is added to the result's."""
    from numsweep.sweeps.guards import check_trial_data
    from numsweep.sweeps.single import data_setup

    dataset = load_dataset(data_source, progress=progress)
    check_shapes(spec, dataset.image_shape, len(dataset.classes))
    check_trial_data(spec, dataset)  # its splits and batches, before a trial is stored
    split = make_split(dataset, spec.n_train, spec.n_val, spec.dtype)
    sweep = single_trial_sweep(storage, sweep_name)
    setup = {**data_setup(data_source),
             "range_test": {"mode": mode, "stop_factor": stop_factor}}
    trial_id = storage.start_trial(sweep.id, None, storage.next_trial_number(sweep.id),
                                   spec.to_dict(), spec.seed, setup=setup)
    try:
        result = range_test(spec, split, mode, stop_factor=stop_factor)
    except KeyboardInterrupt:
        raise single_interrupted(storage, trial_id, "") from None
    except BaseException as exc:
        storage.finish_trial(trial_id, TrialState.FAILED, message=f"{type(exc).__name__}: {exc}")
        raise
    split_name = f"{mode}_range"
    curves = [CurveRecord(trial_id, step if mode == "lr" else size, split_name, loss, cost, acc,
                          lr)
              for step, (size, loss, cost, acc, lr) in enumerate(zip(
                  result.batch_sizes, result.losses, result.costs, result.accs, result.lrs,
                  strict=True))]
    metrics = {"updates": result.updates, "param_count": result.param_count,
               "train_seconds": result.train_seconds, f"best_{mode}": result.best,
               f"steepest_{mode}": result.steepest}
    text = "; ".join(m for m in (result.message, message) if m)
    storage.finish_trial(trial_id, TrialState.COMPLETE, metrics=metrics, curves=curves,
                         message=text, params=result.spec.to_dict())
    return StoredRangeTest(trial_id, result, metrics)
