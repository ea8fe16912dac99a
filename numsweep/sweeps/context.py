"""The state one sweep process shares among the parts that run its stages: what it was
asked to do (:class:`ProcessSettings`), the trials it has claimed and runs (:class:`InFlight`),
a stage's stored plan (:class:`Plan`), and what it opened to run them
(:class:`SweepContext`)."""

from __future__ import annotations

from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from numsweep.engine import TrialSpec
from numsweep.storage import RunSettings as StoredRunSettings
from numsweep.storage import StagePlan, Storage, SweepRecord, TrialRecord
from numsweep.sweeps.data_share import DataShare
from numsweep.sweeps.events import Estimator, EventHandler, TrialEvent
from numsweep.sweeps.live import Channel
from numsweep.sweeps.liveness import Heartbeat
from numsweep.sweeps.objectives import Objective
from numsweep.sweeps.pool import WorkerPool
from numsweep.sweeps.spec import ParamSpace, StageSpec, SweepSpec
from numsweep.sweeps.worker import PruneSnapshot, TrialOutcome

if TYPE_CHECKING:
    import optuna


def _ignore(_event: TrialEvent) -> None:
    pass


@dataclass(frozen=True)
class ProcessSettings:
    """What this sweep process was asked to do, checked (see :func:`runner.run_sweep`)."""

    spec: SweepSpec
    data_source: str | None  # absolute: found from any folder
    jobs: int | None  # None: a Dask cluster's worker threads
    threads: int  # BLAS threads per trial
    backend: str
    scheduler: str | None
    grace: float
    checkpoint_dir: Path
    keep_weights: str
    group_size: int | None  # trials trained together; None: chosen per stage
    force: bool  # runs longer than guards.LONG_RUN_UPDATES allowed
    resume: bool  # sweep resume, worker, extend: beside other processes
    deadline: float | None  # time.monotonic() when the sweep's time budget is used up
    name: str  # this process (worker_name()): host and pid
    device: str | None = None  # the device of every trial this process trains; None: each
    # trial's own
    grouping: str | None = None  # "slots" or "batch"; None: as the stage stored it
    notify: EventHandler = _ignore
    estimate: Estimator | None = None

    def stored(self) -> dict[str, Any]:
        """The sweep's spec as stored."""
        return self.spec.to_dict()

    def run_record(self) -> StoredRunSettings:
        """The settings every process that runs the sweep uses, as stored beside its spec."""
        return StoredRunSettings(self.data_source, self.threads, str(self.checkpoint_dir),
                                 self.keep_weights)


@dataclass(frozen=True)
class Plan:
    """A stage's stored plan, with its searched entries as :class:`ParamSpace` and its reused
    trials' records."""

    stage_id: int
    stored: StagePlan
    space: dict[str, ParamSpace]
    fixed: dict[str, Any]
    reused: list[TrialRecord]
    note: str

    @property
    def queue(self) -> tuple[dict[str, Any], ...]:
        return self.stored.configs

    @property
    def n_configs(self) -> int:
        return self.stored.n_configs or 0


@dataclass
class RunningTrial:
    """A trial this process claimed, from its claim until its outcome is stored."""

    stage: str
    config: int
    slot: int
    trial_id: int
    number: int
    study_trial: int | None
    started: float
    estimate: float | None
    attempt: int = 0
    group: int | None = None  # the id of the group it trains in (its first trial's id)
    checkpoint: Path | None = None  # its group's checkpoint (keyed by the group's slots)


Pending = tuple[RunningTrial, TrialSpec, PruneSnapshot | None]


@dataclass
class SlotGroupRun:
    """A slot group this process runs (``slot_stage.py``): its key (``engine.group_key``),
    its checkpoint, and its members now (they change at each refill)."""

    group_id: int
    stage: str
    key: Any
    size: int
    checkpoint: Path
    members: dict[int, RunningTrial] = field(default_factory=dict)  # trial id -> job


@dataclass
class InFlight:
    """The trials of this process: claimed and waiting for a group (``pending``), submitted
    (``running``, a future each), and what it finished or could not write."""

    pending: list[Pending] = field(default_factory=list)
    running: dict[Future[TrialOutcome], RunningTrial] = field(default_factory=dict)
    training: dict[int, RunningTrial] = field(default_factory=dict)  # id -> job, from start
    inline: RunningTrial | None = None  # its group runs in this process (--jobs 1)
    slot_groups: dict[Future[Any], SlotGroupRun] = field(default_factory=dict)
    finished: int = 0
    unsaved: list[TrialOutcome] = field(default_factory=list)  # the database is away

    def ids(self) -> list[int]:
        """Every trial this process holds RUNNING in the database."""
        ids = [job.trial_id for job in self.running.values()]
        ids += [job.trial_id for job, _, _ in self.pending]
        ids += list(self.training)  # a group trained in this process: every member
        ids += [i for run in self.slot_groups.values() for i in run.members]
        ids += [self.inline.trial_id] if self.inline is not None else []
        return list(dict.fromkeys(ids))

    def mine(self) -> set[int]:
        """The trials this process claimed and has not stored yet."""
        return set(self.ids())

    def groups_running(self) -> int:
        return len({job.group for job in self.running.values()}) + len(self.slot_groups)


@dataclass
class SweepContext:
    """What this process opened to run the sweep, and what its stages learnt so far."""

    settings: ProcessSettings
    storage: Storage
    trials: InFlight
    pool: WorkerPool
    data: DataShare
    heart: Heartbeat
    live: Channel
    ostorage: optuna.storages.BaseStorage
    sweep: SweepRecord
    reused: dict[str, list[TrialRecord]] = field(default_factory=dict)  # stage -> trials
    spaces: dict[str, dict[str, ParamSpace]] = field(default_factory=dict)  # stage -> space
    study_objectives: dict[str, tuple[Objective, ...]] = field(default_factory=dict)

    @property
    def spec(self) -> SweepSpec:
        return self.settings.spec

    def stage(self, name: str) -> StageSpec:
        return next(st for st in self.spec.stages if st.name == name)
