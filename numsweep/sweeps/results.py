"""A finished trial's outcome stored in the database (:func:`record_outcome`), or kept on
this machine while the database stays away (:func:`keep_unsaved`, :func:`write_unsaved`)."""

from __future__ import annotations

import hashlib
import os
import pickle
from collections.abc import Iterable
from pathlib import Path

from numsweep.storage import CurveRecord, Storage, StorageError, TrialState
from numsweep.sweeps.objectives import objective_metrics
from numsweep.sweeps.worker import TrialOutcome

UNSAVED_ENV = "NUMSWEEP_UNSAVED"
"""Folder for results that could not be written (default ~/.cache/numsweep/unsaved)."""


def record_outcome(storage: Storage, outcome: TrialOutcome) -> TrialState | None:
    """Store how a trial ended; None when it was taken for lost meanwhile (not stored)."""
    result = outcome.result
    if result is None:
        kept = storage.finish_trial(outcome.trial_id, TrialState.FAILED, message=outcome.error,
                                    traceback=outcome.traceback, worker=outcome.worker,
                                    group=outcome.group)
        return TrialState.FAILED if kept else None
    state = (TrialState.FAILED if result.diverged
             else TrialState.PRUNED if result.stopped else TrialState.COMPLETE)
    curves = [CurveRecord(outcome.trial_id, c.step, c.split, c.loss, c.cost, c.acc, c.lr)
              for c in result.curves]
    metrics = {**result.metrics(), **objective_metrics(result)}
    kept = storage.finish_trial(outcome.trial_id, state, metrics=metrics,
                                curves=curves, message=result.message, worker=outcome.worker,
                                params=result.spec.to_dict(), group=outcome.group)
    return state if kept else None


# Results finished while the database stayed away longer than --db-wait

def unsaved_folder(url: str) -> Path:
    """Where this machine keeps the unwritten results of database ``url``."""
    base = Path(os.environ.get(UNSAVED_ENV) or Path.home() / ".cache" / "numsweep" / "unsaved")
    return base / hashlib.sha256(url.encode()).hexdigest()[:16]


def keep_unsaved(url: str, outcomes: Iterable[TrialOutcome]) -> tuple[int, Path]:
    """Save outcomes the database could not take, for :func:`write_unsaved` later."""
    folder = unsaved_folder(url)
    folder.mkdir(parents=True, exist_ok=True)
    count = 0
    for outcome in outcomes:
        part = folder / f"{outcome.trial_id}.pkl.part"
        part.write_bytes(pickle.dumps(outcome))
        part.replace(folder / f"{outcome.trial_id}.pkl")
        count += 1
    return count, folder


def write_unsaved(storage: Storage) -> int:
    """Write the results this machine kept while the database was away (trials that still
    wait for them); returns how many were stored."""
    folder = unsaved_folder(storage.url)
    stored = 0
    for path in sorted(folder.glob("*.pkl")) if folder.is_dir() else []:
        outcome = pickle.loads(path.read_bytes())  # written by this user's numsweep only
        try:
            stored += record_outcome(storage, outcome) is not None
        except StorageError as exc:
            if "no trial with id" not in str(exc):
                raise
        path.unlink()
    return stored
