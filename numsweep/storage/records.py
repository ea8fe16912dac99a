"""Plain frozen records: what leaves the storage package (never an ORM object)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from numsweep.storage.models import TrialState


@dataclass(frozen=True)
class SweepRecord:
    id: int
    name: str
    spec: dict[str, Any]
    seed: int
    created_at: datetime


@dataclass(frozen=True)
class StageRecord:
    id: int
    sweep_id: int
    index: int
    name: str
    sampler: str
    space: dict[str, Any]
    note: str


@dataclass(frozen=True)
class TrialRecord:
    id: int
    sweep: str
    stage: str | None
    number: int
    state: TrialState
    seed: int
    worker: str
    started_at: datetime | None
    finished_at: datetime | None
    message: str
    traceback: str
    params: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class CurveRecord:
    trial_id: int
    step: int
    split: str
    loss: float
    cost: float
    acc: float
    lr: float
