"""Collect trials and curves from the database as pandas DataFrames.

Columns use the shared vocabulary: one column per parameter (``lam``, ``f``, ...) and per
result (``val_acc``, ``test_acc``, ``train_seconds``, ...), plus ``trial_id``, ``sweep``,
``stage``, ``number``, ``state``, ``seed``, ``started_at``, ``finished_at``, ``message``.

Reads go through the storage package's bulk queries (a handful of SQL statements whatever the
number of trials), so tens of thousands of trials load in about a second.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pandas as pd

from numsweep.storage import StageRecord, Storage, StorageError, SweepRecord, TrialState

META_COLUMNS = ("trial_id", "sweep", "stage", "number", "state", "seed", "started_at",
                "finished_at", "worker", "message")
CURVE_COLUMNS = ("trial_id", "step", "split", "loss", "cost", "acc", "lr")


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


def _hashable(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


def load_trials(db: str | Storage, sweep: str | None = None, *, stage: str | None = None,
                state: str | Sequence[str] | None = None) -> pd.DataFrame:
    """One row per trial with its parameters and results; ``state`` filters by trial state.

    ``frame.attrs["params"]`` and ``frame.attrs["metrics"]`` name the parameter and result
    columns. List values (``hidden``) become tuples so they can be grouped on.
    """
    storage = _storage(db)
    if sweep is not None:
        storage.get_sweep(sweep)  # a clear error for an unknown sweep name
    rows = storage.get_trial_rows(sweep, stage=stage, states=_states(state))
    meta = pd.DataFrame(
        [(i, sw, st, num, state.value, seed, started, finished, worker, message)
         for i, sw, st, num, state, seed, worker, started, finished, message in rows.trials],
        columns=list(META_COLUMNS))
    param_values: dict[str, dict[int, Any]] = {}
    for trial_id, name, value in rows.params:
        if name != "seed":
            param_values.setdefault(name, {})[trial_id] = _hashable(value)
    metric_values: dict[str, dict[int, float]] = {}
    for trial_id, name, value in rows.metrics:
        metric_values.setdefault(name, {})[trial_id] = value
    ids = meta["trial_id"]
    columns: dict[str, pd.Series] = {}
    for name, values in param_values.items():
        columns[name] = ids.map(values)
    for name, values in metric_values.items():
        columns[name] = ids.map(values).astype(float)
    frame = pd.concat([meta, pd.DataFrame(columns, index=meta.index)], axis=1)
    frame.attrs["params"] = list(param_values)
    frame.attrs["metrics"] = list(metric_values)
    return frame


def load_curves(db: str | Storage, trial_ids: Sequence[int]) -> pd.DataFrame:
    """Curve points: trial_id, step, split, loss, cost, acc, lr (one row per point)."""
    storage = _storage(db)
    ids = [int(i) for i in trial_ids]
    return pd.DataFrame(storage.get_curve_rows(ids) if ids else [], columns=list(CURVE_COLUMNS))


def load_stages(db: str | Storage, sweep: str) -> tuple[SweepRecord, list[StageRecord]]:
    """The sweep's record (its spec and seed) and its stages in order (sampler, space, note)."""
    storage = _storage(db)
    record = storage.get_sweep(sweep)
    return record, storage.list_stages(record.id)
