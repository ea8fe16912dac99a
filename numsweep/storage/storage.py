"""The result database: sweeps, stages, trials, their parameters, metrics and curves."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, event, func, select
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError
from sqlalchemy.orm import Session, selectinload, sessionmaker

from numsweep.storage.models import (
    Base,
    CurvePointModel,
    FloatKind,
    StageModel,
    SweepModel,
    TrialMetricModel,
    TrialModel,
    TrialParamModel,
    TrialState,
)
from numsweep.storage.records import CurveRecord, StageRecord, SweepRecord, TrialRecord

DEFAULT_URL = "sqlite:///numsweep.db"
SQLITE_BUSY_TIMEOUT_MS = 60_000


class StorageError(Exception):
    """The database could not be opened, read or written; the message says which and why."""


def now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def encode_float(value: float) -> tuple[float | None, FloatKind]:
    if math.isnan(value):
        return None, FloatKind.NAN
    if math.isinf(value):
        return None, FloatKind.INF_POS if value > 0 else FloatKind.INF_NEG
    return float(value), FloatKind.FINITE


def decode_float(value: float | None, kind: FloatKind) -> float:
    if kind is FloatKind.FINITE and value is not None:
        return value
    return {FloatKind.INF_POS: math.inf, FloatKind.INF_NEG: -math.inf}.get(kind, math.nan)


def _nan_if_none(value: float | None) -> float:
    return math.nan if value is None else value


def _check_sqlite_location(url: str) -> None:
    parsed = make_url(url)
    database = parsed.database
    if not database or database == ":memory:" or database.startswith("file:"):
        return
    folder = Path(database).resolve().parent
    if not folder.is_dir():
        raise StorageError(f"cannot open {url}: folder {folder} does not exist")
    path = Path(database)
    if (path.exists() and not os.access(path, os.W_OK)) or not os.access(folder, os.W_OK):
        raise StorageError(f"cannot open {url}: {path if path.exists() else folder} is read-only")


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


class Storage:
    """One database, opened from any SQLAlchemy URL (SQLite files get WAL and a busy timeout).

    Every method runs in its own transaction through :meth:`session`, and returns plain
    records.
    """

    def __init__(self, url: str = DEFAULT_URL) -> None:
        self.url = url
        try:
            is_sqlite = make_url(url).get_backend_name() == "sqlite"
            if is_sqlite:
                _check_sqlite_location(url)
                self.engine: Engine = create_engine(
                    url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000})
                event.listen(self.engine, "connect", _sqlite_pragmas)
            else:
                self.engine = create_engine(url, pool_pre_ping=True)
            Base.metadata.create_all(self.engine)
        except StorageError:
            raise
        except (ArgumentError, SQLAlchemyError, ImportError) as exc:
            raise StorageError(f"cannot open {url}: {_first_line(exc)}") from None
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)

    def dispose(self) -> None:
        self.engine.dispose()

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A transaction: committed on success, rolled back on error, always closed."""
        session = self._sessions()
        try:
            yield session
            session.commit()
        except SQLAlchemyError as exc:
            session.rollback()
            raise StorageError(f"database error on {self.url}: {_first_line(exc)}") from None
        except BaseException:
            session.rollback()
            raise
        finally:
            session.close()

    # Sweeps and stages

    def get_or_create_sweep(self, name: str, spec: Mapping[str, Any], seed: int) -> SweepRecord:
        with self.session() as s:
            row = s.scalar(select(SweepModel).where(SweepModel.name == name))
            if row is None:
                row = SweepModel(name=name, spec_json=json.dumps(spec), seed=seed,
                                 created_at=now())
                s.add(row)
                s.flush()
            return _sweep_record(row)

    def get_sweep(self, name: str) -> SweepRecord:
        with self.session() as s:
            row = s.scalar(select(SweepModel).where(SweepModel.name == name))
            if row is None:
                known = ", ".join(s.scalars(select(SweepModel.name).order_by(SweepModel.name)))
                raise StorageError(f"no sweep named {name!r} in {self.url}"
                                   + (f" (sweeps: {known})" if known else " (it has no sweeps)"))
            return _sweep_record(row)

    def list_sweeps(self) -> list[SweepRecord]:
        with self.session() as s:
            return [_sweep_record(r) for r in s.scalars(select(SweepModel).order_by(SweepModel.id))]

    def get_or_create_stage(self, sweep_id: int, index: int, name: str, sampler: str,
                            space: Mapping[str, Any], note: str = "") -> StageRecord:
        with self.session() as s:
            row = s.scalar(select(StageModel).where(StageModel.sweep_id == sweep_id,
                                                    StageModel.index == index))
            if row is None:
                row = StageModel(sweep_id=sweep_id, index=index, name=name, sampler=sampler,
                                 space_json=json.dumps(space), note=note, created_at=now())
                s.add(row)
                s.flush()
            return _stage_record(row)

    def list_stages(self, sweep_id: int) -> list[StageRecord]:
        with self.session() as s:
            rows = s.scalars(select(StageModel).where(StageModel.sweep_id == sweep_id)
                             .order_by(StageModel.index))
            return [_stage_record(r) for r in rows]

    def set_stage_note(self, stage_id: int, note: str) -> None:
        """Replace a stage's note (what it chose and why, what it left out)."""
        with self.session() as s:
            row = s.get(StageModel, stage_id)
            if row is None:
                raise StorageError(f"no stage with id {stage_id}")
            row.note = note

    # Trials

    def count_trials(self, sweep_id: int) -> int:
        with self.session() as s:
            return int(s.scalar(select(func.count()).select_from(TrialModel)
                                .where(TrialModel.sweep_id == sweep_id)) or 0)

    def trial_ids_where(self, conditions: Sequence[tuple[str, str, Any]],
                        sweep: str | None = None) -> list[int]:
        """Ids of the trials whose parameter or metric ``name`` satisfies each ``(name, op,
        value)`` condition; ``op`` is one of ``<``, ``<=``, ``>``, ``>=``, ``=``, ``!=``.

        Numbers compare numerically (parameters through their stored number, metrics by value);
        other values compare as their JSON text, so ``optimizer=adam`` works with ``=``/``!=``.
        """
        ops = {"<": "__lt__", "<=": "__le__", ">": "__gt__", ">=": "__ge__", "=": "__eq__",
               "!=": "__ne__"}
        query = select(TrialModel.id).join(SweepModel, TrialModel.sweep_id == SweepModel.id)
        if sweep is not None:
            query = query.where(SweepModel.name == sweep)
        for name, op, value in conditions:
            if op not in ops:
                raise StorageError(f"unknown comparison {op!r} (use {', '.join(ops)})")
            numeric = isinstance(value, (int, float)) and not isinstance(value, bool)
            if numeric:
                param = getattr(TrialParamModel.value_num, ops[op])(float(value))
                metric = getattr(TrialMetricModel.value, ops[op])(float(value))
            else:
                if op not in ("=", "!="):
                    raise StorageError(f"{name}{op}{value}: only = and != compare text")
                param = getattr(TrialParamModel.value_json, ops[op])(json.dumps(value))
                metric = TrialMetricModel.id.is_(None) & TrialMetricModel.id.is_not(None)
            in_params = (select(TrialParamModel.trial_id)
                         .where(TrialParamModel.name == name, param))
            in_metrics = (select(TrialMetricModel.trial_id)
                          .where(TrialMetricModel.name == name, metric,
                                 TrialMetricModel.kind == FloatKind.FINITE))
            query = query.where(TrialModel.id.in_(in_params) | TrialModel.id.in_(in_metrics))
        with self.session() as s:
            return list(s.scalars(query.order_by(TrialModel.id)))

    def next_trial_number(self, sweep_id: int) -> int:
        with self.session() as s:
            numbers = s.scalars(select(TrialModel.number).where(TrialModel.sweep_id == sweep_id)
                                .order_by(TrialModel.number.desc()).limit(1)).all()
            return numbers[0] + 1 if numbers else 0

    def start_trial(self, sweep_id: int, stage_id: int | None, number: int,
                    params: Mapping[str, Any], seed: int, worker: str = "") -> int:
        """Insert a RUNNING trial with its parameters; returns its id."""
        with self.session() as s:
            started = now()
            row = TrialModel(sweep_id=sweep_id, stage_id=stage_id, number=number,
                             state=TrialState.RUNNING, seed=seed, worker=worker,
                             started_at=started, heartbeat_at=started, message="", traceback="")
            row.params = [_param_row(k, v) for k, v in params.items()]
            s.add(row)
            s.flush()
            return row.id

    def finish_trial(self, trial_id: int, state: TrialState, *,
                     metrics: Mapping[str, float] | None = None,
                     curves: Iterable[CurveRecord] = (), message: str = "",
                     traceback: str = "", worker: str | None = None,
                     params: Mapping[str, Any] | None = None) -> None:
        """Record how a trial ended, with whatever it measured (also when it failed).

        ``params`` updates parameter values the run resolved (such as an automatic ``n_s``).
        """
        with self.session() as s:
            row = s.get(TrialModel, trial_id)
            if row is None:
                raise StorageError(f"no trial with id {trial_id}")
            row.state = state
            row.finished_at = now()
            row.message = message
            row.traceback = traceback
            if worker is not None:
                row.worker = worker
            if params:
                existing = {p.name: p for p in row.params}
                for name, value in params.items():
                    fresh = _param_row(name, value)
                    if name in existing:
                        existing[name].value_json = fresh.value_json
                        existing[name].value_num = fresh.value_num
                    else:
                        row.params.append(fresh)
            for name, value in (metrics or {}).items():
                number, kind = encode_float(value)
                row.metrics.append(TrialMetricModel(name=name, value=number, kind=kind))
            s.add_all(CurvePointModel(trial_id=trial_id, step=c.step, split=c.split,
                                      loss=_finite_or_none(c.loss), cost=_finite_or_none(c.cost),
                                      acc=_finite_or_none(c.acc), lr=_finite_or_none(c.lr))
                      for c in curves)

    def get_trials(self, sweep: str | None = None, *, stage: str | None = None,
                   states: Sequence[TrialState] | None = None,
                   trial_ids: Sequence[int] | None = None) -> list[TrialRecord]:
        with self.session() as s:
            query = (select(TrialModel, SweepModel.name, StageModel.name)
                     .join(SweepModel, TrialModel.sweep_id == SweepModel.id)
                     .outerjoin(StageModel, TrialModel.stage_id == StageModel.id)
                     .options(selectinload(TrialModel.params), selectinload(TrialModel.metrics))
                     .order_by(TrialModel.id))
            if sweep is not None:
                query = query.where(SweepModel.name == sweep)
            if stage is not None:
                query = query.where(StageModel.name == stage)
            if states:
                query = query.where(TrialModel.state.in_(list(states)))
            if trial_ids is not None:
                query = query.where(TrialModel.id.in_(list(trial_ids)))
            return [_trial_record(t, sweep_name, stage_name)
                    for t, sweep_name, stage_name in s.execute(query)]

    def get_curves(self, trial_ids: Sequence[int]) -> list[CurveRecord]:
        with self.session() as s:
            rows = s.scalars(select(CurvePointModel)
                             .where(CurvePointModel.trial_id.in_(list(trial_ids)))
                             .order_by(CurvePointModel.trial_id, CurvePointModel.id))
            return [CurveRecord(r.trial_id, r.step, r.split, _nan_if_none(r.loss),
                                _nan_if_none(r.cost), _nan_if_none(r.acc), _nan_if_none(r.lr))
                    for r in rows]

    # Bulk reads for analysis: plain tuples from a few queries, no ORM objects per row.

    def get_trial_rows(self, sweep: str | None = None, *, stage: str | None = None,
                       states: Sequence[TrialState] | None = None) -> TrialRows:
        """The trials :meth:`get_trials` would return, as three lists of plain tuples.

        ``trials``: (id, sweep, stage, number, state, seed, worker, started_at, finished_at,
        message) ordered by id; ``params``: (trial_id, name, value); ``metrics``: (trial_id,
        name, value) with inf/NaN restored. Three queries however many trials there are.
        """
        ids = (select(TrialModel.id)
               .join(SweepModel, TrialModel.sweep_id == SweepModel.id)
               .outerjoin(StageModel, TrialModel.stage_id == StageModel.id))
        if sweep is not None:
            ids = ids.where(SweepModel.name == sweep)
        if stage is not None:
            ids = ids.where(StageModel.name == stage)
        if states:
            ids = ids.where(TrialModel.state.in_(list(states)))
        with self.session() as s:
            trials = s.execute(
                select(TrialModel.id, SweepModel.name, StageModel.name, TrialModel.number,
                       TrialModel.state, TrialModel.seed, TrialModel.worker,
                       TrialModel.started_at, TrialModel.finished_at, TrialModel.message)
                .join(SweepModel, TrialModel.sweep_id == SweepModel.id)
                .outerjoin(StageModel, TrialModel.stage_id == StageModel.id)
                .where(TrialModel.id.in_(ids)).order_by(TrialModel.id)).all()
            params = s.execute(select(TrialParamModel.trial_id, TrialParamModel.name,
                                      TrialParamModel.value_json)
                               .where(TrialParamModel.trial_id.in_(ids))).all()
            metrics = s.execute(select(TrialMetricModel.trial_id, TrialMetricModel.name,
                                       TrialMetricModel.value, TrialMetricModel.kind)
                                .where(TrialMetricModel.trial_id.in_(ids))).all()
            return TrialRows(
                trials=[tuple(t) for t in trials],
                params=[(t, n, json.loads(v)) for t, n, v in params],
                metrics=[(t, n, decode_float(v, k)) for t, n, v, k in metrics])

    def get_curve_rows(self, trial_ids: Sequence[int]) -> list[tuple[Any, ...]]:
        """Curve points of these trials as (trial_id, step, split, loss, cost, acc, lr) tuples
        (NaN for missing values), ordered by trial and point; one query per 5,000 trials."""
        ids = sorted(set(trial_ids))
        out: list[tuple[Any, ...]] = []
        columns = (CurvePointModel.trial_id, CurvePointModel.step, CurvePointModel.split,
                   CurvePointModel.loss, CurvePointModel.cost, CurvePointModel.acc,
                   CurvePointModel.lr)
        with self.session() as s:
            for start in range(0, len(ids), 5000):
                rows = s.execute(select(*columns)
                                 .where(CurvePointModel.trial_id.in_(ids[start:start + 5000]))
                                 .order_by(CurvePointModel.trial_id, CurvePointModel.id))
                out.extend((t, st, sp, _nan_if_none(lo), _nan_if_none(co), _nan_if_none(ac),
                            _nan_if_none(lr)) for t, st, sp, lo, co, ac, lr in rows)
        return out


@dataclass(frozen=True)
class TrialRows:
    """Trials, parameters and metrics as plain tuples (see :meth:`Storage.get_trial_rows`)."""

    trials: list[tuple[Any, ...]]
    params: list[tuple[int, str, Any]]
    metrics: list[tuple[int, str, float]]


def _first_line(exc: BaseException) -> str:
    text = str(getattr(exc, "orig", None) or exc)
    return text.strip().splitlines()[0] if text.strip() else type(exc).__name__


def _finite_or_none(value: float) -> float | None:
    return None if math.isnan(value) else float(value)


def _param_row(name: str, value: Any) -> TrialParamModel:
    is_number = isinstance(value, (int, float)) and not isinstance(value, bool)
    number = float(value) if is_number and math.isfinite(value) else None
    return TrialParamModel(name=name, value_json=json.dumps(value), value_num=number)


def _sweep_record(row: SweepModel) -> SweepRecord:
    return SweepRecord(row.id, row.name, json.loads(row.spec_json), row.seed, row.created_at)


def _stage_record(row: StageModel) -> StageRecord:
    return StageRecord(row.id, row.sweep_id, row.index, row.name, row.sampler,
                       json.loads(row.space_json), row.note)


def _trial_record(row: TrialModel, sweep: str, stage: str | None) -> TrialRecord:
    return TrialRecord(
        id=row.id, sweep=sweep, stage=stage, number=row.number, state=row.state, seed=row.seed,
        worker=row.worker, started_at=row.started_at, finished_at=row.finished_at,
        message=row.message, traceback=row.traceback,
        params={p.name: json.loads(p.value_json) for p in row.params},
        metrics={m.name: decode_float(m.value, m.kind) for m in row.metrics},
    )
