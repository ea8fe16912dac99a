"""What a running sweep tells its caller: a :class:`TrialEvent` as each stage starts, each
trial starts, measures a curve point and ends, and each slot group ends; a
:class:`StageSummary` per stage."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from numsweep.engine import TrialSpec
from numsweep.storage import TrialState
from numsweep.sweeps.worker import TrialOutcome


@dataclass(frozen=True)
class TrialEvent:
    """Sent to the progress display: a stage starts ("stage"), a trial starts, measures a
    curve point ("point", with its val_acc) or ends, a slot group ends ("group", with the
    stage's occupancy so far)."""

    kind: str  # "stage", "started", "point", "finished" or "group" (a slot group ended)
    stage: str
    number: int = -1  # the trial's number in its sweep; shown is trial_id
    state: TrialState | None = None
    val_acc: float | None = None
    message: str = ""
    # the trial's train_seconds + eval_seconds, what the planner estimates; for a trial of
    # a fused group its even share of the group's (group_size trials): see docs/numbers.md
    estimate: float | None = None  # the planner's estimate of it ("started", "finished")
    seconds: float | None = None  # as measured ("finished"; None without a result)
    planned: int = 0  # trials the stage plans to run ("stage")
    reused: int = 0  # earlier trials the stage reuses ("stage")
    counts: Mapping[str, int] = field(default_factory=dict)  # finished before ("stage")
    trial_id: int | None = None  # the database id: what `trials`, `--trial` and `rerun` take
    jobs: int | None = None  # trials this process runs at once ("stage")
    group_size: int = 1  # trials trained together at most ("stage"), the finished
    # trial's group ("finished"), or the slot group's slots ("group"); 1: one at a time
    group_auto: bool = False  # the group size was chosen automatically ("stage")
    step: int | None = None  # the update of its latest curve point ("point")
    total: int | None = None  # the updates it plans ("point")
    # the share of the slot-updates of the stage's slot groups stored so far (every
    # process's) that trained a trial ("group"): see sweeps/occupancy.py
    occupancy: float | None = None


@dataclass(frozen=True)
class StageSummary:
    name: str
    planned: int
    counts: dict[str, int]
    best_val_acc: float | None
    best_params: dict[str, Any] | None
    sampler: str = ""
    note: str = ""
    reused: int = 0
    best_test_acc: float | None = None
    best_trial: int | None = None


EventHandler = Callable[[TrialEvent], None]
Estimator = Callable[[TrialSpec], float]


def trial_seconds(outcome: TrialOutcome) -> float | None:
    """A finished trial's measured seconds as the planner estimates them: its train_seconds
    + eval_seconds (a grouped trial's share of its group's); None without a result."""
    if outcome.result is None:
        return None
    return outcome.result.train_seconds + outcome.result.eval_seconds
