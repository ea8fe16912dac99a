"""What ``numsweep sweep show`` prints: a sweep's stages, the ranges each chose and why, the
counts of trials by state and the best trials."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from numsweep.storage import Storage, SweepRecord, TrialRecord, TrialState


@dataclass(frozen=True)
class StageReport:
    name: str
    sampler: str
    space: dict[str, Any]
    fixed: dict[str, Any]
    note: str
    counts: dict[str, int]
    reused: list[int]
    best: TrialRecord | None


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
        reused = [int(i) for i in st.space.get("reused", [])]
        pool = [t for t in mine if t.state is TrialState.COMPLETE] + [
            by_id[i] for i in reused if i in by_id]
        best = max(pool, key=lambda t: (_val(t), -t.id), default=None)
        stages.append(StageReport(st.name, st.sampler, st.space.get("space", st.space),
                                  st.space.get("fixed", {}), st.note, counts, reused, best))
    complete = [t for t in trials if t.state is TrialState.COMPLETE]
    counts = {}
    for t in trials:
        counts[t.state.value] = counts.get(t.state.value, 0) + 1
    best = sorted(complete, key=lambda t: (-_val(t), t.id))[:top]
    return SweepReport(record, stages, best, counts)


def describe_space(space: dict[str, Any], sampler: str = "grid") -> str:
    """One line per entry: ``lam in [1e-05, 0.1] (log)``, ``optimizer in [sgd, adam]``; the
    number of grid points only for a grid stage (other samplers draw from the range)."""
    parts = []
    for name, p in space.items():
        if not isinstance(p, dict):
            continue
        if p.get("type") == "categorical":
            text = f"{name} in {p.get('choices')}"
        else:
            text = f"{name} in [{p.get('low'):.4g}, {p.get('high'):.4g}]"
            text += " (log)" if p.get("log") else ""
            text += f", grid {p['grid']}" if p.get("grid") and sampler == "grid" else ""
        if p.get("when"):
            text += f" when {p['when']}"
        parts.append(text)
    return "; ".join(parts) or "(nothing searched)"
