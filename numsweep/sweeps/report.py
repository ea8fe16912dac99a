"""What ``numsweep sweep show`` prints: a sweep's stages, the ranges each chose and why, the
counts of trials by state, how full their slot groups were, and the best trials."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from numsweep.pareto import Objective
from numsweep.storage import (
    SlotGroupRecord,
    StagePlan,
    Storage,
    SweepRecord,
    TrialRecord,
    TrialState,
)
from numsweep.sweeps.objectives import chosen, objective_values, ranked
from numsweep.sweeps.occupancy import Occupancy, stage_occupancy

SHOWN_GROUPS = 12
"""Slot groups whose trials are listed one by one (the others are counted)."""


@dataclass(frozen=True)
class StageReport:
    name: str
    sampler: str
    plan: StagePlan
    note: str
    counts: dict[str, int]
    best: TrialRecord | None
    groups: dict[int, int] = field(default_factory=dict)  # group id -> its trials stored
    unrecorded: int = 0  # trials that ran without a group recorded (older numsweep)
    objectives: tuple[Objective, ...] = ()
    front: tuple[TrialRecord, ...] = ()  # with several objectives: the Pareto front
    warm_start: str = ""  # where the stage's first configurations came from (the spec's)
    slot_groups: tuple[SlotGroupRecord, ...] = ()  # its slot groups that ended, as stored

    @property
    def occupancy(self) -> Occupancy | None:
        """How full its slot groups were; None when it trained in none."""
        return stage_occupancy(self.slot_groups) if self.slot_groups else None

    @property
    def slots(self) -> str:
        """Its slot groups in words, e.g. ``3 groups of 4 slots, occupancy 97.3% (99.1% until
        the stage ran out of trials); trials per group: 12, 11, 9``; empty without any."""
        occupancy = self.occupancy
        if occupancy is None:
            return ""
        by_size: dict[int, int] = {}
        for g in self.slot_groups:
            by_size[g.size] = by_size.get(g.size, 0) + 1
        sizes = " + ".join(f"{n} group{'' if n == 1 else 's'} of {k} slots"
                           for k, n in sorted(by_size.items(), reverse=True))
        words = f"{sizes}, occupancy {occupancy.share:.1%}"
        if occupancy.ran_dry:
            dry = occupancy.until_dry
            words += (" (short of trials from its first update)" if dry is None else
                      f" ({dry:.1%} until the stage ran out of trials)")
        trials = [str(g.trials) for g in self.slot_groups[:SHOWN_GROUPS]]
        more = len(self.slot_groups) - len(trials)
        return (words + "; trials per group: " + ", ".join(trials)
                + (f" and {more} more groups" if more else ""))

    @property
    def grouping(self) -> str:
        """How the stage's trials trained, in words: the fused groups by size and the
        stored group size, e.g. ``8 trials in 2 fused groups (2 of 4) (group size 4,
        batch, automatic)``, or ``10 trials in 2 slot groups (6, 4 trials through 4 slots)
        (group size 4, slots,
        automatic; measured per trial-update: K=1 2.10 ms, 2 2.40 ms, 4 1.61 ms)``."""
        size = self.plan.group_size
        kind = f", {self.plan.grouping}" if self.plan.grouping and size and size > 1 else ""
        pace = self.plan.describe_pace()
        setting = ("" if size is None else
                   f" (group size {size}{kind}{', automatic' if self.plan.group_auto else ''}"
                   f"{'; ' + pace if pace else ''})")
        trials = sum(self.groups.values())
        fused = {g: n for g, n in self.groups.items() if n > 1}
        if not fused:
            words = (f"{trials} trial{'' if trials == 1 else 's'} one at a time" if trials
                     else "no trials trained yet")
        else:
            by_size: dict[int, int] = {}
            for n in fused.values():
                by_size[n] = by_size.get(n, 0) + 1
            sizes = ", ".join(f"{count} of {n}" for n, count in sorted(by_size.items(),
                                                                       reverse=True))
            alone = trials - sum(fused.values())
            plural = "s" if len(fused) > 1 else ""
            if self.plan.grouping == "slots":  # a slot group's trials: all that passed through
                sizes = ", ".join(str(n) for n in sorted(fused.values(), reverse=True))
                sizes = f"{sizes} trials through {size} slots" if size else sizes
            words = (f"{trials} trials in {len(fused)} "
                     f"{'slot' if self.plan.grouping == 'slots' else 'fused'} group{plural} "
                     f"({sizes})"
                     + (f", {alone} alone" if alone else ""))
        if self.unrecorded:
            words += f"; {self.unrecorded} trials without a recorded group"
        return words + setting

    @property
    def reused(self) -> tuple[int, ...]:
        return self.plan.reused

    @property
    def fixed(self) -> dict[str, Any]:
        return self.plan.fixed


@dataclass(frozen=True)
class SweepReport:
    sweep: SweepRecord
    stages: list[StageReport]
    best: list[TrialRecord]
    counts: dict[str, int]

    @property
    def searched(self) -> list[str]:
        """The parameters the sweep's space searches, in its order (``lam``, ``f``, ``nf``:
        an entry ``"f,nf"`` searches two together)."""
        return [n for entry in self.sweep.spec.get("space", {}) for n in entry.split(",")]


def _val(t: TrialRecord) -> float:
    v = t.metrics.get("val_acc", math.nan)
    return v if math.isfinite(v) else -math.inf


def _stage_setup(spec: dict[str, Any], stage: str) -> tuple[tuple[Objective, ...], str]:
    """A stage's objectives (default val_acc:max) and its warm start, from the stored spec."""
    raw = next((s for s in spec.get("stages", []) if s.get("name") == stage), {})
    texts = raw.get("objectives", spec.get("objectives", ["val_acc:max"]))
    warm = raw.get("warm_start")
    shown = ""
    if warm:
        shown = (f"sweep {warm['sweep']}" + (f" stage {warm['stage']}" if warm.get("stage")
                                             else "")
                 + (f" in {warm['db']}" if warm.get("db") else "") + f", top {warm['top_k']}")
    return tuple(Objective.from_text(t) for t in texts), shown


def sweep_report(storage: Storage, name: str, top: int = 5) -> SweepReport:
    record = storage.get_sweep(name)
    trials = storage.get_trials(name)
    by_id = {t.id: t for t in trials}
    slot_groups = storage.slot_groups(sweep=name)
    stages = []
    for st in storage.list_stages(record.id):
        mine = [t for t in trials if t.stage == st.name]
        counts: dict[str, int] = {}
        for t in mine:
            counts[t.state.value] = counts.get(t.state.value, 0) + 1
        plan = st.plan
        pool = [t for t in mine if t.state is TrialState.COMPLETE] + [
            by_id[i] for i in plan.reused if i in by_id]
        objectives, warm = _stage_setup(record.spec, st.name)
        scored = [t for t in pool if objective_values(t.metrics, objectives) is not None]
        values = [objective_values(t.metrics, objectives) or () for t in scored]
        front = tuple(ranked(scored, values, objectives)) if len(objectives) > 1 else ()
        best = chosen(scored, values, objectives) if scored else None
        groups: dict[int, int] = {}
        for t in mine:
            if t.group_id is not None:
                groups[t.group_id] = groups.get(t.group_id, 0) + 1
        unrecorded = sum(t.group_id is None and t.state.is_finished() for t in mine)
        stages.append(StageReport(st.name, st.sampler, plan, st.note, counts, best, groups,
                                  unrecorded, objectives, front, warm,
                                  tuple(g for g in slot_groups if g.stage_id == st.id)))
    complete = [t for t in trials if t.state is TrialState.COMPLETE]
    counts = {}
    for t in trials:
        counts[t.state.value] = counts.get(t.state.value, 0) + 1
    best = sorted(complete, key=lambda t: (-_val(t), t.id))[:top]
    return SweepReport(record, stages, best, counts)
