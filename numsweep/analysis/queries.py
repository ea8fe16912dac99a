"""Collect trials, curves and slot groups from the database as pandas DataFrames.

Columns use the shared vocabulary: one column per parameter (``lam``, ``f``, ...) and per
result (``val_acc``, ``test_acc``, ``train_seconds``, ...), plus ``trial_id``, ``sweep``,
``stage``, ``number``, ``state``, ``seed``, ``started_at``, ``finished_at``, ``message``.

Integer columns (``trial_id``, ``number``, ``seed``, ``updates``, ``param_count``, integer
parameters) are pandas' nullable ``Int64``. A parameter left unset (``n_s`` unset) or that the
trial's model does not have (``f`` of an ``mlp``; see :data:`MODEL_PARAMETERS`) is ``<NA>``.

Reads go through the storage package's bulk queries (a handful of SQL statements whatever the
number of trials), so tens of thousands of trials load in about a second.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from numsweep.errors import NumsweepError, did_you_mean
from numsweep.storage import StageRecord, Storage, StorageError, SweepRecord, TrialState

META_COLUMNS = ("trial_id", "sweep", "stage", "number", "state", "seed", "started_at",
                "finished_at", "worker", "message", "group_id", "group_size")
"""``group_id`` (the id of its fused group's first trial) and ``group_size``: <NA> for a
trial trained alone or stored by an older numsweep."""
CURVE_COLUMNS = ("trial_id", "step", "split", "loss", "cost", "acc", "lr")
SLOT_GROUP_COLUMNS = ("stage", "group_id", "worker", "size", "steps", "slot_updates", "trials",
                      "full_steps", "full_slot_updates", "occupancy", "started_at",
                      "finished_at")
"""A slot group's columns: ``occupancy`` is ``slot_updates / (steps * size)``."""
INTEGER_METRICS = ("updates", "param_count")
MODEL_PARAMETERS = {
    "mlp": ("hidden",),
    "convnet": ("f", "nf", "nh"),
    "convnet3": ("nf", "nh", "filter_size", "conv_stride", "conv_pad"),
}
"""The parameters only some models have, by model; every other parameter applies to all."""


def _storage(db: str | Storage) -> Storage:
    """A Storage from a Storage, or a reader of a database URL or SQLite file path (reading
    never creates or changes a database)."""
    return db if isinstance(db, Storage) else Storage(str(db), read_only=True)


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


Sweeps = str | Sequence[str] | None
"""One sweep's name, several names (their trials together), or None for every sweep."""


def sweep_names(sweep: Sweeps) -> list[str] | None:
    """The names ``sweep`` gives, each once in order (None: every sweep)."""
    if sweep is None:
        return None
    names = [sweep] if isinstance(sweep, str) else [str(n) for n in sweep]
    if not names:
        raise StorageError("no sweep named: give at least one sweep name")
    return list(dict.fromkeys(names))


def _checked_names(storage: Storage, sweep: Sweeps) -> list[str] | None:
    """:func:`sweep_names`, each name checked (a clear error for an unknown sweep)."""
    names = sweep_names(sweep)
    for name in names or ():
        storage.get_sweep(name)
    return names


def load_trials(db: str | Storage, sweep: Sweeps = None, *, stage: str | None = None,
                state: str | Sequence[str] | None = None) -> pd.DataFrame:
    """One row per trial with its parameters and results; ``state`` filters by trial state.

    ``db`` is a :class:`Storage`, a database URL or a SQLite file path; ``sweep`` one sweep's
    name or a list of names (the ``sweep`` column tells their trials apart).
    ``frame.attrs["params"]`` and ``frame.attrs["metrics"]`` name the parameter and result
    columns. List values (``hidden``) become tuples so they can be grouped on; unset and
    not-applicable parameters are ``<NA>``; integers are ``Int64``.
    """
    storage = _storage(db)
    rows = storage.get_trial_rows(_checked_names(storage, sweep), stage=stage,
                                  states=_states(state))
    meta = pd.DataFrame(
        [(i, sw, st, num, state.value, seed, started, finished, worker, message, gid, gsize)
         for i, sw, st, num, state, seed, worker, started, finished, message, gid, gsize
         in rows.trials],
        columns=list(META_COLUMNS))
    for name in ("trial_id", "number", "seed", "group_id", "group_size"):
        meta[name] = meta[name].astype("Int64")
    param_values: dict[str, dict[int, Any]] = {}
    for trial_id, name, value in rows.params:
        if name != "seed":
            param_values.setdefault(name, {})[trial_id] = _hashable(value)
    _drop_foreign_parameters(param_values)
    metric_values: dict[str, dict[int, float]] = {}
    for trial_id, name, value in rows.metrics:
        metric_values.setdefault(name, {})[trial_id] = value
    ids = meta["trial_id"].astype(object)
    columns: dict[str, pd.Series] = {}
    for name, values in param_values.items():
        columns[name] = _typed(pd.Series([values.get(int(i)) for i in ids], index=meta.index,
                                         dtype=object))
    for name, values in metric_values.items():
        column = ids.map(values).astype(float)
        if name in INTEGER_METRICS and _whole(column):
            column = column.astype("Int64")
        columns[name] = column
    frame = pd.concat([meta, pd.DataFrame(columns, index=meta.index)], axis=1)
    frame.attrs["params"] = list(param_values)
    frame.attrs["metrics"] = list(metric_values)
    return frame


def _drop_foreign_parameters(param_values: dict[str, dict[int, Any]]) -> None:
    """Forget the values of parameters the trial's model does not have (stored defaults)."""
    models = param_values.get("model", {})
    for model, own in MODEL_PARAMETERS.items():
        foreign = {p for other, names in MODEL_PARAMETERS.items() if other != model
                   for p in names} - set(own)
        for trial_id in [t for t, m in models.items() if m == model]:
            for name in foreign:
                param_values.get(name, {}).pop(trial_id, None)


def _whole(column: pd.Series) -> bool:
    finite = column.dropna()
    return bool(np.isfinite(finite).all() and (finite == finite.round()).all())


def _typed(column: pd.Series) -> pd.Series:
    """A parameter column: Int64 for integers, float for numbers (NaN where unset), object
    for the rest, with ``<NA>`` where a value is unset."""
    present = column.dropna()
    numbers = [v for v in present if isinstance(v, int | float) and not isinstance(v, bool)]
    if len(present) and len(numbers) == len(present):
        if all(isinstance(v, int) for v in numbers):
            return column.astype("Int64")
        return column.astype(float)
    return column.where(column.notna(), pd.NA).astype(object)


class QueryError(NumsweepError, ValueError):
    """A trial query names a column the trials do not have."""


def check_columns(frame: pd.DataFrame, names: Sequence[str], option: str) -> None:
    """An error naming the first of ``names`` not among ``frame``'s columns, with the closest
    column as a suggestion."""
    for name in names:
        if name not in frame.columns:
            raise QueryError(f"unknown column {name!r} in {option}"
                             f"{did_you_mean(name, frame.columns)}")


Condition = tuple[str, str, Any]
"""``(name, op, value)``: ``("lam", "<", 0.01)``, ``("optimizer", "=", "adam")``."""

_CONDITION = re.compile(r"\s*(\w+)\s*(<=|>=|!=|==|<|>|=)\s*(.+?)\s*")


def parse_where(texts: Sequence[str]) -> list[Condition]:
    """``lam<0.01``, ``val_acc>=0.4``, ``optimizer=adam`` (``trials --where``) -> conditions
    for :func:`find_trials` (``==`` is ``=``; a value that reads as a number is one). A text
    that is no condition is a :class:`QueryError`."""
    out = []
    for text in texts:
        match = _CONDITION.fullmatch(text)
        if not match:
            raise QueryError(f"--where expects NAME<VALUE (or <=, >, >=, =, !=), got {text!r}")
        name, op, value_text = match.groups()
        try:
            value: Any = float(value_text)
        except ValueError:
            value = value_text
        out.append((name, "=" if op == "==" else op, value))
    return out


def find_trials(db: str | Storage, sweep: Sweeps = None, *, stage: str | None = None,
                state: str | Sequence[str] | None = None,
                where: Sequence[Condition] = (), sort: str | None = None,
                ascending: bool = False, limit: int | None = None) -> pd.DataFrame:
    """:func:`load_trials` narrowed by ``where`` conditions ``(name, op, value)`` such as
    ``("lam", "<", 0.01)`` (every one must hold), sorted by ``sort`` (descending unless
    ``ascending``) and cut to ``limit`` rows. A misspelt column is a :class:`QueryError`."""
    storage = _storage(db)
    sweep = sweep_names(sweep)
    frame = load_trials(storage, sweep, stage=stage, state=state)
    if not frame.empty:  # no trials: nothing to misspell against
        check_columns(frame, [name for name, _, _ in where], "--where")
        check_columns(frame, [sort] if sort is not None else [], "--sort")
    for name, op, value in where:  # on the columns as shown, so each one can be filtered
        if not frame.empty:
            frame = frame[_matches(frame[name], name, op, value)]
    if sort is not None:
        frame = frame.sort_values(sort, ascending=ascending, na_position="last")
    return frame if limit is None else frame.head(limit)


_OPS = {"<": "__lt__", "<=": "__le__", ">": "__gt__", ">=": "__ge__", "=": "__eq__",
        "!=": "__ne__"}


def _matches(column: pd.Series, name: str, op: str, value: Any) -> pd.Series:
    """Where ``column op value`` holds; an unset value (``<NA>``, NaN) never does. Numbers
    compare numerically on number columns; anything else compares as the text ``trials``
    shows (lists as JSON, ``[50]``; states in any case), with ``=`` and ``!=`` only."""
    if op not in _OPS:
        raise QueryError(f"unknown comparison {op!r} in --where (use {', '.join(_OPS)})")
    present = column.notna()
    number = isinstance(value, int | float) and not isinstance(value, bool)
    if number and pd.api.types.is_numeric_dtype(column.dtype):
        result = getattr(column.astype(float), _OPS[op])(float(value))
        return present & result.fillna(False).astype(bool)
    if op not in ("=", "!="):
        raise QueryError(f"{name}{op}{value}: only = and != compare text")
    wanted = _shown_text(value, name)
    texts = column.map(lambda v: _shown_text(v, name) if not _unset(v) else None)
    equal = texts == wanted
    return present & (equal if op == "=" else ~equal)


def _unset(value: Any) -> bool:
    return not isinstance(value, tuple | list) and bool(pd.isna(value))


def _shown_text(value: Any, name: str) -> str:
    """A value as text for comparing: ``[50]`` and ``(50,)`` alike, ``5.0`` as ``5``."""
    if isinstance(value, str):
        try:
            value = json.loads(value)  # "[50]" or "5"; a word stays text
        except ValueError:
            return value.upper() if name == "state" else value
    if isinstance(value, tuple | list):
        return json.dumps([_shown_text(v, name) if isinstance(v, str) else v for v in value])
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, np.integer | np.floating):
        return _shown_text(value.item(), name)
    return str(value.upper() if isinstance(value, str) and name == "state" else value)


def load_curves(db: str | Storage, trial_ids: Sequence[int] | None = None, *,
                sweep: Sweeps = None, stage: str | None = None) -> pd.DataFrame:
    """Curve points: trial_id, step, split, loss, cost, acc, lr (one row per point).

    The trials are ``trial_ids``, or every trial of ``sweep`` (one name or several; and
    ``stage``), or the trials of ``sweep`` among ``trial_ids`` when both are given. An id
    that is no trial in the database is a :class:`StorageError` naming it.
    """
    storage = _storage(db)
    if trial_ids is None and sweep is None:
        raise StorageError("load_curves needs trial_ids or a sweep")
    ids = None if trial_ids is None else [int(i) for i in trial_ids]
    if ids:  # an id that is no trial is a mistake, not an empty frame
        found = storage.existing_trial_ids(ids)
        missing = sorted(set(ids) - found)
        if missing:
            raise StorageError(f"no trial with id {', '.join(map(str, missing))} in "
                               f"{storage.shown_url}")
    if sweep is not None:
        names = _checked_names(storage, sweep)
        in_sweep = [int(t[0]) for t in storage.get_trial_rows(names, stage=stage).trials]
        ids = in_sweep if ids is None else sorted(set(ids) & set(in_sweep))
    frame = pd.DataFrame(storage.get_curve_rows(ids) if ids else [],
                         columns=list(CURVE_COLUMNS))
    frame["trial_id"] = frame["trial_id"].astype("Int64")
    return frame


def load_stages(db: str | Storage, sweep: str) -> tuple[SweepRecord, list[StageRecord]]:
    """The sweep's record (its spec and seed) and its stages in order (sampler, space, note)."""
    storage = _storage(db)
    record = storage.get_sweep(sweep)
    return record, storage.list_stages(record.id)


def load_slot_groups(db: str | Storage, sweep: str, *, stage: str | None = None
                     ) -> pd.DataFrame:
    """The sweep's slot groups that ended (of one ``stage``), one row each in the order they
    were stored: :data:`SLOT_GROUP_COLUMNS`. Empty when it trained in none."""
    storage = _storage(db)
    storage.get_sweep(sweep)  # a one-line error naming the sweeps there are
    groups = [g for g in storage.slot_groups(sweep=sweep) if stage is None or g.stage == stage]
    frame = pd.DataFrame([{name: getattr(g, name) for name in SLOT_GROUP_COLUMNS}
                          for g in groups], columns=list(SLOT_GROUP_COLUMNS))
    counts = [name for name in SLOT_GROUP_COLUMNS if name not in
              ("stage", "worker", "occupancy", "started_at", "finished_at")]
    return frame.astype({name: "Int64" for name in counts} | {"occupancy": float})


LINEAGE_COLUMNS = ("stage", "trial_id", "update", "source_trial_id", "metric_member",
                   "metric_source")
"""The columns of :func:`load_lineage` before the explored values (``before_NAME`` and
``after_NAME`` for each explored parameter)."""


def load_lineage(db: str | Storage, sweep: str, *, stage: str | None = None) -> pd.DataFrame:
    """The exploit steps of the sweep's pbt stages (of one ``stage``), one row per member
    replaced, in the order they happened: :data:`LINEAGE_COLUMNS` (``trial_id`` the member
    replaced, ``source_trial_id`` the member it copied, both metrics at that ``update``), then
    ``before_NAME`` and ``after_NAME`` per explored parameter. Empty when it has none."""
    storage = _storage(db)
    storage.get_sweep(sweep)  # a one-line error naming the sweeps there are
    steps = [r for r in storage.lineage(sweep=sweep) if stage is None or r.stage == stage]
    names = list(dict.fromkeys(n for r in steps for n in (*r.before, *r.after)))
    rows = [{"stage": r.stage, "trial_id": r.trial_id, "update": r.update,
             "source_trial_id": r.source_trial_id, "metric_member": r.metric_member,
             "metric_source": r.metric_source,
             **{f"before_{n}": r.before.get(n, np.nan) for n in names},
             **{f"after_{n}": r.after.get(n, np.nan) for n in names}} for r in steps]
    columns = [*LINEAGE_COLUMNS, *(f"before_{n}" for n in names),
               *(f"after_{n}" for n in names)]
    frame = pd.DataFrame(rows, columns=columns)
    return frame.astype({"trial_id": "Int64", "update": "Int64", "source_trial_id": "Int64"})
