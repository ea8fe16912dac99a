"""A finished trial's outcome stored in the database (:func:`record_outcome`)."""

from __future__ import annotations

from numsweep.storage import CurveRecord, Storage, TrialState
from numsweep.sweeps.worker import TrialOutcome


def record_outcome(storage: Storage, outcome: TrialOutcome) -> TrialState | None:
    """Store how a trial ended; None when it was taken for lost meanwhile (not stored)."""
    result = outcome.result
    if result is None:
        kept = storage.finish_trial(outcome.trial_id, TrialState.FAILED, message=outcome.error,
                                    traceback=outcome.traceback, worker=outcome.worker)
        return TrialState.FAILED if kept else None
    state = (TrialState.FAILED if result.diverged
             else TrialState.PRUNED if result.stopped else TrialState.COMPLETE)
    curves = [CurveRecord(outcome.trial_id, c.step, c.split, c.loss, c.cost, c.acc, c.lr)
              for c in result.curves]
    kept = storage.finish_trial(outcome.trial_id, state, metrics=result.metrics(),
                                curves=curves, message=result.message, worker=outcome.worker,
                                params=result.spec.to_dict())
    return state if kept else None
