"""One configuration trained in this process (``numsweep train``) and a stored trial trained
again from its parameters and seed (``numsweep rerun``)."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path

from numsweep.engine import TrialResult, TrialSpec
from numsweep.engine.checkpoint import clear_state
from numsweep.storage import Storage, StorageError, TrialRecord, TrialState
from numsweep.sweeps.kept import (
    DEFAULT_KEEP,
    check_policy,
    checkpoint_root,
    train_checkpoint_path,
    weights_path,
)
from numsweep.sweeps.results import record_outcome
from numsweep.sweeps.worker import TrialOutcome, TrialTask, execute

RERUN_METRICS = ("val_acc", "test_acc", "train_acc", "updates")
"""The metrics a rerun compares with the original's."""


def run_single(trial_spec: TrialSpec, storage: Storage, *, data_source: str | None,
               sweep_name: str = "train", message: str = "",
               stop_at: int | None = None,
               threads: int | None = None, checkpoint_dir: str | Path | None = None,
               keep_weights: str = DEFAULT_KEEP,
               checkpoints: bool = True) -> tuple[int, TrialOutcome]:
    """Train one configuration in this process and store it as a trial of ``sweep_name``.

    ``stop_at`` stops training at the first end of a cycle at or after that update (to repeat
    a pruned trial). With ``checkpoints`` the run writes a checkpoint keyed by its spec in
    ``checkpoint_dir`` (see ``kept.py``), so the same command run again after a crash
    continues it; its network is kept unless ``keep_weights`` is ``none``.
    """
    root = checkpoint_root(storage, checkpoint_dir)
    keep = check_policy(keep_weights)
    sweep = storage.get_or_create_sweep(sweep_name, {"name": sweep_name, "single": True}, 0)
    number = storage.next_trial_number(sweep.id)
    trial_id = storage.start_trial(sweep.id, None, number, trial_spec.to_dict(), trial_spec.seed)
    checkpoint = train_checkpoint_path(root, sweep_name, trial_spec) if checkpoints else None
    weights = None if keep == "none" else weights_path(root, sweep_name, trial_id)
    outcome = execute(TrialTask(trial_id, trial_spec, data_source, threads, stop_at=stop_at,
                                checkpoint=None if checkpoint is None else str(checkpoint),
                                weights=None if weights is None else str(weights)))
    if message and outcome.result is not None:
        outcome = TrialOutcome(outcome.trial_id, _with_message(outcome.result, message),
                               outcome.error, outcome.traceback, outcome.worker)
    if record_outcome(storage, outcome) is not None:
        clear_state(checkpoint)
    return trial_id, outcome


def _with_message(result: TrialResult, message: str) -> TrialResult:
    text = f"{result.message}; {message}" if result.message else message
    return dataclasses.replace(result, message=text)


@dataclass(frozen=True)
class Rerun:
    original: TrialRecord
    trial_id: int
    outcome: TrialOutcome

    def differences(self) -> dict[str, tuple[float, float]]:
        """Metrics that differ between the original and the rerun: name -> (was, now)."""
        result = self.outcome.result
        if result is None:
            return {"error": (math.nan, math.nan)}
        now = result.metrics()
        out = {}
        for name in RERUN_METRICS:
            was = self.original.metrics.get(name, math.nan)
            if not (was == now[name] or (math.isnan(was) and math.isnan(now[name]))):
                out[name] = (was, now[name])
        return out


def rerun_trial(storage: Storage, trial_id: int, *, data_source: str | None = None,
                threads: int | None = None) -> Rerun:
    """Train a stored trial again from its stored parameters and seed (stored under the sweep
    ``rerun``); a pruned trial stops where it was stopped. ``data_source`` defaults to the one
    the sweep ran on."""
    found = storage.get_trials(trial_ids=[trial_id])
    if not found:
        raise StorageError(f"no trial with id {trial_id} in {storage.shown_url}")
    original = found[0]
    sweep_spec = storage.get_sweep(original.sweep).spec
    if data_source is None:
        data_source = sweep_spec.get("data")
    if threads is None:  # as the original ran: a sweep's --threads, none for `train`
        threads = sweep_spec.get("threads")
    spec = TrialSpec.from_mapping(original.params)
    stop_at = int(original.metrics["updates"]) if original.state is TrialState.PRUNED else None
    new_id, outcome = run_single(spec, storage, data_source=data_source, sweep_name="rerun",
                                 message=f"rerun of trial {trial_id}", stop_at=stop_at,
                                 threads=threads, checkpoints=False, keep_weights="none")
    return Rerun(original, new_id, outcome)
