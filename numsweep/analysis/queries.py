"""Collect trials and curves from the database as pandas DataFrames.

Columns use the shared vocabulary: one column per parameter (``lam``, ``f``, ...) and per
result (``val_acc``, ``test_acc``, ``train_seconds``, ...), plus ``trial_id``, ``sweep``,
``stage``, ``number``, ``state``, ``seed``, ``started_at``, ``finished_at``, ``message``.
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from numsweep.storage import Storage, StorageError, TrialState

META_COLUMNS = ("trial_id", "sweep", "stage", "number", "state", "seed", "started_at",
                "finished_at", "worker", "message")


def _storage(db: str | Storage) -> Storage:
    return db if isinstance(db, Storage) else Storage(db)


def _states(state: str | Sequence[str] | None) -> list[TrialState] | None:
    if state is None:
        return None
    names = [state] if isinstance(state, str) else list(state)
    try:
        return [TrialState(n.upper()) for n in names]
    except ValueError:
        known = ", ".join(s.value.lower() for s in TrialState)
        raise StorageError(f"unknown trial state in {names} (states: {known})") from None


def load_trials(db: str | Storage, sweep: str | None = None, *, stage: str | None = None,
                state: str | Sequence[str] | None = None) -> pd.DataFrame:
    """One row per trial with its parameters and results; ``state`` filters by trial state."""
    storage = _storage(db)
    if sweep is not None:
        storage.get_sweep(sweep)  # a clear error for an unknown sweep name
    records = storage.get_trials(sweep, stage=stage, states=_states(state))
    rows = []
    for r in records:
        row = {"trial_id": r.id, "sweep": r.sweep, "stage": r.stage, "number": r.number,
               "state": r.state.value, "seed": r.seed, "started_at": r.started_at,
               "finished_at": r.finished_at, "worker": r.worker, "message": r.message}
        row.update({k: (tuple(v) if isinstance(v, list) else v) for k, v in r.params.items()
                    if k != "seed"})
        row.update(r.metrics)
        rows.append(row)
    frame = pd.DataFrame(rows, columns=None if rows else list(META_COLUMNS))
    return frame


def load_curves(db: str | Storage, trial_ids: Sequence[int]) -> pd.DataFrame:
    """Curve points: trial_id, step, split, loss, cost, acc, lr (one row per point)."""
    storage = _storage(db)
    points = storage.get_curves(list(trial_ids))
    return pd.DataFrame([p.__dict__ for p in points],
                        columns=["trial_id", "step", "split", "loss", "cost", "acc", "lr"])
