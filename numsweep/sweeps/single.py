"""One configuration trained in this process and stored as a trial: what ``numsweep train``
runs (:func:`train_trial`: checked against the data first, then :func:`run_single`).

A trial made outside a sweep (``train``, ``range-test``) stores how it ran with it (its
``setup``: the data source, a range test's mode and stop factor), so that its rerun
(``rerun.py``) trains on the same data and stops where it stopped.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from numsweep.engine import SpecError, TrialResult, TrialSpec, load_dataset
from numsweep.engine.build import build_network
from numsweep.engine.checkpoint import WEIGHTS_NOT_KEPT, clear_state
from numsweep.engine.sizing import check_augmentation, check_network_memory
from numsweep.storage import Storage, StorageError
from numsweep.sweeps.dataset_cache import absolute_data
from numsweep.sweeps.guards import check_run_length, check_trial_data, single_trial_sweep
from numsweep.sweeps.interrupts import single_interrupted
from numsweep.sweeps.kept import (
    DEFAULT_KEEP,
    check_policy,
    checkpoint_root,
    train_checkpoint_path,
    weights_path,
)
from numsweep.sweeps.live import DirectPoints, store_points
from numsweep.sweeps.results import record_outcome
from numsweep.sweeps.worker import TrialOutcome, TrialTask, execute

Progress = Callable[[int, int | None], None]
"""A download's progress: (bytes done, bytes in all or None)."""


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


@dataclass(frozen=True)
class TrainedTrial:
    """A trial ``numsweep train`` stored: its id and outcome (its result, or the error that
    stopped it)."""

    trial_id: int
    outcome: TrialOutcome

    @property
    def result(self) -> TrialResult | None:
        return self.outcome.result

    @property
    def unkept(self) -> str:
        """Why its network could not be written (its result is stored), else ``""``."""
        message = self.result.message if self.result is not None else ""
        return next((p for p in message.split("; ") if p.startswith(WEIGHTS_NOT_KEPT)), "")


def train_trial(spec: TrialSpec, storage: Storage, *, data_source: str | None,
                sweep_name: str = "train", progress: Progress | None = None,
                checkpoint_dir: str | None = None, keep_weights: str = DEFAULT_KEEP,
                force: bool = False) -> TrainedTrial:
    """Train ``spec`` once and store it as a trial of ``sweep_name``.

    The data is loaded and the network, the splits, the batches and the run's length
    checked against it first (``force``: a run longer than ``guards.LONG_RUN_UPDATES`` is
    allowed), so a configuration that cannot run is refused with a one-line error and
    stores nothing."""
    dataset = load_dataset(data_source, progress=progress)
    check_shapes(spec, dataset.image_shape, len(dataset.classes))
    check_run_length(spec, check_trial_data(spec, dataset), force=force)
    return TrainedTrial(*run_single(spec, storage, data_source=data_source,
                                    sweep_name=sweep_name, checkpoint_dir=checkpoint_dir,
                                    keep_weights=keep_weights))


def data_setup(data_source: str | None) -> dict[str, Any]:
    """The ``setup`` stored with a single trial: its data source, a path made absolute so
    that a rerun from another folder finds it (None: CIFAR-10 downloaded into the cache)."""
    return {"data": absolute_data(data_source)}


def run_single(trial_spec: TrialSpec, storage: Storage, *, data_source: str | None,
               sweep_name: str = "train", message: str = "",
               stop_at: int | None = None, threads: int | None = None,
               setup: Mapping[str, Any] | None = None,
               checkpoint_dir: str | Path | None = None, keep_weights: str = DEFAULT_KEEP,
               checkpoints: bool = True,
               weights_to: Path | None = None) -> tuple[int, TrialOutcome]:
    """Train one configuration in this process and store it as a trial of ``sweep_name``.

    ``stop_at`` stops training at the first end of a cycle at or after that update (to repeat
    a pruned trial); ``setup`` is stored with the trial (default: its data source). With
    ``checkpoints`` the run writes a checkpoint keyed by its spec in ``checkpoint_dir`` (see
    ``kept.py``), so the same command run again after a crash continues it; its network is
    kept unless ``keep_weights`` is ``none`` (at ``weights_to`` when given).
    """
    root = checkpoint_root(storage, checkpoint_dir)
    keep = check_policy(keep_weights)
    sweep = single_trial_sweep(storage, sweep_name)
    number = storage.next_trial_number(sweep.id)
    trial_id = storage.start_trial(sweep.id, None, number, trial_spec.to_dict(), trial_spec.seed,
                                   setup=data_setup(data_source) if setup is None else setup)
    checkpoint = train_checkpoint_path(root, sweep_name, trial_spec) if checkpoints else None
    weights = weights_to if weights_to is not None else \
        None if keep == "none" else weights_path(root, sweep_name, trial_id)
    # its curve points stored as they are measured (a running trial's curve can be drawn)
    live = DirectPoints(lambda messages: [store_points(storage, i, points)
                                          for i, _total, points in messages])
    try:
        outcome = execute(TrialTask(trial_id, trial_spec, data_source, threads,
                                    stop_at=stop_at,
                                    checkpoint=None if checkpoint is None else str(checkpoint),
                                    weights=None if weights is None else str(weights),
                                    live=live))
    except KeyboardInterrupt:
        raise single_interrupted(storage, trial_id, "the same command continues it from its "
                                 "checkpoint" if checkpoint is not None else "") from None
    if message and outcome.result is not None:
        outcome = TrialOutcome(outcome.trial_id, _with_message(outcome.result, message),
                               outcome.error, outcome.traceback, outcome.worker)
    try:
        recorded = record_outcome(storage, outcome)
    except StorageError as exc:  # a full disk: marked (when the database takes that), kept
        with contextlib.suppress(StorageError):
            storage.interrupt_trials_promptly([trial_id], f"stopped: {exc}")
        raise
    if recorded is not None:
        clear_state(checkpoint)
    return trial_id, outcome


def _with_message(result: TrialResult, message: str) -> TrialResult:
    text = f"{result.message}; {message}" if result.message else message
    return dataclasses.replace(result, message=text)


