"""One configuration trained in this process (``numsweep train``) and a stored trial trained
again from its parameters and seed (``numsweep rerun``).

A trial made outside a sweep (``train``, ``range-test``) stores how it ran with it (its
``setup``: the data source, a range test's mode and stop factor), so that its rerun trains on
the same data and stops where it stopped.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from numsweep.engine import DataError, TrialResult, TrialSpec, load_dataset
from numsweep.engine.checkpoint import WEIGHTS_NOT_KEPT, clear_state
from numsweep.storage import Storage, StorageError, TrialRecord, TrialState
from numsweep.sweeps.guards import check_rerun_data, check_trial_data, single_trial_sweep
from numsweep.sweeps.interrupts import single_interrupted
from numsweep.sweeps.kept import (
    DEFAULT_KEEP,
    check_policy,
    checkpoint_root,
    sweep_policy,
    train_checkpoint_path,
    weights_path,
)
from numsweep.sweeps.live import DirectPoints, store_points
from numsweep.sweeps.range_tests import run_range_test
from numsweep.sweeps.results import record_outcome
from numsweep.sweeps.worker import (
    TrialOutcome,
    TrialTask,
    absolute_data,
    cached_dataset,
    execute,
)

RERUN_METRICS = ("val_acc", "test_acc", "train_acc", "updates")
"""The metrics a rerun compares with the original's."""


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


@dataclass(frozen=True)
class Rerun:
    """A stored trial (``original``) and its rerun: the new trial's id, its metrics (or the
    error that stopped it) and the metrics compared."""

    original: TrialRecord
    trial_id: int
    metrics: dict[str, float]
    error: str | None = None
    compared: tuple[str, ...] = RERUN_METRICS
    outcome: TrialOutcome | None = field(default=None, repr=False)  # None for range tests
    restored: Path | None = None  # the original's network, written again (it had none)

    def differences(self) -> dict[str, tuple[float, float]]:
        """Metrics that differ between the original and the rerun: name -> (was, now)."""
        if self.error is not None:
            return {"error": (math.nan, math.nan)}
        out = {}
        for name in self.compared:
            was = self.original.metrics.get(name, math.nan)
            now = self.metrics.get(name, math.nan)
            if not (was == now or (math.isnan(was) and math.isnan(now))):
                out[name] = (was, now)
        return out


def range_test_setup(trial: TrialRecord) -> dict[str, Any] | None:
    """A range-test trial's mode and stop factor (``{"mode": "lr", "stop_factor": 4.0}``);
    None for any other trial. Trials stored before the setup was kept are told by their
    metrics (``best_lr`` or ``best_batch``) and ran with the default stop factor."""
    if "range_test" in trial.setup:
        return dict(trial.setup["range_test"])
    for mode in ("lr", "batch"):
        if f"best_{mode}" in trial.metrics:
            return {"mode": mode, "stop_factor": 4.0}
    return None


def _check_data(trial_id: int, data_source: str | None, stored: bool) -> None:
    """A one-line error naming the data when it cannot be loaded, before any trial is
    stored (a rerun that cannot start stores nothing)."""
    try:
        load_dataset(data_source)
    except DataError as exc:
        if not stored:
            raise
        raise DataError(f"cannot rerun trial {trial_id}: {exc} (the data it was trained on; "
                        f"give its path here with --data)") from None


def rerun_trial(storage: Storage, trial_id: int, *, data_source: str | None = None,
                threads: int | None = None, default_data: str | None = None) -> Rerun:
    """Train a stored trial again from its stored parameters and seed (stored under the sweep
    ``rerun``); a pruned trial stops where it was stopped, a range test by its own stopping
    rule. The data is ``data_source`` when given, else the one the trial (or its sweep) ran
    on, else ``default_data`` (such as ``$NUMSWEEP_DATA``)."""
    found = storage.get_trials(trial_ids=[trial_id])
    if not found:
        raise StorageError(f"no trial with id {trial_id} in {storage.shown_url}")
    original = found[0]
    sweep_run = storage.get_sweep(original.sweep).run
    # what the trial ran on: its own setup, else its sweep's; None there is the download
    recorded = "data" in original.setup or sweep_run is not None
    stored = original.setup.get("data", None if sweep_run is None else sweep_run.data)
    if data_source is None:
        data_source = stored if recorded else default_data
    _check_data(trial_id, data_source, data_source == stored and stored is not None)
    if threads is None:  # as the original ran: a sweep's --threads, none for `train`
        threads = None if sweep_run is None else sweep_run.threads
    check_rerun_data(storage, original.sweep, data_source)
    spec = TrialSpec.from_mapping(original.params)
    message = f"rerun of trial {trial_id}"
    range_setup = range_test_setup(original)
    if range_setup is not None:
        mode = range_setup["mode"]
        test = run_range_test(spec, mode, storage, data_source=data_source, sweep_name="rerun",
                              stop_factor=range_setup["stop_factor"], message=message)
        return Rerun(original, test.trial_id, test.metrics,
                     compared=("updates", f"best_{mode}", f"steepest_{mode}"))
    check_trial_data(spec, cached_dataset(data_source))  # this data, before a trial is stored
    stop_at = int(original.metrics["updates"]) if original.state is TrialState.PRUNED else None
    missing = unkept_network(storage, original)
    fresh = None if missing is None else missing.with_name(missing.name + ".rerun")
    new_id, outcome = run_single(spec, storage, data_source=data_source, sweep_name="rerun",
                                 message=message, stop_at=stop_at, threads=threads,
                                 checkpoints=False, keep_weights="none", weights_to=fresh)
    result = outcome.result
    rerun = Rerun(original, new_id, result.metrics() if result is not None else {},
                  error=outcome.error if result is None else None, outcome=outcome)
    if fresh is not None and missing is not None and fresh.is_file():
        if rerun.differences():  # not the original's network: not kept as its own
            fresh.unlink()
        else:
            fresh.replace(missing)
            rerun = dataclasses.replace(rerun, restored=missing)
    return rerun


def unkept_network(storage: Storage, trial: TrialRecord) -> Path | None:
    """Where trial ``trial``'s network belongs when its writing failed (its message says
    so, see :func:`checkpoint.keep_weights`) and the file is not there; else None."""
    if WEIGHTS_NOT_KEPT not in trial.message:
        return None
    _, root = sweep_policy(storage, trial.sweep)
    path = weights_path(root, trial.sweep, trial.id)
    return None if path.is_file() else path
