"""A stored trial trained again from its parameters and seed (``numsweep trial rerun``), and
the metrics compared with the original's.

A trial of a sweep reruns on its sweep's data, one of ``train`` or ``range-test`` on the data
its ``setup`` names; a pruned trial stops where it was stopped, a range test by its own rule.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from numsweep.engine import DataError, TrialSpec, load_dataset
from numsweep.engine.checkpoint import WEIGHTS_NOT_KEPT
from numsweep.storage import Storage, StorageError, TrialRecord, TrialState
from numsweep.sweeps.dataset_cache import cached_dataset
from numsweep.sweeps.guards import check_rerun_data, check_trial_data
from numsweep.sweeps.kept import sweep_policy, weights_path
from numsweep.sweeps.lineage import rerun_member
from numsweep.sweeps.range_tests import run_range_test
from numsweep.sweeps.single import run_single
from numsweep.sweeps.worker import TrialOutcome

RERUN_METRICS = ("val_acc", "test_acc", "train_acc", "updates")
"""The metrics a rerun compares with the original's."""


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
    population: int | None = None  # a pbt member's: the size of its population trained again

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
        load_dataset(data_source)  # from disk: the file may have gone since it was cached
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
    member = rerun_member(storage, original, data_source, threads)
    if member is not None:  # a pbt member: its whole population trains again
        new_id, outcome = member
        result = outcome.result
        return Rerun(original, new_id, result.metrics() if result is not None else {},
                     error=outcome.error if result is None else None, outcome=outcome,
                     population=outcome.group[1] if outcome.group else None)
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
