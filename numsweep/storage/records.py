"""Plain frozen records: what leaves the storage package (never an ORM object)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from numsweep.storage.models import TrialState
from numsweep.storage.plan import StagePlan


@dataclass(frozen=True)
class RunSettings:
    """How a sweep's trials run, as it was started: its data source (None: CIFAR-10
    downloaded into the cache), BLAS threads per trial, checkpoint folder and keep policy
    (None: not given)."""

    data: str | None = None
    threads: int | None = None
    checkpoint_dir: str | None = None
    keep_weights: str | None = None


@dataclass(frozen=True)
class SweepRecord:
    id: int
    name: str
    spec: dict[str, Any]  # what it trains (its spec file's contents)
    seed: int
    created_at: datetime
    data_fingerprint: str | None = None
    run: RunSettings | None = None  # how it runs; None: recorded none (single trials)


@dataclass(frozen=True)
class StageRecord:
    id: int
    sweep_id: int
    index: int
    name: str
    sampler: str
    space: dict[str, Any]  # the stored JSON form of :attr:`plan` (``ns_stages.plan_json``)
    note: str

    @property
    def plan(self) -> StagePlan:
        return StagePlan.from_dict(self.space)


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
    slot: int | None = None  # planned place in its stage (None for single trials)
    attempt: int = 0  # 0, then 1, 2, ... when an interrupted attempt ran again
    heartbeat_at: datetime | None = None
    setup: dict[str, Any] = field(default_factory=dict)  # how a single trial ran (its data)
    group_id: int | None = None  # the fused group it trained in: its first trial's id
    group_size: int | None = None  # trials that group started with (None: not recorded)


@dataclass(frozen=True)
class SlotRecord:
    """One attempt at a planned trial of a stage, as the sweep runner needs it to decide what
    to run next: which slot, which attempt, its state, who runs it and when it last said so,
    the Optuna trial it reports to and its val_acc (None unless measured)."""

    trial_id: int
    number: int
    slot: int
    attempt: int
    state: TrialState
    study_trial: int | None
    worker: str
    heartbeat_at: datetime | None
    val_acc: float | None


@dataclass(frozen=True)
class CurveRecord:
    trial_id: int
    step: int
    split: str
    loss: float
    cost: float
    acc: float
    lr: float


@dataclass(frozen=True)
class SlotGroupRecord:
    """A slot group that ended: ``size`` slots (K) over ``steps`` group updates trained
    ``slot_updates`` trial-updates for ``trials`` trials; ``full_steps`` and
    ``full_slot_updates`` count the updates before the stage first had no trial for a free
    slot. ``group_id`` is the id of its first trial; ``worker`` the process that trained it."""

    id: int
    stage_id: int
    stage: str
    group_id: int
    worker: str
    size: int
    steps: int
    slot_updates: int
    trials: int
    full_steps: int
    full_slot_updates: int
    started_at: datetime
    finished_at: datetime

    @property
    def occupancy(self) -> float:
        """The share of its slot-updates that trained a trial (1.0 when it made none)."""
        return self.slot_updates / (self.steps * self.size) if self.steps else 1.0


@dataclass(frozen=True)
class LineageRecord:
    """One exploit step of a pbt stage for one member: at group update ``update`` trial
    ``trial_id`` copied trial ``source_trial_id`` (weights and explored values) and perturbed
    its values from ``before`` to ``after``; ``metric_member`` and ``metric_source`` are the
    stage's metric of both at that step (NaN for a diverged member)."""

    id: int
    stage_id: int
    stage: str
    trial_id: int
    update: int
    source_trial_id: int
    metric_member: float
    metric_source: float
    before: Mapping[str, float]
    after: Mapping[str, float]
