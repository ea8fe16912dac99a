"""Warm start: a stage's first configurations taken from the best trials of another sweep or
stage (in this database or another), enqueued before the sampler proposes its own."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from numsweep.pareto import Objective, accuracy_index, pareto_ranks
from numsweep.storage import Storage, StorageError, TrialRecord, TrialState, normalize_url
from numsweep.sweeps.objectives import objective_values
from numsweep.sweeps.optuna_bridge import entry_values, inside
from numsweep.sweeps.spec import ParamSpace, SweepSpecError, WarmStart, searched_names


def config_key(space: Mapping[str, ParamSpace], params: Mapping[str, Any],
               fixed: Mapping[str, Any]) -> str:
    """A configuration's searched values as one comparable text."""
    return json.dumps(entry_values(space, params, fixed), sort_keys=True)


def source_storage(warm: WarmStart, here: Storage) -> Storage:
    """The database warm start reads: this one, or ``warm.db`` (an SQLite file that is not
    there is an error, never a new empty database)."""
    if warm.db is None:
        return here
    url = normalize_url(warm.db)
    if url.startswith("sqlite:///") and url != "sqlite:///:memory:":
        path = Path(url[len("sqlite:///"):])
        if not path.exists():
            raise SweepSpecError(f"warm_start.db: no database file {path}")
    return Storage(url, read_only=True, db_wait=here.db_wait)  # the same patience as here


def best_first(trials: Sequence[TrialRecord], objectives: Sequence[Objective]
               ) -> list[TrialRecord]:
    """Complete trials from best to worst: by the one objective; with several, by Pareto
    rank, then by the accuracy (:func:`numsweep.pareto.accuracy_index`) within a rank."""
    scored = [(t, v) for t in trials if (v := objective_values(t.metrics, objectives))]
    if not scored:
        return []
    values = np.array([v for _, v in scored])
    ranks = (pareto_ranks(values, [o.maximize for o in objectives]) if len(objectives) > 1
             else np.zeros(len(scored), dtype=int))
    lead = accuracy_index(objectives)
    sign = -1.0 if objectives[lead].maximize else 1.0
    order = sorted(range(len(scored)), key=lambda i: (ranks[i], sign * values[i][lead], i))
    return [scored[i][0] for i in order]


def check_source(warm: WarmStart, here: Storage) -> None:
    """A one-line error, before anything is stored, when the source sweep or stage is not
    there."""
    try:
        storage = source_storage(warm, here)
        record = storage.get_sweep(warm.sweep)
    except StorageError as exc:
        raise SweepSpecError(f"warm_start: {exc}") from None
    stages = [st.name for st in storage.list_stages(record.id)]
    if warm.stage is not None and warm.stage not in stages:
        raise SweepSpecError(f"warm_start: sweep {warm.sweep!r} has no stage {warm.stage!r} "
                             f"(stages: {', '.join(stages) or 'none yet'})")


def warm_configs(warm: WarmStart, here: Storage, space: Mapping[str, ParamSpace],
                 fixed: Mapping[str, Any], objectives: Sequence[Objective],
                 room: int | None = None, taken_already: Sequence[str] = ()
                 ) -> tuple[list[dict[str, Any]], str]:
    """The searched values of the ``warm.top_k`` best configurations of the source (by this
    stage's objectives) that lie inside ``space`` (at most ``room``; none of the
    configurations ``taken_already``, as their :func:`config_key`), and a note saying what
    was taken."""
    check_source(warm, here)
    storage = source_storage(warm, here)
    trials = storage.get_trials(warm.sweep, stage=warm.stage, states=[TrialState.COMPLETE])
    names = searched_names(space)
    configs: list[dict[str, Any]] = []
    taken: list[int] = []
    seen: set[str] = set(taken_already)
    outside = 0
    limit = warm.top_k if room is None else max(0, min(warm.top_k, room))
    for t in best_first(trials, objectives):
        if len(configs) == limit:
            break
        params = {n: t.params[n] for n in names if n in t.params}
        if not inside(space, params, fixed):
            outside += 1
            continue
        key = config_key(space, params, fixed)
        if key in seen:
            continue
        seen.add(key)
        configs.append(params)
        taken.append(t.id)
    where = warm.text
    note = (f"warm start from {where}: {len(configs)} configurations enqueued first"
            + (f" (trials {', '.join(str(i) for i in taken)})" if taken else "")
            + (f"; {outside} better ones outside this stage's space left out" if outside
               else ""))
    return configs, note
