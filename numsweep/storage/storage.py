"""The result database: sweeps, stages, trials, their parameters, metrics and curves."""

from __future__ import annotations

import functools
import importlib.util
import json
import math
import os
import random
import re
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

from sqlalchemy import (
    Select,
    and_,
    create_engine,
    delete,
    event,
    func,
    inspect,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.engine import URL, Engine, make_url
from sqlalchemy.exc import ArgumentError, IntegrityError, SQLAlchemyError
from sqlalchemy.orm import Session, selectinload, sessionmaker

from numsweep.defaults import DEFAULT_URL
from numsweep.shield import shielded
from numsweep.storage.errors import (
    StorageBusy,
    StorageConflict,
    StorageError,
    StorageFull,
    StorageGone,
    StorageUnavailable,
)
from numsweep.storage.models import (
    Base,
    CurvePointModel,
    FloatKind,
    LeaseModel,
    LineageModel,
    SlotGroupModel,
    StageModel,
    SweepModel,
    SweepRunModel,
    TrialMetricModel,
    TrialModel,
    TrialParamModel,
    TrialState,
)
from numsweep.storage.records import (
    CurveRecord,
    LineageRecord,
    RunSettings,
    SlotGroupRecord,
    SlotRecord,
    StageRecord,
    SweepRecord,
    TrialRecord,
)
from numsweep.storage.retry import (
    DEFAULT_DB_WAIT,
    driver_line,
    is_connection_error,
    is_full_error,
    is_lock_error,
    retry_call,
)
from numsweep.storage.schema import (
    HEAD,
    check_not_newer,
    needs_upgrade_message,
    revision_of,
    upgrade,
    upgraded_copy,
)

SQLITE_BUSY_TIMEOUT_MS = 60_000
_JITTER = random.Random()  # pauses between claim attempts only; never results


NUMBERING_TRIES = 50
"""How often a new trial is numbered again when another writer took its number meanwhile."""

M = TypeVar("M", bound=Callable[..., Any])
R = TypeVar("R")  # an ORM row
Row = TypeVar("Row", bound=Base)
T = TypeVar("T")  # the frozen record made from it


def _retrying(method: M) -> M:
    """Run a one-transaction method again (:func:`retry_call`) while the database is locked
    or unreachable; the failed transaction was rolled back, so repeating it is safe."""

    @functools.wraps(method)
    def wrapper(self: Storage, *args: Any, **kwargs: Any) -> Any:
        return retry_call(lambda: method(self, *args, **kwargs),
                          seconds=getattr(self, "db_wait", DEFAULT_DB_WAIT),
                          what=getattr(self, "shown_url", "the database"),
                          on_reconnect=getattr(self, "reconnected", None))

    return wrapper  # type: ignore[return-value]


def shown_url(url: str) -> str:
    """The URL with its password masked, for messages (also in one that does not parse)."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except (ArgumentError, ValueError):
        return re.sub(r"(://[^/:@]*:)[^/@]*@", r"\1***@", url)


def full_message(shown: str, exc: BaseException) -> str:
    return f"cannot write to {shown}: its disk is full ({driver_line(exc)})"


def check_url(url: str) -> None:
    """A :class:`StorageError` naming what is wrong when ``url`` is no database URL (such as
    a port that is not a number: SQLAlchemy raises a bare ValueError)."""
    try:
        make_url(url)
    except (ArgumentError, ValueError) as exc:
        why = ("its port is not a number" if "invalid literal for int()" in str(exc)
               else _first_line(exc))
        raise StorageError(f"not a database URL: {shown_url(url)} ({why})") from None


def database_identity(url: str) -> str:
    """What names the database itself, whatever the URL's spelling: a SQLite file's
    resolved path (``runs.db`` run from two folders is two databases), or a server URL
    without its password."""
    try:
        parsed = make_url(normalize_url(url))
    except ArgumentError:
        return url
    database = parsed.database
    if parsed.get_backend_name() == "sqlite":
        if not database or database == ":memory:" or database.startswith("file:"):
            return parsed.render_as_string(hide_password=True)
        return "sqlite:///" + str(Path(database).expanduser().resolve())
    return parsed.set(password=None).render_as_string(hide_password=True)


def normalize_url(url: str) -> str:
    """A database URL from what a user may give: a plain file path (``runs.db``,
    ``~/sweeps/runs.db``) means that SQLite file (``sqlite:///runs.db``); a URL is kept."""
    if "://" in url or url.startswith("sqlite:"):
        return url
    return "sqlite:///" + os.path.expanduser(url)


def engine_url(url: str) -> str:
    """The URL SQLAlchemy opens: ``postgresql://`` uses psycopg (version 3), the driver of
    numsweep's ``postgres`` extra, unless psycopg2 is the one installed."""
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):
        return url
    if parsed.drivername == "postgresql" and importlib.util.find_spec("psycopg2") is None:
        return parsed.set(drivername="postgresql+psycopg").render_as_string(
            hide_password=False)
    return url


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


def sqlite_file(url: str) -> Path | None:
    """The file of a SQLite URL (``sqlite:///runs.db`` -> ``runs.db``); None for any other
    database, an in-memory one, or a ``file:`` URI."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        return None
    database = parsed.database
    if parsed.get_backend_name() != "sqlite" or not database or database == ":memory:" \
            or database.startswith("file:"):
        return None
    return Path(database)


def is_in_memory(url: str) -> bool:
    """Whether ``url`` is a SQLite database that lives only in this process's memory
    (``sqlite://``, ``sqlite:///``, ``sqlite:///:memory:``, a ``file:`` URI with
    ``mode=memory`` or ``:memory:``), whose contents are gone when it is closed."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        return False
    if parsed.get_backend_name() != "sqlite":
        return False
    database = parsed.database or ""
    return database in ("", ":memory:") or (
        database.startswith("file:") and (":memory:" in database or "mode=memory" in database
                                          or parsed.query.get("mode") == "memory"))


def _check_sqlite_location(url: str, *, create: bool) -> None:
    path = sqlite_file(url)
    if path is None:
        return
    folder = path.resolve().parent
    if not folder.is_dir():
        raise StorageError(f"cannot open {shown_url(url)}: folder {folder} does not exist")
    if (path.exists() and not os.access(path, os.W_OK)) or not os.access(folder, os.W_OK):
        raise StorageError(f"cannot open {shown_url(url)}: "
                           f"{path if path.exists() else folder} is read-only")
    if not create and not path.is_file():
        raise StorageError(f"cannot open {shown_url(url)}: {path} does not exist")


def _read_only_url(url: str) -> str:
    """The URL that opens the SQLite file of ``url`` in SQLite's read-only mode: nothing is
    created or written (a read-only file or folder reads too); a one-line error when there
    is no such file."""
    path = sqlite_file(url)
    if path is None:
        return url
    if not path.is_file():
        raise StorageError(f"cannot read {shown_url(url)}: {path} does not exist"
                           + ("" if path.parent.resolve().is_dir() else
                              f" (nor does its folder {path.parent.resolve()})"))
    return URL.create("sqlite", database="file:" + quote(str(path.resolve())),
                      query={"mode": "ro", "uri": "true"}).render_as_string()


def _file_identity(path: Path | None) -> tuple[int, int] | None:
    """(device, inode) of the file at ``path``; None when there is none."""
    if path is None:
        return None
    try:
        info = path.stat()
    except OSError:
        return None
    return info.st_dev, info.st_ino


INTERRUPT_WAIT_SECONDS = 3.0
"""How long marking trials interrupted on Ctrl-C waits for another process's write lock
before giving up (the trials are then taken for lost by the next resume)."""


def _bring_up_to_date(engine: Engine, shown: str, *, existing: bool = False) -> None:
    """Create the database or upgrade its schema to this numsweep's (see :mod:`.schema`).
    Processes that start at once on a new database may race here (retried by the caller).
    ``existing``: only in a numsweep database (a one-line error, nothing added, for any
    other)."""
    if existing:
        _check_numsweep(set(inspect(engine).get_table_names()), shown)
    upgrade(engine, shown)


def _check_numsweep(tables: set[str], shown: str) -> None:
    """A one-line error saying what the database holds unless it is a numsweep one."""
    if "ns_sweeps" not in tables:
        others = ", ".join(sorted(tables)[:5]) + (", ..." if len(tables) > 5 else "")
        raise StorageError(f"{shown} is not a numsweep database (no ns_sweeps table; "
                           + (f"its tables: {others})" if tables else "it is empty)"))


def _readable_revision(engine: Engine, shown: str) -> str:
    """The schema revision of a numsweep database (for a reader, which cannot upgrade it); a
    one-line error for any other database, or one of a newer numsweep."""
    with engine.connect() as conn:
        _check_numsweep(set(inspect(conn).get_table_names()), shown)
        revision = revision_of(conn)
    assert revision is not None
    check_not_newer(revision, shown)
    return revision


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

    ``read_only``: open to read only: nothing is created or changed (a SQLite file opens in
    SQLite's read-only mode, so a read-only file or folder reads), and a missing file or a
    database without numsweep's tables is a one-line :class:`StorageError`.
    ``create=False``: the database must be a numsweep database already, and a SQLite file
    must exist (commands that continue a stored sweep: nothing is added to another file).
    ``in_memory``: allow an in-memory SQLite database (``sqlite://``), whose contents end
    with this object, for a caller that reads its results from this same
    Storage; refused otherwise (commands never allow it: they would store into nothing).

    A SQLite file deleted or replaced by another file while it is open makes every later
    call raise :class:`StorageGone` (SQLite would go on writing into the deleted file).
    """

    def __init__(self, url: str = DEFAULT_URL, *, db_wait: float = DEFAULT_DB_WAIT,
                 read_only: bool = False, create: bool = True,
                 in_memory: bool = False) -> None:
        given, url = url, normalize_url(url)
        check_url(url)
        self.url = url
        self.read_only = read_only
        self.db_wait = db_wait  # seconds to wait for a database that went away
        self.reconnected_at: float | None = None  # time.monotonic() after the last outage
        self.engine_url = engine_url(url)
        self.shown_url = shown_url(url)  # for messages: no password
        self.identity = database_identity(url)  # the same database under any spelling
        if is_in_memory(url) and not in_memory:
            raise StorageError(
                f"{url if given.strip() else repr(given)} is an in-memory database: what "
                f"is stored there is gone when the command ends; give a file (--db runs.db) "
                f"or a server URL")
        file = sqlite_file(url)
        self.file = None if file is None else file.absolute()  # as opened, whatever cwd becomes
        with shielded():  # a Ctrl-C here would leave a half-made connection
            try:
                is_sqlite = make_url(url).get_backend_name() == "sqlite"
                if is_sqlite and read_only:
                    self.engine: Engine = create_engine(
                        _read_only_url(url),
                        connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000})
                elif is_sqlite:
                    _check_sqlite_location(url, create=create)
                    if not create and sqlite_file(url) is not None:  # before WAL is switched on
                        peek = create_engine(_read_only_url(url))
                        try:
                            _check_numsweep(set(inspect(peek).get_table_names()),
                                            self.shown_url)
                        finally:
                            peek.dispose()
                    self.engine = create_engine(
                        url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000})
                    event.listen(self.engine, "connect", _sqlite_pragmas)
                else:
                    self.engine = create_engine(self.engine_url, pool_pre_ping=True)
                # a server that cannot be reached at all is a wrong URL more often than an outage
                if read_only:
                    revision = retry_call(
                        lambda: _readable_revision(self.engine, self.shown_url),
                        seconds=0, what=self.shown_url)
                    if revision != HEAD:
                        self.engine = self._older_for_reading(revision)
                else:
                    retry_call(lambda: _bring_up_to_date(self.engine, self.shown_url,
                                                         existing=not create),
                               seconds=0, what=self.shown_url, table_race=True)
            except StorageError:
                raise
            except ImportError as exc:
                extra = " (pip install 'numsweep[postgres]')" if "psycopg" in str(exc) else ""
                raise StorageError(f"cannot open {self.shown_url}: {_first_line(exc)}{extra}"
                                   ) from None
            except (ArgumentError, SQLAlchemyError) as exc:
                raise StorageError(f"cannot open {self.shown_url}: {_first_line(exc)}") from None
        self.file_identity = _file_identity(self.file)  # the file opened, to notice its loss
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)

    def _older_for_reading(self, revision: str) -> Engine:
        """What a reader reads of a database of an older schema: an upgraded copy in memory
        of a SQLite file (the file is not written); a server database is refused."""
        if self.file is None:
            raise StorageError(needs_upgrade_message(self.shown_url, revision))
        self.engine.dispose()
        return upgraded_copy(self.file, self.shown_url)

    def check_file(self) -> None:
        """Raise :class:`StorageGone` when the SQLite file this Storage opened was deleted or
        replaced by another file since."""
        if self.file_identity is not None and _file_identity(self.file) != self.file_identity:
            gone = not self.file.exists() if self.file is not None else True
            raise StorageGone(f"database {self.shown_url} was "
                              f"{'deleted' if gone else 'replaced by another file'} while "
                              f"numsweep had it open: nothing more is written to it")

    def reconnected(self) -> None:
        """A call went through after the database could not be reached."""
        self.reconnected_at = time.monotonic()

    def dispose(self) -> None:
        with shielded():
            self.engine.dispose()

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A transaction: committed on success, rolled back on error, always closed; a
        Ctrl-C waits for it to end (see :mod:`numsweep.shield`)."""
        self.check_file()
        with shielded():
            session = self._sessions()
            try:
                yield session
                session.commit()
            except IntegrityError as exc:
                session.rollback()
                raise StorageConflict(f"database conflict on {self.shown_url}: "
                                      f"{_first_line(exc)}") from None
            except SQLAlchemyError as exc:
                with suppress(SQLAlchemyError):
                    session.rollback()
                if is_full_error(exc):
                    raise StorageFull(full_message(self.shown_url, exc)) from None
                kind = StorageBusy if is_lock_error(exc) else \
                    StorageUnavailable if is_connection_error(exc) else StorageError
                raise kind(f"database error on {self.shown_url}: {_first_line(exc)}") from None
            except BaseException:
                session.rollback()
                raise
            finally:
                session.close()

    # Sweeps and stages

    @_retrying
    def get_or_create_sweep(self, name: str, spec: Mapping[str, Any], seed: int, *,
                            data_fingerprint: str | None = None,
                            run: RunSettings | None = None) -> SweepRecord:
        """The sweep named ``name``; created with this spec, seed, data fingerprint and run
        settings if there is none (when several processes create it at once, all get the
        one that was stored first)."""
        return self._get_or_create(
            select(SweepModel).where(SweepModel.name == name),
            lambda: SweepModel(name=name, spec_json=json.dumps(spec), seed=seed,
                               created_at=now(), data_fingerprint=data_fingerprint,
                               run=None if run is None else _run_row(run)),
            _sweep_record, f"sweep {name!r}")

    @_retrying
    def claim_data_fingerprint(self, sweep_id: int, fingerprint: str) -> str:
        """The sweep's data fingerprint: ``fingerprint`` is stored when it has none yet (a
        sweep made by an older numsweep, or created without one); returns what is stored,
        in one conditional write so that two processes cannot both set it."""
        with self.session() as s:
            s.execute(update(SweepModel)
                      .where(SweepModel.id == sweep_id, SweepModel.data_fingerprint.is_(None))
                      .values(data_fingerprint=fingerprint)
                      .execution_options(synchronize_session=False))
            return str(_get(s, SweepModel, sweep_id, "sweep").data_fingerprint)

    @_retrying
    def set_sweep_spec(self, sweep_id: int, spec: Mapping[str, Any], *,
                       run: RunSettings | None = None) -> None:
        """Replace a sweep's stored spec, and with ``run`` its run settings."""
        with self.session() as s:
            row = _get(s, SweepModel, sweep_id, "sweep")
            row.spec_json = json.dumps(spec)
            if run is not None:
                row.run = _run_row(run)

    @_retrying
    def delete_sweep(self, sweep_id: int) -> int:
        """Remove a sweep and everything numsweep stored of it (stages, trials with their
        parameters, metrics and curves, its stages' slot groups, lineage and leases) in one
        transaction; the number of trials removed."""
        with self.session() as s:
            trial_ids = select(TrialModel.id).where(TrialModel.sweep_id == sweep_id)
            count = int(s.scalar(select(func.count()).select_from(trial_ids.subquery())) or 0)
            stage_ids = list(s.scalars(select(StageModel.id)
                                       .where(StageModel.sweep_id == sweep_id)))
            for model in (CurvePointModel, TrialParamModel, TrialMetricModel):
                s.execute(delete(model).where(model.trial_id.in_(trial_ids))
                          .execution_options(synchronize_session=False))
            s.execute(delete(SweepRunModel).where(SweepRunModel.sweep_id == sweep_id)
                      .execution_options(synchronize_session=False))
            if stage_ids:
                for staged in (SlotGroupModel, LineageModel):
                    s.execute(delete(staged).where(staged.stage_id.in_(stage_ids))
                              .execution_options(synchronize_session=False))
            s.execute(delete(TrialModel).where(TrialModel.sweep_id == sweep_id)
                      .execution_options(synchronize_session=False))
            if stage_ids:
                s.execute(delete(LeaseModel).where(LeaseModel.name.in_(
                    [f"propose:{i}" for i in stage_ids]))
                    .execution_options(synchronize_session=False))
            s.execute(delete(StageModel).where(StageModel.sweep_id == sweep_id)
                      .execution_options(synchronize_session=False))
            s.execute(delete(SweepModel).where(SweepModel.id == sweep_id)
                      .execution_options(synchronize_session=False))
            return count

    @_retrying
    def get_sweep(self, name: str) -> SweepRecord:
        with self.session() as s:
            row = s.scalar(select(SweepModel).where(SweepModel.name == name))
            if row is None:
                known = ", ".join(s.scalars(select(SweepModel.name).order_by(SweepModel.name)))
                raise StorageError(f"no sweep named {name!r} in {self.shown_url}"
                                   + (f" (sweeps: {known})" if known else " (it has no sweeps)"))
            return _sweep_record(row)

    @_retrying
    def list_sweeps(self) -> list[SweepRecord]:
        with self.session() as s:
            return [_sweep_record(r) for r in s.scalars(select(SweepModel).order_by(SweepModel.id))]

    @_retrying
    def get_or_create_stage(self, sweep_id: int, index: int, name: str, sampler: str,
                            space: Mapping[str, Any], note: str = "") -> StageRecord:
        """Stage ``index`` of the sweep; created with this plan if there is none (when several
        processes create it at once, all get the one that was stored first)."""
        return self._get_or_create(
            select(StageModel).where(StageModel.sweep_id == sweep_id, StageModel.index == index),
            lambda: StageModel(sweep_id=sweep_id, index=index, name=name, sampler=sampler,
                               plan_json=json.dumps(space), note=note, created_at=now()),
            _stage_record, f"stage {name!r}")

    def _get_or_create(self, query: Select[tuple[R]], make: Callable[[], R],
                       record: Callable[[R], T], what: str) -> T:
        """The row ``query`` finds, else the one ``make`` builds; when several processes create
        it at once, the unique constraint lets one win and the others read its row."""
        for _ in range(3):
            try:
                with self.session() as s:
                    row = s.scalar(query)
                    if row is None:
                        row = make()
                        s.add(row)
                        s.flush()
                    return record(row)
            except StorageConflict:
                continue
        raise StorageError(f"cannot create {what} in {self.shown_url}")

    @_retrying
    def get_stage(self, sweep_id: int, index: int) -> StageRecord | None:
        with self.session() as s:
            row = s.scalar(select(StageModel).where(StageModel.sweep_id == sweep_id,
                                                    StageModel.index == index))
            return None if row is None else _stage_record(row)

    @_retrying
    def merge_stage_space(self, stage_id: int, changes: Mapping[str, Any],
                          note: str | None = None) -> StageRecord:
        """Update some keys of a stage's stored plan (and append ``note`` to its note) in one
        transaction that locks the row (PostgreSQL) or fails and is retried when another
        writer changed it meanwhile (SQLite), so concurrent updates of other keys are kept."""
        with self.session() as s:
            row = _get(s, StageModel, stage_id, "stage", with_for_update=True)
            row.plan_json = json.dumps({**json.loads(row.plan_json), **changes})
            if note:
                row.note = (row.note + "; " if row.note else "") + note
            s.flush()
            return _stage_record(row)

    @_retrying
    def list_stages(self, sweep_id: int) -> list[StageRecord]:
        with self.session() as s:
            rows = s.scalars(select(StageModel).where(StageModel.sweep_id == sweep_id)
                             .order_by(StageModel.index))
            return [_stage_record(r) for r in rows]

    # Trials

    @_retrying
    def count_trials(self, sweep_id: int) -> int:
        with self.session() as s:
            return int(s.scalar(select(func.count()).select_from(TrialModel)
                                .where(TrialModel.sweep_id == sweep_id)) or 0)

    @_retrying
    def existing_trial_ids(self, trial_ids: Sequence[int]) -> set[int]:
        """The ids among ``trial_ids`` that are trials in the database (one query)."""
        with self.session() as s:
            return set(s.scalars(select(TrialModel.id)
                                 .where(TrialModel.id.in_([int(i) for i in trial_ids]))))

    @_retrying
    def state_counts(self) -> dict[str, dict[str, int]]:
        """Trials by sweep name and state (``{"lambda": {"COMPLETE": 8}}``): one query."""
        with self.session() as s:
            rows = s.execute(select(SweepModel.name, TrialModel.state, func.count())
                             .join(TrialModel, TrialModel.sweep_id == SweepModel.id)
                             .group_by(SweepModel.name, TrialModel.state)).all()
        out: dict[str, dict[str, int]] = {}
        for name, state, n in rows:
            out.setdefault(name, {})[state.value] = int(n)
        return out

    @_retrying
    def trial_ids_where(self, conditions: Sequence[tuple[str, str, Any]],
                        sweep: str | Sequence[str] | None = None) -> list[int]:
        """Ids of the trials whose parameter or metric ``name`` satisfies each ``(name, op,
        value)`` condition; ``op`` is one of ``<``, ``<=``, ``>``, ``>=``, ``=``, ``!=``.

        Numbers compare numerically (parameters through their stored number, metrics by value);
        other values compare as their JSON text, so ``optimizer=adam`` works with ``=``/``!=``.
        """
        ops = {"<": "__lt__", "<=": "__le__", ">": "__gt__", ">=": "__ge__", "=": "__eq__",
               "!=": "__ne__"}
        query = select(TrialModel.id).join(SweepModel, TrialModel.sweep_id == SweepModel.id)
        if sweep is not None:
            query = query.where(SweepModel.name.in_(_names(sweep)))
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

    @_retrying
    def next_trial_number(self, sweep_id: int) -> int:
        with self.session() as s:
            return _next_number(s, sweep_id)

    @_retrying
    def start_trial(self, sweep_id: int, stage_id: int | None, number: int | None,
                    params: Mapping[str, Any], seed: int, worker: str = "",
                    setup: Mapping[str, Any] | None = None) -> int:
        """Insert a RUNNING trial with its parameters; returns its id. ``setup`` is how a
        trial outside a sweep runs (such as its data source), for its rerun.

        The trial gets ``number``, or when that is None or another writer took it meanwhile,
        the sweep's next free number (see :meth:`_numbered`)."""

        def insert(s: Session, free: int) -> int:
            started = now()
            row = TrialModel(sweep_id=sweep_id, stage_id=stage_id, number=free,
                             state=TrialState.RUNNING, seed=seed, worker=worker,
                             started_at=started, heartbeat_at=started, message="",
                             traceback="", setup_json=json.dumps(dict(setup)) if setup else None)
            row.params = [_param_row(k, v) for k, v in params.items()]
            s.add(row)
            s.flush()
            return row.id

        trial_id = self._numbered(lambda s: sweep_id, insert, first=number)
        assert trial_id is not None
        return trial_id

    def _numbered(self, sweep_of: Callable[[Session], int | None],
                  insert: Callable[[Session, int], T | None], *, first: int | None = None,
                  claimed: Callable[[], bool] | None = None) -> T | None:
        """The one way a new trial is numbered: ``insert(session, number)`` with the next free
        number of the sweep ``sweep_of(session)`` (``first`` on the first try), read in the
        same transaction as the insert. The unique (sweep, number) constraint makes concurrent
        writers try again, so none loses a trial; None when ``claimed()`` says that what the
        insert claims was taken by another process (or ``sweep_of`` finds nothing to do)."""
        number = first
        for _ in range(NUMBERING_TRIES):
            try:
                with self.session() as s:
                    sweep_id = sweep_of(s)
                    if sweep_id is None:
                        return None
                    return insert(s, _next_number(s, sweep_id) if number is None else number)
            except StorageConflict:
                if claimed is not None and claimed():
                    return None
                number = None  # taken: number it inside the transaction from now on
                time.sleep(0.01 + 0.05 * _JITTER.random())
        raise StorageBusy(f"cannot number a new trial in {self.shown_url}: too many conflicts")

    @_retrying
    def finish_trial(self, trial_id: int, state: TrialState, *,
                     metrics: Mapping[str, float] | None = None,
                     curves: Iterable[CurveRecord] = (), message: str = "",
                     traceback: str = "", worker: str | None = None,
                     params: Mapping[str, Any] | None = None,
                     group: tuple[int, int] | None = None) -> bool:
        """Record how a trial ended, with whatever it measured (also when it failed).

        ``params`` updates parameter values the run resolved (such as an automatic ``n_s``);
        ``group`` is the fused group it trained in: (group id, group size).
        Only a RUNNING trial is finished: returns False (and writes nothing) when the trial
        was marked interrupted meanwhile (its process was taken for dead and another
        attempt runs it), so a planned trial is never complete twice.
        """
        with self.session() as s:
            values: dict[str, Any] = {"state": state, "finished_at": now(), "message": message,
                                      "traceback": traceback}
            if worker is not None:
                values["worker"] = worker
            if group is not None:
                values["group_id"], values["group_size"] = group
            # one conditional UPDATE first: it takes the write lock, so no other process can
            # mark the trial interrupted between the check and the write
            done = s.execute(update(TrialModel)
                             .where(TrialModel.id == trial_id,
                                    TrialModel.state == TrialState.RUNNING)
                             .values(**values).execution_options(synchronize_session=False))
            row = _get(s, TrialModel, trial_id, "trial")
            if done.rowcount != 1:
                return False
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
            # the whole curve, in its order, in place of the points stored while it ran
            s.execute(delete(CurvePointModel).where(CurvePointModel.trial_id == trial_id)
                      .execution_options(synchronize_session=False))
            s.add_all(_curve_row(trial_id, c) for c in curves)
        return True

    @_retrying
    def add_running_curve_points(self, trial_id: int, curves: Sequence[CurveRecord]) -> bool:
        """Store curve points of a RUNNING trial as they are measured (so a running trial's
        curve can be read and drawn); a (step, split) already stored is not stored again.
        Returns False and writes nothing when the trial is no longer running (it ended, or
        was taken for lost); :meth:`finish_trial` stores the whole curve in their place."""
        with self.session() as s:
            # a conditional UPDATE first takes the write lock: the trial cannot end between
            # the check and the insert (it is the trial's process speaking: a heartbeat too)
            done = s.execute(update(TrialModel)
                             .where(TrialModel.id == trial_id,
                                    TrialModel.state == TrialState.RUNNING)
                             .values(heartbeat_at=now())
                             .execution_options(synchronize_session=False))
            if done.rowcount != 1:
                return False
            have = {(step, split) for step, split in s.execute(
                select(CurvePointModel.step, CurvePointModel.split)
                .where(CurvePointModel.trial_id == trial_id))}
            fresh = []
            for c in curves:
                if (c.step, c.split) not in have:
                    have.add((c.step, c.split))
                    fresh.append(_curve_row(trial_id, c))
            s.add_all(fresh)
        return True

    # Planned trials of a sweep stage: atomic claims, heartbeats, interruptions

    @_retrying
    def claim_slots(self, sweep_id: int, stage_id: int,
                    slots: Sequence[tuple[int, Mapping[str, Any], int]], *,
                    study_trial: int | None, worker: str) -> list[tuple[int, int]] | None:
        """Start attempt 0 of each ``(slot, params, seed)`` of a stage as a RUNNING trial, all
        in one transaction. Returns ``(trial id, number)`` per slot, or None when another
        process claimed one of these slots first (the unique (stage, slot, attempt) index
        decides, so two processes never run the same planned trial)."""

        def insert(s: Session, number: int) -> list[tuple[int, int]]:
            started = now()
            rows = []
            for i, (slot, params, seed) in enumerate(slots):
                row = TrialModel(sweep_id=sweep_id, stage_id=stage_id, number=number + i,
                                 slot=slot, attempt=0, study_trial=study_trial,
                                 state=TrialState.RUNNING, seed=seed, worker=worker,
                                 started_at=started, heartbeat_at=started, message="",
                                 traceback="")
                row.params = [_param_row(k, v) for k, v in params.items()]
                rows.append(row)
            s.add_all(rows)
            s.flush()
            return [(r.id, r.number) for r in rows]

        return self._numbered(lambda s: sweep_id, insert, claimed=lambda: self._slots_taken(
            stage_id, [slot for slot, _, _ in slots]))

    @_retrying
    def _slots_taken(self, stage_id: int, slots: Sequence[int]) -> bool:
        with self.session() as s:
            return s.scalar(select(func.count()).select_from(TrialModel).where(
                TrialModel.stage_id == stage_id, TrialModel.slot.in_(list(slots)))) > 0

    @_retrying
    def claim_again(self, trial_id: int, *, worker: str, seen_heartbeat: datetime | None,
                    lost_message: str = "") -> tuple[int, int] | None:
        """Start the next attempt of the planned trial whose latest attempt is ``trial_id``:
        an INTERRUPTED one, or a RUNNING one whose heartbeat is still ``seen_heartbeat`` (its
        process is taken for dead: it is marked INTERRUPTED with ``lost_message``). Returns
        the new ``(trial id, number)``, or None when the trial is alive after all or another
        process claimed the next attempt first."""
        old: TrialModel | None = None

        def sweep_of(s: Session) -> int | None:
            """The sweep of the planned trial, once it is taken for lost; None when it is
            alive after all, or finished."""
            nonlocal old
            old = s.get(TrialModel, trial_id)
            if old is None or old.slot is None:
                raise StorageError(f"no planned trial with id {trial_id}")
            if old.state is TrialState.RUNNING:
                alive = TrialModel.heartbeat_at.is_(None) if seen_heartbeat is None \
                    else TrialModel.heartbeat_at <= seen_heartbeat
                done = s.execute(update(TrialModel).where(
                    TrialModel.id == trial_id, TrialModel.state == TrialState.RUNNING,
                    alive).values(state=TrialState.INTERRUPTED, finished_at=now(),
                                  message=lost_message)
                    .execution_options(synchronize_session=False))
                if done.rowcount != 1:
                    return None
            elif old.state is not TrialState.INTERRUPTED:
                return None
            return old.sweep_id

        def insert(s: Session, number: int) -> tuple[int, int]:
            assert old is not None
            started = now()
            row = TrialModel(sweep_id=old.sweep_id, stage_id=old.stage_id, number=number,
                             slot=old.slot, attempt=old.attempt + 1,
                             study_trial=old.study_trial, state=TrialState.RUNNING,
                             seed=old.seed, worker=worker, started_at=started,
                             heartbeat_at=started, message="", traceback="")
            row.params = [TrialParamModel(name=p.name, value_json=p.value_json,
                                          value_num=p.value_num) for p in old.params]
            s.add(row)
            s.flush()
            return row.id, row.number

        return self._numbered(sweep_of, insert, claimed=lambda: self._attempt_taken(trial_id))

    @_retrying
    def _attempt_taken(self, trial_id: int) -> bool:
        with self.session() as s:
            old = s.get(TrialModel, trial_id)
            if old is None:
                return True
            return s.scalar(select(func.count()).select_from(TrialModel).where(
                TrialModel.stage_id == old.stage_id, TrialModel.slot == old.slot,
                TrialModel.attempt > old.attempt)) > 0

    @_retrying
    def count_lost_attempts(self, trial_id: int, prefix: str) -> int:
        """How many earlier attempts of the planned trial of ``trial_id`` were INTERRUPTED with
        a message starting with ``prefix`` (such as lost with their worker process)."""
        with self.session() as s:
            row = s.get(TrialModel, trial_id)
            if row is None or row.slot is None:
                return 0
            return int(s.scalar(select(func.count()).select_from(TrialModel).where(
                TrialModel.stage_id == row.stage_id, TrialModel.slot == row.slot,
                TrialModel.attempt < row.attempt, TrialModel.state == TrialState.INTERRUPTED,
                TrialModel.message.like(prefix.replace("%", r"\%") + "%", escape="\\")))
                or 0)

    @_retrying
    def stage_slots(self, stage_id: int) -> list[SlotRecord]:
        """Every attempt at the planned trials of a stage, by slot then attempt."""
        with self.session() as s:
            rows = s.execute(
                select(TrialModel.id, TrialModel.number, TrialModel.slot, TrialModel.attempt,
                       TrialModel.state, TrialModel.study_trial, TrialModel.worker,
                       TrialModel.heartbeat_at, TrialMetricModel.value, TrialMetricModel.kind)
                .outerjoin(TrialMetricModel, and_(TrialMetricModel.trial_id == TrialModel.id,
                                                  TrialMetricModel.name == "val_acc"))
                .where(TrialModel.stage_id == stage_id, TrialModel.slot.is_not(None))
                .order_by(TrialModel.slot, TrialModel.attempt)).all()
            return [SlotRecord(i, n, sl, a, st, stu, w, hb,
                               None if k is None else decode_float(v, k))
                    for i, n, sl, a, st, stu, w, hb, v, k in rows]

    @_retrying
    def heartbeat(self, trial_ids: Sequence[int]) -> None:
        """Say that these trials are still running (their process is alive)."""
        if not trial_ids:
            return
        with self.session() as s:
            s.execute(update(TrialModel)
                      .where(TrialModel.id.in_(list(trial_ids)),
                             TrialModel.state == TrialState.RUNNING)
                      .values(heartbeat_at=now())
                      .execution_options(synchronize_session=False))

    # Leases: one process at a time

    def take_lease(self, name: str, holder: str, seconds: float, *,
                   taking_from: str | None = None) -> bool:
        """Whether ``holder`` now holds lease ``name`` for ``seconds`` (it was free, expired,
        already its own, or held by ``taking_from``: a holder the caller knows is gone);
        False while another process holds it."""
        try:
            return self._take_lease(name, holder, seconds, taking_from)
        except StorageConflict:
            return False  # another process created the lease row at the same moment

    @_retrying
    def lease_holder(self, name: str) -> str | None:
        """Who holds lease ``name`` now; None when it is free or expired."""
        with self.session() as s:
            lease = s.get(LeaseModel, name)
            if lease is None or not lease.holder or lease.expires_at < now():
                return None
            return lease.holder

    @_retrying
    def _take_lease(self, name: str, holder: str, seconds: float,
                    taking_from: str | None) -> bool:
        with self.session() as s:
            t = now()
            mine = [holder] if taking_from is None else [holder, taking_from]
            taken = s.execute(
                update(LeaseModel)
                .where(LeaseModel.name == name,
                       or_(LeaseModel.holder.in_(mine), LeaseModel.expires_at < t))
                .values(holder=holder, expires_at=t + timedelta(seconds=seconds)))
            if taken.rowcount:  # type: ignore[attr-defined]
                return True
            if s.get(LeaseModel, name) is not None:
                return False
            s.add(LeaseModel(name=name, holder=holder,
                             expires_at=t + timedelta(seconds=seconds)))
            s.flush()
            return True

    @_retrying
    def give_back_lease(self, name: str, holder: str) -> None:
        with self.session() as s:
            s.execute(update(LeaseModel)
                      .where(LeaseModel.name == name, LeaseModel.holder == holder)
                      .values(holder="", expires_at=now() - timedelta(seconds=1)))

    @_retrying
    def interrupt_trials(self, trial_ids: Sequence[int], message: str, *,
                         sweep_id: int | None = None, worker: str | None = None) -> int:
        """Mark these trials INTERRUPTED if they are still RUNNING, and with ``sweep_id`` and
        ``worker`` also every RUNNING trial of the sweep that worker claimed (one claimed just
        as the interrupt came, before its process tracked it); returns how many were."""
        which = _interrupt_clause(trial_ids, sweep_id, worker)
        if which is None:
            return 0
        with self.session() as s:
            return _mark_interrupted(s, which, message)

    def interrupt_trials_promptly(self, trial_ids: Sequence[int], message: str, *,
                                  sweep_id: int | None = None, worker: str | None = None,
                                  wait: float = INTERRUPT_WAIT_SECONDS) -> int:
        """:meth:`interrupt_trials` for Ctrl-C: waits at most ``wait`` seconds for other
        processes' locks (this process holds none: Ctrl-C cuts no transaction short, see
        :mod:`numsweep.shield`). Returns how many trials were marked; 0 when the database
        stayed locked (the trials' process is gone, so a resume takes them for lost and
        runs them again)."""
        give_up = time.monotonic() + wait
        while True:
            try:
                return self._interrupt(trial_ids, message, sweep_id=sweep_id, worker=worker,
                                       wait=wait)
            except StorageBusy:
                if time.monotonic() > give_up:
                    return 0
                time.sleep(0.05)

    def _interrupt(self, trial_ids: Sequence[int], message: str, *, sweep_id: int | None,
                   worker: str | None, wait: float) -> int:
        which = _interrupt_clause(trial_ids, sweep_id, worker)
        if which is None:
            return 0
        with self.session() as s:
            if self.engine.dialect.name == "sqlite":
                s.execute(text(f"PRAGMA busy_timeout = {int(wait * 1000)}"))
            elif self.engine.dialect.name == "postgresql":
                s.execute(text(f"SET LOCAL lock_timeout = '{int(wait * 1000)}ms'"))
            count = _mark_interrupted(s, which, message)
            if self.engine.dialect.name == "sqlite":  # the pooled connection's usual patience
                s.execute(text(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}"))
            return count

    @_retrying
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

    @_retrying
    def get_curves(self, trial_ids: Sequence[int]) -> list[CurveRecord]:
        with self.session() as s:
            rows = s.scalars(select(CurvePointModel)
                             .where(CurvePointModel.trial_id.in_(list(trial_ids)))
                             .order_by(CurvePointModel.trial_id, CurvePointModel.id))
            return [CurveRecord(r.trial_id, r.step, r.split, _nan_if_none(r.loss),
                                _nan_if_none(r.cost), _nan_if_none(r.acc), _nan_if_none(r.lr))
                    for r in rows]

    # Slot groups: how full a stage's slots were

    def record_slot_group(self, stage_id: int, group_id: int, worker: str, size: int,
                          steps: int, slot_updates: int, trials: int, full_steps: int,
                          full_slot_updates: int, *,
                          started_at: datetime | None = None) -> SlotGroupRecord:
        """Store a slot group that ended (see :class:`SlotGroupRecord`), in place of the row
        of the same (stage, group) if there is one (a resumed group that ended again).
        ``started_at``: when it began; None: when its first trial (``group_id``) started."""
        values = {"worker": worker, "size": int(size), "steps": int(steps),
                  "slot_updates": int(slot_updates), "trials": int(trials),
                  "full_steps": int(full_steps), "full_slot_updates": int(full_slot_updates)}
        for _ in range(3):  # two processes inserting the same row at once: one wins
            try:
                return self._record_slot_group(stage_id, group_id, values, started_at)
            except StorageConflict:
                continue
        raise StorageError(f"cannot store slot group {group_id} in {self.shown_url}")

    @_retrying
    def _record_slot_group(self, stage_id: int, group_id: int, values: dict[str, Any],
                           started_at: datetime | None) -> SlotGroupRecord:
        with self.session() as s:
            stage = _get(s, StageModel, stage_id, "stage")
            ended = now()
            if started_at is None:
                started_at = s.scalar(select(TrialModel.started_at)
                                      .where(TrialModel.id == group_id)) or ended
            row = s.scalar(select(SlotGroupModel).where(SlotGroupModel.stage_id == stage_id,
                                                        SlotGroupModel.group_id == group_id))
            if row is None:
                row = SlotGroupModel(stage_id=stage_id, group_id=group_id)
                s.add(row)
            for name, value in values.items():
                setattr(row, name, value)
            row.started_at, row.finished_at = started_at, ended
            s.flush()
            return _slot_group_record(row, stage.name)

    @_retrying
    def slot_groups(self, stage_id: int | None = None, *,
                    sweep: str | None = None) -> list[SlotGroupRecord]:
        """The slot groups stored of one stage, or of every stage of ``sweep``, in the order
        they were first stored."""
        if (stage_id is None) == (sweep is None):
            raise ValueError("give a stage id or a sweep name")
        query = (select(SlotGroupModel, StageModel.name)
                 .join(StageModel, SlotGroupModel.stage_id == StageModel.id)
                 .order_by(SlotGroupModel.id))
        if stage_id is not None:
            query = query.where(SlotGroupModel.stage_id == stage_id)
        else:
            query = (query.join(SweepModel, StageModel.sweep_id == SweepModel.id)
                     .where(SweepModel.name == sweep))
        with self.session() as s:
            return [_slot_group_record(row, name) for row, name in s.execute(query)]

    # Lineage: a pbt stage's exploit steps

    @_retrying
    def record_lineage(self, stage_id: int,
                       steps: Sequence[tuple[int, int, int, float, float, Mapping[str, float],
                                             Mapping[str, float]]]) -> int:
        """Store a pbt stage's exploit steps, each ``(trial_id, update, source_trial_id,
        metric_member, metric_source, before, after)``, in place of any the stage has (a
        resumed population that ended again stores its whole history once), in one
        transaction; the number of rows stored."""
        with self.session() as s:
            _get(s, StageModel, stage_id, "stage")
            s.execute(delete(LineageModel).where(LineageModel.stage_id == stage_id)
                      .execution_options(synchronize_session=False))
            s.add_all(LineageModel(
                stage_id=stage_id, trial_id=int(trial), update=int(update),
                source_trial_id=int(source), metric_member=_finite_or_none(float(member)),
                metric_source=_finite_or_none(float(metric)),
                before_json=json.dumps({k: float(v) for k, v in before.items()}),
                after_json=json.dumps({k: float(v) for k, v in after.items()}))
                for trial, update, source, member, metric, before, after in steps)
            return len(steps)

    @_retrying
    def lineage(self, stage_id: int | None = None, *,
                sweep: str | None = None) -> list[LineageRecord]:
        """The exploit steps stored of one pbt stage, or of every stage of ``sweep``, in the
        order they happened."""
        if (stage_id is None) == (sweep is None):
            raise ValueError("give a stage id or a sweep name")
        query = (select(LineageModel, StageModel.name)
                 .join(StageModel, LineageModel.stage_id == StageModel.id)
                 .order_by(LineageModel.id))
        if stage_id is not None:
            query = query.where(LineageModel.stage_id == stage_id)
        else:
            query = (query.join(SweepModel, StageModel.sweep_id == SweepModel.id)
                     .where(SweepModel.name == sweep))
        with self.session() as s:
            return [_lineage_record(row, name) for row, name in s.execute(query)]

    # Bulk reads for analysis: plain tuples from a few queries, no ORM objects per row.

    @_retrying
    def get_trial_rows(self, sweep: str | Sequence[str] | None = None, *,
                       stage: str | None = None,
                       states: Sequence[TrialState] | None = None) -> TrialRows:
        """The trials :meth:`get_trials` would return, as three lists of plain tuples
        (``sweep``: one sweep's name or several names).

        ``trials``: (id, sweep, stage, number, state, seed, worker, started_at, finished_at,
        message, group_id, group_size) ordered by id; ``params``: (trial_id, name, value);
        ``metrics``: (trial_id, name, value) with inf/NaN restored. Three queries however many
        trials there are.
        """
        ids = (select(TrialModel.id)
               .join(SweepModel, TrialModel.sweep_id == SweepModel.id)
               .outerjoin(StageModel, TrialModel.stage_id == StageModel.id))
        if sweep is not None:
            ids = ids.where(SweepModel.name.in_(_names(sweep)))
        if stage is not None:
            ids = ids.where(StageModel.name == stage)
        if states:
            ids = ids.where(TrialModel.state.in_(list(states)))
        with self.session() as s:
            trials = s.execute(
                select(TrialModel.id, SweepModel.name, StageModel.name, TrialModel.number,
                       TrialModel.state, TrialModel.seed, TrialModel.worker,
                       TrialModel.started_at, TrialModel.finished_at, TrialModel.message,
                       TrialModel.group_id, TrialModel.group_size)
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

    @_retrying
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


def _names(sweep: str | Sequence[str]) -> list[str]:
    """One sweep name or several, as a list."""
    return [sweep] if isinstance(sweep, str) else list(sweep)


def _next_number(s: Session, sweep_id: int) -> int:
    last = s.scalar(select(func.max(TrialModel.number)).where(TrialModel.sweep_id == sweep_id))
    return 0 if last is None else int(last) + 1


def _interrupt_clause(trial_ids: Sequence[int], sweep_id: int | None,
                      worker: str | None) -> Any:
    """Which trials an interrupt marks: ``trial_ids``, and with ``sweep_id`` and ``worker``
    every trial of the sweep that worker claimed; None when that is none."""
    which = TrialModel.id.in_(list(trial_ids))
    if sweep_id is not None and worker is not None:
        return or_(which, and_(TrialModel.sweep_id == sweep_id, TrialModel.worker == worker))
    return which if trial_ids else None


def _mark_interrupted(s: Session, which: Any, message: str) -> int:
    """Mark the RUNNING trials ``which`` selects INTERRUPTED; returns how many were."""
    done = s.execute(update(TrialModel)
                     .where(which, TrialModel.state == TrialState.RUNNING)
                     .values(state=TrialState.INTERRUPTED, finished_at=now(), message=message)
                     .execution_options(synchronize_session=False))
    return int(done.rowcount or 0)


def _first_line(exc: BaseException) -> str:
    text = str(getattr(exc, "orig", None) or exc)
    return text.strip().splitlines()[0] if text.strip() else type(exc).__name__


def _curve_row(trial_id: int, c: CurveRecord) -> CurvePointModel:
    return CurvePointModel(trial_id=trial_id, step=c.step, split=c.split,
                           loss=_finite_or_none(c.loss), cost=_finite_or_none(c.cost),
                           acc=_finite_or_none(c.acc), lr=_finite_or_none(c.lr))


def _finite_or_none(value: float) -> float | None:
    return None if math.isnan(value) else float(value)


def _param_row(name: str, value: Any) -> TrialParamModel:
    is_number = isinstance(value, (int, float)) and not isinstance(value, bool)
    number = float(value) if is_number and math.isfinite(value) else None
    return TrialParamModel(name=name, value_json=json.dumps(value), value_num=number)


def _get(s: Session, model: type[Row], key: Any, what: str, *,
         with_for_update: bool = False) -> Row:
    """The row of ``model`` with primary key ``key``; a one-line error naming ``what`` when
    there is none."""
    row = s.get(model, key, with_for_update=with_for_update)
    if row is None:
        raise StorageError(f"no {what} with id {key}")
    return row


def _run_row(run: RunSettings) -> SweepRunModel:
    return SweepRunModel(data_source=run.data, threads=run.threads,
                         checkpoint_dir=run.checkpoint_dir, keep_weights=run.keep_weights)


def _sweep_record(row: SweepModel) -> SweepRecord:
    run = None if row.run is None else RunSettings(row.run.data_source, row.run.threads,
                                                   row.run.checkpoint_dir,
                                                   row.run.keep_weights)
    return SweepRecord(row.id, row.name, json.loads(row.spec_json), row.seed, row.created_at,
                       row.data_fingerprint, run)


def _stage_record(row: StageModel) -> StageRecord:
    return StageRecord(row.id, row.sweep_id, row.index, row.name, row.sampler,
                       json.loads(row.plan_json), row.note)


def _trial_record(row: TrialModel, sweep: str, stage: str | None) -> TrialRecord:
    return TrialRecord(
        id=row.id, sweep=sweep, stage=stage, number=row.number, state=row.state, seed=row.seed,
        worker=row.worker, started_at=row.started_at, finished_at=row.finished_at,
        message=row.message, traceback=row.traceback,
        params={p.name: json.loads(p.value_json) for p in row.params},
        metrics={m.name: decode_float(m.value, m.kind) for m in row.metrics},
        slot=row.slot, attempt=row.attempt, heartbeat_at=row.heartbeat_at,
        setup=json.loads(row.setup_json) if row.setup_json else {},
        group_id=row.group_id, group_size=row.group_size,
    )


def _slot_group_record(row: SlotGroupModel, stage: str) -> SlotGroupRecord:
    return SlotGroupRecord(
        id=row.id, stage_id=row.stage_id, stage=stage, group_id=row.group_id,
        worker=row.worker, size=row.size, steps=row.steps, slot_updates=row.slot_updates,
        trials=row.trials, full_steps=row.full_steps, full_slot_updates=row.full_slot_updates,
        started_at=row.started_at, finished_at=row.finished_at)


def _lineage_record(row: LineageModel, stage: str) -> LineageRecord:
    return LineageRecord(
        id=row.id, stage_id=row.stage_id, stage=stage, trial_id=row.trial_id,
        update=row.update, source_trial_id=row.source_trial_id,
        metric_member=_nan_if_none(row.metric_member),
        metric_source=_nan_if_none(row.metric_source),
        before=json.loads(row.before_json), after=json.loads(row.after_json))
