"""What a stage optimises: one metric and its direction, or several (a Pareto front).

A spec names them at its top or in a stage::

    objective = "val_acc"                                   # the default
    objective = { metric = "val_loss", direction = "minimize" }
    objectives = ["val_acc:max", "train_seconds:min"]       # several: a Pareto front

The time objective ``train_seconds`` is scored on the trial's own cost, the stored metric
``cost_seconds`` (:func:`trial_cost_seconds`), so that a trial trained in a fused group is
not charged for the others.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from numsweep.pareto import COST_METRIC, Objective, choose_point, front_mask

if TYPE_CHECKING:
    from numsweep.engine import TrialResult

OBJECTIVE_METRICS = {"val_acc": "maximize", "test_acc": "maximize", "train_acc": "maximize",
                     "val_loss": "minimize", "train_seconds": "minimize",
                     "param_count": "minimize"}
"""The metrics a stage can optimise and the direction each takes when none is given."""
DIRECTIONS = {"max": "maximize", "maximize": "maximize", "min": "minimize",
              "minimize": "minimize"}
DEFAULT_OBJECTIVES = (Objective("val_acc", "maximize"),)


def parse_objective(raw: Any, where: str) -> Objective:
    """``"val_acc"``, ``"val_loss:min"`` or ``{ metric = "val_loss", direction = "minimize" }``;
    raises ValueError with a message naming ``where``."""
    if isinstance(raw, str):
        metric, _, direction = raw.partition(":")
    elif isinstance(raw, Mapping):
        unknown = sorted(set(raw) - {"metric", "direction"})
        if unknown:
            raise ValueError(f"{where}.{unknown[0]}: unknown key (expected direction, metric)")
        metric, direction = raw.get("metric"), raw.get("direction", "")
        if not isinstance(metric, str) or not isinstance(direction, str):
            raise ValueError(f"{where}: metric and direction must be strings")
    else:
        raise ValueError(f"{where}={raw!r} must be a metric name such as \"val_acc\", "
                         "\"val_loss:min\" or a table { metric = ..., direction = ... }")
    metric = metric.strip()
    if metric not in OBJECTIVE_METRICS:
        raise ValueError(f"{where}: unknown metric {metric!r} (objectives: "
                         f"{', '.join(OBJECTIVE_METRICS)})")
    direction = direction.strip().lower()
    if direction and direction not in DIRECTIONS:
        raise ValueError(f"{where}: direction {direction!r} must be maximize (max) or "
                         "minimize (min)")
    return Objective(metric, DIRECTIONS[direction] if direction else OBJECTIVE_METRICS[metric])


def parse_objectives(objective: Any, objectives: Any, where: str
                     ) -> tuple[Objective, ...] | None:
    """The objectives a table sets with ``objective`` or ``objectives`` (None: neither)."""
    if objective is not None and objectives is not None:
        raise ValueError(f"{where}: give 'objective' or 'objectives', not both")
    if objective is not None:
        return (parse_objective(objective, f"{where}objective"),)
    if objectives is None:
        return None
    if isinstance(objectives, (str, Mapping)):
        objectives = [objectives]
    if not isinstance(objectives, list) or not objectives:
        raise ValueError(f"{where}objectives must be a non-empty list such as "
                         "[\"val_acc:max\", \"train_seconds:min\"]")
    out = tuple(parse_objective(o, f"{where}objectives[{i}]") for i, o in enumerate(objectives))
    metrics = [o.metric for o in out]
    twice = sorted({m for m in metrics if metrics.count(m) > 1})
    if twice:
        raise ValueError(f"{where}objectives names {twice[0]} twice")
    return out


def describe(objectives: Sequence[Objective]) -> str:
    return ", ".join(o.text for o in objectives)


def trial_cost_seconds(result: TrialResult) -> float:
    """The trial's own training cost in seconds, what the time objective minimises.

    For a trial trained alone: its time in parameter updates. For a trial trained in a fused
    group: the sum over the updates it took part in of the group's time for that update
    divided by the trials live at that update (the engine's even share of each update,
    ``engine.group``); a trial that leaves the group (diverged, pruned) stops paying."""
    return float(result.train_seconds)


def final_val_loss(result: TrialResult) -> float:
    """The validation loss the engine measured at the trial's last curve point."""
    losses = [c.loss for c in result.curves if c.split == "val"]
    return float(losses[-1]) if losses else math.nan


def objective_metrics(result: TrialResult) -> dict[str, float]:
    """The metrics beside the engine's own that objectives are read from."""
    return {"val_loss": final_val_loss(result), COST_METRIC: trial_cost_seconds(result)}


def objective_values(metrics: Mapping[str, float], objectives: Sequence[Objective]
                     ) -> tuple[float, ...] | None:
    """A trial's value for each objective; None when one is missing or not finite."""
    out = []
    for o in objectives:
        value = metrics.get(o.column)
        if value is None or not math.isfinite(value):
            return None
        out.append(float(value))
    return tuple(out)


def mean_values(rows: Sequence[Mapping[str, float]], objectives: Sequence[Objective]
                ) -> tuple[float, ...] | None:
    """The mean value of each objective over ``rows`` (replicates) that measured them all."""
    values = [v for v in (objective_values(r, objectives) for r in rows) if v is not None]
    if not values:
        return None
    return tuple(float(x) for x in np.mean(np.array(values), axis=0))


def ranked(items: Sequence[Any], values: Sequence[Sequence[float]],
           objectives: Sequence[Objective]) -> list[Any]:
    """One objective: ``items`` from best to worst (ties: the earlier first). Several: the
    items on the Pareto front of ``values``, in their order."""
    if not items:
        return []
    if len(objectives) == 1:
        sign = -1.0 if objectives[0].maximize else 1.0
        order = sorted(range(len(items)), key=lambda i: (sign * values[i][0], i))
        return [items[i] for i in order]
    on = front_mask(np.array(values), [o.maximize for o in objectives])
    return [item for item, keep in zip(items, on, strict=True) if keep]


def chosen(items: Sequence[Any], values: Sequence[Sequence[float]],
           objectives: Sequence[Objective], pick: str = "accuracy") -> Any:
    """The best item: by the one objective, or the point ``pick`` chooses on the front."""
    if len(objectives) == 1:
        return ranked(items, values, objectives)[0]
    return items[choose_point(np.array(values), objectives, pick)]
