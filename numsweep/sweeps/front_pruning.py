"""Pruning with any number of objectives (``pruner = "front"``), which Optuna's pruners do not
do: a rung rule of numsweep's own.

The rungs are the ends of cycles (epochs for schedules without cycles), where the other
pruners look too. At each rung a trial's objectives are measured so far:

- an accuracy (``val_acc``, ``train_acc``, ``test_acc``): the validation accuracy at the rung;
- ``param_count``: the trial's own (it does not change);
- ``train_seconds``: the trial's cost so far, the time of its group (or its own, alone)
  between one rung and the next divided by the trials live in it (see :class:`RungClock`).

Rule: a trial continues while it is dominated at its rung by at most ``prune_share`` (default
0.5) of the earlier trials that reached that rung; with more, it is pruned. Fewer than
:data:`MIN_PEERS` such trials: it continues. The earlier trials are those the study had been
told of when the trial was proposed (the same lag as for proposals), so the decision does not
depend on worker timing.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from numsweep.pareto import Objective, dominated_by

if TYPE_CHECKING:
    import optuna

MIN_PEERS = 2
"""Trials that must have reached a rung before the rule prunes anyone there."""
RUNG_METRICS = ("val_acc", "train_acc", "test_acc", "param_count", "train_seconds")
"""The objectives measured at a rung (val_loss is not: its stage cannot use this pruner)."""
RUNGS_ATTR = "ns_rungs"
"""The Optuna trial user attribute keeping a trial's rung values: [step, value, ...] rows."""


@dataclass(frozen=True)
class FrontRule:
    """What a worker needs for the rule: the objectives, the share, and the rung values
    ``(step, values)`` of the earlier trials the study had been told of."""

    objectives: tuple[Objective, ...]
    share: float
    rungs: tuple[tuple[int, tuple[float, ...]], ...]

    def peers(self, step: int) -> list[tuple[float, ...]]:
        return [values for at, values in self.rungs if at == step]


def rule_from(trials: Sequence[optuna.trial.FrozenTrial], objectives: Sequence[Objective],
              share: float) -> FrontRule:
    """The rule over the finished (told) trials among ``trials`` (Optuna FrozenTrials)."""
    rungs: list[tuple[int, tuple[float, ...]]] = []
    for t in trials:
        if not t.state.is_finished():
            continue  # not yet told: its results are not known at this lag
        for row in t.user_attrs.get(RUNGS_ATTR, []):
            rungs.append((int(row[0]), tuple(float(v) for v in row[1:])))
    return FrontRule(tuple(objectives), share, tuple(rungs))


class RungClock:
    """A group's training time between rungs, shared among the trials live in it: each
    trial's cost so far. The group's first interval is shared by all its trials; each later
    one by the trials that reached the previous rung and were not pruned there."""

    def __init__(self, size: int) -> None:
        self.live = size
        self.started = time.perf_counter()
        self.step: int | None = None
        self.cost = 0.0
        self.reached = 0
        self.stopped = 0

    def cost_at(self, step: int) -> float:
        if step != self.step:
            now = time.perf_counter()
            if self.step is not None:
                self.live = max(1, self.reached - self.stopped)
            self.cost += (now - self.started) / self.live
            self.started, self.step, self.reached, self.stopped = now, step, 0, 0
        self.reached += 1
        return self.cost

    def stopped_one(self) -> None:
        self.stopped += 1


class FrontPruner:
    """A trial's reporter under the rule; keeps its rung values for the study."""

    def __init__(self, rule: FrontRule, clock: RungClock, param_count: int) -> None:
        self.rule = rule
        self.clock = clock
        self.param_count = param_count
        self.reports: list[tuple[int, float]] = []
        self.rungs: list[tuple[float, ...]] = []

    def value(self, objective: Objective, step: int, val_acc: float, cost: float) -> float:
        if objective.metric == "param_count":
            return float(self.param_count)
        if objective.metric == "train_seconds":
            return cost
        return val_acc

    def __call__(self, step: int, val_acc: float) -> bool:
        self.reports.append((step, float(val_acc)))
        cost = self.clock.cost_at(step)
        values = [self.value(o, step, float(val_acc), cost) for o in self.rule.objectives]
        self.rungs.append((float(step), *values))
        peers = self.rule.peers(step)
        if len(peers) < MIN_PEERS or not np.isfinite(values).all():
            return False
        maximize = [o.maximize for o in self.rule.objectives]
        beaten = int(dominated_by(np.array(peers), maximize, values).sum())
        stop = beaten > self.rule.share * len(peers)
        if stop:
            self.clock.stopped_one()
        return stop

    def rung_rows(self) -> list[list[float]]:
        return [[int(r[0]), *r[1:]] for r in self.rungs]


def rung_attrs(rows: Sequence[Sequence[float]]) -> Mapping[str, object]:
    """The user attribute that keeps a trial's rung values in its Optuna trial."""
    return {RUNGS_ATTR: [list(r) for r in rows]} if rows else {}
