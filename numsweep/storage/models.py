"""SQLAlchemy models. Table names carry an ``ns_`` prefix so that an Optuna study can live in
the same database (Optuna owns ``studies``, ``trials``, ``trial_params``, ...).

These are the tables of the newest schema revision (:data:`numsweep.storage.schema.HEAD`):
a change here needs a migration in ``migrations/versions`` (docs/development.md)."""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import (
    BigInteger,
    DateTime,
    Enum,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


class TrialState(enum.Enum):
    """RUNNING from the moment a trial starts; COMPLETE, PRUNED and FAILED are final;
    INTERRUPTED when Ctrl-C stopped it or its process died (its heartbeat stopped): the
    planned trial then runs again as a new attempt, and the interrupted row stays."""

    WAITING = "WAITING"
    RUNNING = "RUNNING"
    COMPLETE = "COMPLETE"
    PRUNED = "PRUNED"
    FAILED = "FAILED"
    INTERRUPTED = "INTERRUPTED"

    def is_finished(self) -> bool:
        return self in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAILED)


class FloatKind(enum.Enum):
    """Why a float column holds what it holds: SQL has no portable inf or NaN."""

    FINITE = 1
    INF_POS = 2
    INF_NEG = 3
    NAN = 4


class Base(DeclarativeBase):
    pass


class SweepModel(Base):
    __tablename__ = "ns_sweeps"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    spec_json: Mapped[str] = mapped_column(Text)
    seed: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(DateTime)
    # a content hash of the data the sweep was created with (None: made by an older numsweep)
    data_fingerprint: Mapped[str | None] = mapped_column(String(100), nullable=True)
    stages: Mapped[list[StageModel]] = relationship(back_populates="sweep",
                                                    order_by="StageModel.index")
    run: Mapped[SweepRunModel | None] = relationship(cascade="all, delete-orphan", lazy="joined")


class SweepRunModel(Base):
    """How a sweep's trials run (not what they train): its data, BLAS threads per trial,
    checkpoint folder and which networks it keeps, for its resume. No row: the sweep
    recorded none (the sweep of single trials, whose trials hold their own setup)."""

    __tablename__ = "ns_sweep_runs"
    sweep_id: Mapped[int] = mapped_column(ForeignKey("ns_sweeps.id"), primary_key=True)
    data_source: Mapped[str | None] = mapped_column(Text, nullable=True)  # None: CIFAR-10
    threads: Mapped[int | None] = mapped_column(Integer, nullable=True)
    checkpoint_dir: Mapped[str | None] = mapped_column(Text, nullable=True)
    keep_weights: Mapped[str | None] = mapped_column(String(20), nullable=True)


class StageModel(Base):
    __tablename__ = "ns_stages"
    __table_args__ = (UniqueConstraint("sweep_id", "index"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    sweep_id: Mapped[int] = mapped_column(ForeignKey("ns_sweeps.id"))
    index: Mapped[int] = mapped_column(Integer)
    name: Mapped[str] = mapped_column(String(200))
    sampler: Mapped[str] = mapped_column(String(50))
    plan_json: Mapped[str] = mapped_column(Text)  # StagePlan.to_dict()
    note: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(DateTime)
    sweep: Mapped[SweepModel] = relationship(back_populates="stages")


class TrialModel(Base):
    __tablename__ = "ns_trials"
    __table_args__ = (UniqueConstraint("sweep_id", "number"),
                      Index("ix_ns_trials_state", "sweep_id", "state"),
                      # the atomic claim of a planned trial: one row per (stage, slot, attempt)
                      Index("uq_ns_trials_slot_attempt", "stage_id", "slot", "attempt",
                            unique=True))
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    sweep_id: Mapped[int] = mapped_column(ForeignKey("ns_sweeps.id"))
    stage_id: Mapped[int | None] = mapped_column(ForeignKey("ns_stages.id"), nullable=True)
    number: Mapped[int] = mapped_column(Integer)
    state: Mapped[TrialState] = mapped_column(Enum(TrialState, native_enum=False, length=12))
    seed: Mapped[int] = mapped_column(BigInteger)  # 32-bit unsigned: above PostgreSQL's int
    worker: Mapped[str] = mapped_column(String(200), default="")
    started_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    heartbeat_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    message: Mapped[str] = mapped_column(Text, default="")
    traceback: Mapped[str] = mapped_column(Text, default="")
    # a sweep trial's planned place in its stage (replicates included) and its attempt
    # (0, then 1, 2, ... when an interrupted attempt runs again); None for single trials
    slot: Mapped[int | None] = mapped_column(Integer, nullable=True)
    attempt: Mapped[int] = mapped_column(Integer, default=0)
    # the number of the Optuna trial (in the stage's study) this trial reports to
    study_trial: Mapped[int | None] = mapped_column(Integer, nullable=True)
    # how a trial outside a sweep was run, for its rerun (JSON): the data source of `train`,
    # a range test's mode and stop factor; None for sweep trials (their sweep holds it)
    setup_json: Mapped[str | None] = mapped_column(Text, nullable=True)
    # the fused group the trial trained in (engine.train_group): the id of its first trial
    # and how many trials it started with; None in databases of an older numsweep
    group_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    group_size: Mapped[int | None] = mapped_column(Integer, nullable=True)
    params: Mapped[list[TrialParamModel]] = relationship(cascade="all, delete-orphan")
    metrics: Mapped[list[TrialMetricModel]] = relationship(cascade="all, delete-orphan")


class TrialParamModel(Base):
    """One parameter of a trial: its JSON value, and the number for range queries."""

    __tablename__ = "ns_trial_params"
    __table_args__ = (UniqueConstraint("trial_id", "name"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    trial_id: Mapped[int] = mapped_column(ForeignKey("ns_trials.id"), index=True)
    name: Mapped[str] = mapped_column(String(100))
    value_json: Mapped[str] = mapped_column(Text)
    value_num: Mapped[float | None] = mapped_column(Float, nullable=True)


class TrialMetricModel(Base):
    __tablename__ = "ns_trial_metrics"
    __table_args__ = (UniqueConstraint("trial_id", "name"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    trial_id: Mapped[int] = mapped_column(ForeignKey("ns_trials.id"), index=True)
    name: Mapped[str] = mapped_column(String(100))
    value: Mapped[float | None] = mapped_column(Float, nullable=True)
    kind: Mapped[FloatKind] = mapped_column(Enum(FloatKind, native_enum=False, length=8))


class CurvePointModel(Base):
    """Loss, cost and accuracy of one split at one update step; NULL stands for NaN."""

    __tablename__ = "ns_curve_points"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    trial_id: Mapped[int] = mapped_column(ForeignKey("ns_trials.id"), index=True)
    step: Mapped[int] = mapped_column(Integer)
    split: Mapped[str] = mapped_column(String(20))
    loss: Mapped[float | None] = mapped_column(Float, nullable=True)
    cost: Mapped[float | None] = mapped_column(Float, nullable=True)
    acc: Mapped[float | None] = mapped_column(Float, nullable=True)
    lr: Mapped[float | None] = mapped_column(Float, nullable=True)


class SlotGroupModel(Base):
    """A slot group that ended (engine ``train_slots``): K slots refilled from the stage's
    trials as each ended, and how full they were. One row per (stage, group): a resumed group
    that ends again replaces its row."""

    __tablename__ = "ns_slot_groups"
    __table_args__ = (UniqueConstraint("stage_id", "group_id"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    stage_id: Mapped[int] = mapped_column(ForeignKey("ns_stages.id"))
    group_id: Mapped[int] = mapped_column(Integer)  # the id of its first trial
    worker: Mapped[str] = mapped_column(String(200), default="")  # host:pid that trained it
    size: Mapped[int] = mapped_column(Integer)  # K, its slots
    steps: Mapped[int] = mapped_column(BigInteger)  # group updates made
    slot_updates: Mapped[int] = mapped_column(BigInteger)  # trial-updates trained
    trials: Mapped[int] = mapped_column(Integer)  # trials that joined it
    # the group updates made before the stage first had no trial for a free slot, and the
    # trial-updates trained in them
    full_steps: Mapped[int] = mapped_column(BigInteger)
    full_slot_updates: Mapped[int] = mapped_column(BigInteger)
    started_at: Mapped[datetime] = mapped_column(DateTime)
    finished_at: Mapped[datetime] = mapped_column(DateTime)


class LineageModel(Base):
    """A pbt stage's exploit step for one member: at group update ``update`` the member
    ``trial_id`` took the weights of ``source_trial_id`` and its explored values, perturbed
    (``before_json`` -> ``after_json``); both metrics at that step (NULL stands for NaN)."""

    __tablename__ = "ns_lineage"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    stage_id: Mapped[int] = mapped_column(ForeignKey("ns_stages.id"), index=True)
    trial_id: Mapped[int] = mapped_column(ForeignKey("ns_trials.id"))
    update: Mapped[int] = mapped_column(BigInteger)
    source_trial_id: Mapped[int] = mapped_column(ForeignKey("ns_trials.id"))
    metric_member: Mapped[float | None] = mapped_column(Float, nullable=True)
    metric_source: Mapped[float | None] = mapped_column(Float, nullable=True)
    before_json: Mapped[str] = mapped_column(Text)
    after_json: Mapped[str] = mapped_column(Text)


class LeaseModel(Base):
    """A short exclusive turn (such as proposing a stage's next configuration) held by one
    process until it gives it back or ``expires_at`` passes (its process died)."""

    __tablename__ = "ns_leases"
    name: Mapped[str] = mapped_column(String(200), primary_key=True)
    holder: Mapped[str] = mapped_column(String(200))
    expires_at: Mapped[datetime] = mapped_column(DateTime)
