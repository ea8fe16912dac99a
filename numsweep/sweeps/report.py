"""What ``numsweep sweep show`` prints: a sweep's stages, the ranges each chose and why, the
counts of trials by state and the best trials."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from numsweep.storage import StagePlan, Storage, SweepRecord, TrialRecord, TrialState


@dataclass(frozen=True)
class StageReport:
    name: str
    sampler: str
    plan: StagePlan
    note: str
    counts: dict[str, int]
    best: TrialRecord | None

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


def _val(t: TrialRecord) -> float:
    v = t.metrics.get("val_acc", math.nan)
    return v if math.isfinite(v) else -math.inf


def sweep_report(storage: Storage, name: str, top: int = 5) -> SweepReport:
    record = storage.get_sweep(name)
    trials = storage.get_trials(name)
    by_id = {t.id: t for t in trials}
    stages = []
    for st in storage.list_stages(record.id):
        mine = [t for t in trials if t.stage == st.name]
        counts: dict[str, int] = {}
        for t in mine:
            counts[t.state.value] = counts.get(t.state.value, 0) + 1
        plan = st.plan
        pool = [t for t in mine if t.state is TrialState.COMPLETE] + [
            by_id[i] for i in plan.reused if i in by_id]
        best = max(pool, key=lambda t: (_val(t), -t.id), default=None)
        stages.append(StageReport(st.name, st.sampler, plan, st.note, counts, best))
    complete = [t for t in trials if t.state is TrialState.COMPLETE]
    counts = {}
    for t in trials:
        counts[t.state.value] = counts.get(t.state.value, 0) + 1
    best = sorted(complete, key=lambda t: (-_val(t), t.id))[:top]
    return SweepReport(record, stages, best, counts)
