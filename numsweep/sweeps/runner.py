"""Run a sweep: one process owns the database and the Optuna studies (ask/tell); worker
processes only train and send results back.

What is guaranteed (see README, "Parallel runs and reproducibility"):

- a trial's seed depends only on the sweep seed, the stage and the trial's place in it;
- grid points, ``configs`` and the ``best`` stage are fixed lists: each entry runs once;
- samplers whose proposals depend on results (tpe, gp, cmaes), and every stage with a pruner,
  see results with a fixed lag: configuration k is proposed (and its pruning snapshot taken)
  knowing exactly the results of configurations 0 .. k - ``sync``, told in order. So the same
  sweep seed gives the same trials and metrics with any ``--jobs`` up to ``sync`` (default 4)
  as long as the BLAS thread count per trial (``threads``) is the same;
- random and qmc proposals do not depend on results and are the same with any ``--jobs``.
"""

from __future__ import annotations

import json
import math
import os
import random
import shutil
import socket
import tempfile
import threading
import time
import traceback
import warnings
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, BrokenExecutor, Future, wait
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import optuna
from joblib.externals.loky import get_reusable_executor

from numsweep.engine import TrialSpec, make_split
from numsweep.engine.train import build_network
from numsweep.storage import (
    CurveRecord,
    SlotRecord,
    StageRecord,
    Storage,
    StorageError,
    SweepRecord,
    TrialRecord,
    TrialState,
    shown_url,
)
from numsweep.sweeps.deaths import (  # issue 18 hooks
    execute_announced,
    judge_worker_loss,
    watch_worker_deaths,
)
from numsweep.sweeps.guards import (  # issue 18 hooks
    check_data_sizes,
    check_rerun_data,
    check_sweep_data,
    fingerprint_of,
)
from numsweep.sweeps.interrupts import mark_interrupted  # issue 18 hook
from numsweep.sweeps.spec import (
    HISTORY_SAMPLERS,
    ParamSpace,
    StageSpec,
    SweepSpec,
    SweepSpecError,
    check_against_images,
    grid_points,
    parse_spec,
)
from numsweep.sweeps.worker import (
    SPLIT_FIELDS,
    PruneSnapshot,
    SharedSplit,
    TrialOutcome,
    TrialTask,
    _dataset,
    execute,
    split_key,
    worker_name,
)

optuna.logging.set_verbosity(optuna.logging.WARNING)


@dataclass(frozen=True)
class TrialEvent:
    """Sent to the progress display: a stage starts ("stage"), a trial starts or ends."""

    kind: str  # "stage", "started" or "finished"
    stage: str
    number: int = -1
    state: TrialState | None = None
    val_acc: float | None = None
    message: str = ""
    estimate: float | None = None  # the planner's estimate of the trial's seconds
    seconds: float | None = None  # measured wall-clock seconds (finished)
    planned: int = 0  # trials the stage plans to run ("stage")
    reused: int = 0  # earlier trials the stage reuses ("stage")
    counts: Mapping[str, int] = field(default_factory=dict)  # finished before ("stage")


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


def trial_seed(sweep_seed: int, stage_index: int, number: int, replicate: int = 0) -> int:
    """A trial's seed depends only on the sweep seed and its place, never on worker timing."""
    entropy = [sweep_seed, stage_index, number] + ([replicate] if replicate else [])
    return int(np.random.SeedSequence(entropy).generate_state(1)[0])


# Search spaces in Optuna terms

def encode(value: Any) -> Any:
    """Optuna's categorical values are scalars: lists (``hidden``, tied choices) travel as
    JSON text."""
    if isinstance(value, (list, tuple)):
        return json.dumps([encode(v) for v in value])
    return value


def distribution(p: ParamSpace) -> optuna.distributions.BaseDistribution:
    if p.type == "categorical":
        return optuna.distributions.CategoricalDistribution([encode(c) for c in p.choices])
    assert p.low is not None and p.high is not None
    if p.type == "int":
        return optuna.distributions.IntDistribution(int(p.low), int(p.high), log=p.log)
    return optuna.distributions.FloatDistribution(float(p.low), float(p.high), log=p.log)


def decode(p: ParamSpace, value: Any) -> Any:
    if p.type == "categorical":
        for choice in p.choices:
            if encode(choice) == value:
                return choice
        raise ValueError(f"{p.name}: {value!r} is not one of its choices")
    return int(value) if p.type == "int" else float(value)


def ordered(space: Mapping[str, ParamSpace]) -> list[ParamSpace]:
    """Unconditional entries first, so a condition's parameters are chosen before it."""
    entries = list(space.values())
    return [p for p in entries if not p.when] + [p for p in entries if p.when]


def suggest(trial: optuna.Trial, space: Mapping[str, ParamSpace],
            fixed: Mapping[str, Any]) -> dict[str, Any]:
    """Define-by-run: conditional entries are suggested only when their condition holds."""
    params: dict[str, Any] = {}
    for p in ordered(space):
        if not p.active({**fixed, **params}):
            continue
        if p.type == "categorical":
            value = trial.suggest_categorical(p.name, [encode(c) for c in p.choices])
        elif p.type == "int":
            assert p.low is not None and p.high is not None
            value = trial.suggest_int(p.name, int(p.low), int(p.high), log=p.log)
        else:
            assert p.low is not None and p.high is not None
            value = trial.suggest_float(p.name, float(p.low), float(p.high), log=p.log)
        params.update(p.assign(decode(p, value)))
    return params


def entry_values(space: Mapping[str, ParamSpace], params: Mapping[str, Any],
                 fixed: Mapping[str, Any]) -> dict[str, Any]:
    """The Optuna values (entry name -> encoded value) of a configuration's active entries."""
    out: dict[str, Any] = {}
    for p in ordered(space):
        if not p.active({**fixed, **params}):
            continue
        value = [params[n] for n in p.names] if p.tied else params[p.name]
        out[p.name] = encode(value) if p.type == "categorical" else value
    return out


def inside(space: Mapping[str, ParamSpace], params: Mapping[str, Any],
           fixed: Mapping[str, Any]) -> bool:
    for p in ordered(space):
        if not p.active({**fixed, **params}):
            continue
        value = [params.get(n) for n in p.names] if p.tied else params.get(p.name)
        if not p.contains(value):
            return False
    return True


def make_sampler(sampler: str, seed: int) -> optuna.samplers.BaseSampler:
    if sampler == "tpe":
        return optuna.samplers.TPESampler(seed=seed)
    if sampler == "qmc":
        return optuna.samplers.QMCSampler(seed=seed, scramble=True)
    if sampler == "gp":
        try:
            import torch  # noqa: F401
        except ImportError:
            raise SweepSpecError("sampler = 'gp' needs PyTorch (pip install torch)") from None
        return optuna.samplers.GPSampler(seed=seed)
    if sampler == "cmaes":
        try:
            import cmaes  # noqa: F401
        except ImportError:
            raise SweepSpecError("sampler = 'cmaes' needs the cmaes package "
                                 "(pip install cmaes)") from None
        return optuna.samplers.CmaEsSampler(seed=seed, warn_independent_sampling=False)
    # random; grid, list and best stages enqueue every configuration, so their sampler is
    # never asked for a value
    return optuna.samplers.RandomSampler(seed=seed)


def make_pruner(kind: str) -> optuna.pruners.BasePruner:
    if kind == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=0)
    if kind == "halving":
        return optuna.pruners.SuccessiveHalvingPruner()
    if kind == "hyperband":
        return optuna.pruners.HyperbandPruner()
    return optuna.pruners.NopPruner()


def optuna_storage(url: str) -> optuna.storages.BaseStorage:
    """Optuna's RDB storage on numsweep's own database (its tables have no ``ns_`` prefix),
    so ``optuna-dashboard URL`` shows the studies; in-memory for an in-memory SQLite URL."""
    if url in ("sqlite://", "sqlite:///:memory:"):
        return optuna.storages.InMemoryStorage()
    kwargs: dict[str, Any] = {}
    if url.startswith("sqlite"):
        kwargs = {"connect_args": {"timeout": 60}}
    for tries_left in (3, 2, 1, 0):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                return optuna.storages.RDBStorage(url, engine_kwargs=kwargs)
        except Exception as exc:
            # processes that open a new database at once race to create Optuna's tables
            if tries_left and ("UNIQUE" in str(exc) or "already exists" in str(exc)
                               or "unique" in str(exc) or "locked" in str(exc)):
                time.sleep(0.2 + _JITTER.random())
                continue
            raise StorageError(f"cannot open the Optuna study storage on {shown_url(url)}: "
                               f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"
                               ) from None
    raise AssertionError("unreachable")


def study_name(sweep: str, stage: str) -> str:
    return f"{sweep}/{stage}"


# Narrowing

def narrow_space(space: Mapping[str, ParamSpace], top: Sequence[Mapping[str, Any]],
                 source_space: Mapping[str, ParamSpace], widen: float,
                 source: str) -> tuple[dict[str, ParamSpace], str]:
    """Narrow each numeric range to the span of the ``top`` trials' values, widened by
    ``widen`` grid steps of ``source_space`` (in log10 units for log ranges); a categorical
    entry keeps the choices the top trials used. A widened end that is not a valid value
    (such as a negative lam) stops at the source range's end.

    Returns the new space and a note saying what was chosen and why.
    """
    if not top:
        return dict(space), f"no complete trials in {source}: ranges unchanged"
    out: dict[str, ParamSpace] = {}
    notes = []
    for name, p in space.items():
        values = [t[n] for t in top for n in p.names if n in t] if not p.tied else \
            [[t[n] for n in p.names] for t in top if all(n in t for n in p.names)]
        if not values:
            out[name] = p
            continue
        if p.type == "categorical":
            kept = tuple(c for c in p.choices
                         if any(_same(encode(c), encode(v)) for v in values))
            out[name] = ParamSpace(name, p.type, choices=kept or p.choices, when=p.when)
            notes.append(f"{name}: choices of the best {len(top)} of {source}: "
                         f"{[encode(c) for c in out[name].choices]}")
            continue
        src = source_space.get(name, p)
        assert src.low is not None and src.high is not None
        to = (lambda v: math.log10(v)) if p.log else (lambda v: float(v))
        back = (lambda u: 10.0 ** u) if p.log else (lambda u: u)
        step = src.grid_step()
        why_step = "grid step"
        if step is None:
            step = (to(src.high) - to(src.low)) / 10
            why_step = "tenth of the range"
        lo_u, hi_u = min(to(v) for v in values), max(to(v) for v in values)
        low, high = back(lo_u - widen * step), back(hi_u + widen * step)
        low = low if _valid(p, low) else src.low
        high = high if _valid(p, high) else src.high
        if p.type == "int":
            low, high = math.floor(low), math.ceil(high)
        out[name] = ParamSpace(name, p.type, low=low, high=high, log=p.log, grid=p.grid,
                               when=p.when)
        unit = "log10 " if p.log else ""
        span = f"[{min(values):.3g}, {max(values):.3g}]"
        notes.append(f"{name}: best {len(top)} of {source} span {span}, widened by {widen:g} "
                     f"{why_step} ({widen * step:.3g} {unit}units) -> [{low:.3g}, {high:.3g}]"
                     f"{' (log)' if p.log else ''}")
    return out, "; ".join(notes)


def _same(a: Any, b: Any) -> bool:
    return a == b


def _valid(p: ParamSpace, value: float) -> bool:
    if not math.isfinite(value) or (p.log and value <= 0):
        return False
    try:
        for n in p.names:
            TrialSpec.from_mapping({n: round(value) if p.type == "int" else value})
    except ValueError:
        return False
    return True


# Data shared with workers

class DataShare:
    """Loads the dataset once in this process; with worker processes, saves each normalised
    split (and the patchify ConvNet's patch matrices) once as ``.npy`` files that workers open
    with ``mmap_mode="r"``: one copy in memory however many workers there are."""

    def __init__(self, source: str | None, jobs: int) -> None:
        self.source = source
        self.jobs = jobs
        self.dataset = _dataset(source)
        self.folder: Path | None = None
        self.shared: dict[str, SharedSplit] = {}

    def shared_for(self, spec: TrialSpec) -> SharedSplit | None:
        if self.jobs == 1:
            return None
        if self.folder is None:
            base = Path("/dev/shm") if Path("/dev/shm").is_dir() and os.access(
                "/dev/shm", os.W_OK) else Path(tempfile.gettempdir())
            _remove_orphans(base)
            self.folder = Path(tempfile.mkdtemp(prefix=f"numsweep-{os.getpid()}-", dir=base))
        key = split_key(spec.n_train, spec.n_val, spec.dtype)
        shared = self.shared.get(key)
        if shared is not None and (spec.model != "convnet" or spec.f in shared.patch_sizes):
            return shared
        # made here, saved, and dropped: this process keeps no copy of its own
        split = make_split(self.dataset, spec.n_train, spec.n_val, np.dtype(spec.dtype))
        if shared is None:
            for name in SPLIT_FIELDS:
                np.save(self.folder / f"{key}.{name}.npy", getattr(split, name))
            shared = SharedSplit(str(self.folder), key, split.num_classes)
        if spec.model == "convnet" and spec.f not in shared.patch_sizes:
            try:
                net = build_network(spec, split.x_train.shape[1:], split.num_classes,
                                    np.random.default_rng(0))
            except ValueError:
                self.shared[key] = shared
                return shared  # the worker reports the error as a failed trial
            for name in ("x_train", "x_val", "x_test"):
                np.save(self.folder / f"{key}.f{spec.f}.{name}.npy",
                        net.prepare(getattr(split, name)))
            shared = SharedSplit(shared.folder, key, shared.num_classes,
                                 (*shared.patch_sizes, spec.f))
        self.shared[key] = shared
        return shared

    def close(self) -> None:
        if self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)


def _remove_orphans(base: Path) -> None:
    """Remove shared-data folders left by sweep processes that were killed."""
    for folder in base.glob("numsweep-*-*"):
        try:
            pid = int(folder.name.split("-")[1])
            os.kill(pid, 0)
        except ValueError:
            continue
        except ProcessLookupError:
            shutil.rmtree(folder, ignore_errors=True)
        except PermissionError:
            continue  # another user's live process


class InlineExecutor:
    """Runs each task at once in this process: ``--jobs 1`` needs no worker processes."""

    def submit(self, fn: Callable[..., Any], *args: Any) -> Future[Any]:
        future: Future[Any] = Future()
        future.set_result(fn(*args))
        return future

    def shutdown(self, wait: bool = True, **_kwargs: Any) -> None:
        pass


BACKENDS = ("loky", "dask")


class BackendError(StorageError):
    """The parallel backend cannot be used (not installed, scheduler unreachable)."""


def make_executor(jobs: int, backend: str = "loky", scheduler: str | None = None,
                  timeout: float = 20.0) -> Any:
    """A ``concurrent.futures`` executor: this process (``jobs`` 1), joblib's loky worker
    processes, or a Dask cluster's workers (through its client's executor)."""
    if backend == "dask":
        return DaskExecutor(scheduler, timeout)
    if backend != "loky":
        raise BackendError(f"unknown backend {backend!r} (use {' or '.join(BACKENDS)})")
    if jobs == 1:
        return InlineExecutor()
    return get_reusable_executor(max_workers=jobs, timeout=60)


class DaskExecutor:
    """Trials on a Dask cluster: ``distributed.Client(scheduler).get_executor()``.

    joblib's own Dask backend (``joblib.parallel_config(backend="dask")``) runs a whole
    ``Parallel`` call at once; a sweep proposes one trial at a time from the results so far,
    so it submits through the same client's ``concurrent.futures`` executor instead."""

    def __init__(self, scheduler: str | None, timeout: float) -> None:
        if not scheduler:
            raise BackendError("--backend dask needs --scheduler ADDRESS (such as "
                               "tcp://10.0.0.5:8786)")
        try:
            from distributed import Client
        except ImportError:
            raise BackendError("--backend dask needs dask.distributed "
                               "(pip install 'numsweep[dask]')") from None
        try:
            with _quiet():
                self.client = Client(scheduler, timeout=timeout, set_as_default=False)
        except (OSError, TimeoutError) as exc:
            raise BackendError(f"cannot reach the Dask scheduler at {scheduler}: "
                               f"{_first_line(exc)}") from None
        self.executor = self.client.get_executor(pure=False)

    def threads(self) -> int:
        return max(1, sum(self.client.nthreads().values()))

    def submit(self, fn: Callable[..., Any], *args: Any) -> Future[Any]:
        return self.executor.submit(fn, *args)  # type: ignore[no-any-return]

    def shutdown(self, wait: bool = True, **_kwargs: Any) -> None:
        try:
            self.executor.shutdown(wait=wait)
        finally:
            self.client.close()


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def default_threads(jobs: int) -> int:
    """BLAS threads per trial: 1, whatever ``jobs`` is, so that ``jobs`` (at most the number
    of cores) trials never oversubscribe the cores and a trial's floating-point results do not
    depend on ``--jobs`` (a BLAS may sum in another order with another thread count)."""
    return 1


@contextmanager
def _quiet() -> Iterator[None]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


# Durability: heartbeats, lost trials, interruptions

DEFAULT_GRACE = 60.0
"""Seconds without a heartbeat after which a RUNNING trial is taken for lost (its process was
killed or its machine went away) and runs again."""
POLL_SECONDS = 0.5
"""How often a process waiting on trials that other processes run looks at the database."""


class SweepInterrupted(Exception):
    """Ctrl-C (SIGINT) or SIGTERM stopped the sweep: the running trials are marked
    INTERRUPTED, the finished ones stay; ``numsweep sweep resume`` continues."""

    def __init__(self, sweep: str, interrupted: int, finished: int) -> None:
        self.sweep = sweep
        self.interrupted = interrupted
        self.finished = finished
        super().__init__(f"sweep {sweep!r} interrupted: {interrupted} running trials marked "
                         f"interrupted, {finished} finished trials kept")


class Heartbeat:
    """A daemon thread that stamps ``heartbeat_at`` of this process's running trials every
    ``interval`` seconds, so other processes can tell them from trials of a dead process."""

    def __init__(self, storage: Storage, interval: float) -> None:
        self.storage = storage
        self.interval = interval
        self.ids: set[int] = set()
        self.lock = threading.Lock()
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._beat, name="numsweep-heartbeat",
                                       daemon=True)

    def start(self) -> None:
        self.thread.start()

    def add(self, trial_id: int) -> None:
        with self.lock:
            self.ids.add(trial_id)

    def remove(self, trial_id: int) -> None:
        with self.lock:
            self.ids.discard(trial_id)

    def stop(self) -> None:
        self.stopped.set()

    def _beat(self) -> None:
        while not self.stopped.wait(self.interval):
            with self.lock:
                ids = sorted(self.ids)
            # a busy database: the next beat tries again, well within the grace
            with suppress(StorageError):
                self.storage.heartbeat(ids)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _gone(worker: str) -> bool:
    """Whether ``worker`` (``host:pid``) was a process on this machine that no longer exists."""
    host, _, pid = worker.rpartition(":")
    return (host == socket.gethostname() and pid.isdigit() and int(pid) != os.getpid()
            and not _pid_alive(int(pid)))


def is_lost(slot: SlotRecord, grace: float, now: datetime) -> bool:
    """Whether a RUNNING attempt's process is gone: no heartbeat for ``grace`` seconds, or it
    was started on this machine by a process that no longer exists."""
    if slot.state is not TrialState.RUNNING:
        return False
    if _gone(slot.worker):
        return True
    return slot.heartbeat_at is None or (now - slot.heartbeat_at).total_seconds() > grace


def _utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


# One stage as stored in the database, so that every process runs the same plan

@dataclass(frozen=True)
class _Plan:
    stage_id: int
    space: dict[str, ParamSpace]
    fixed: dict[str, Any]
    queue: list[dict[str, Any]]
    reused: list[TrialRecord]
    n_configs: int
    note: str


@dataclass
class _Running:
    stage: str
    config: int
    slot: int
    trial_id: int
    number: int
    study_trial: int | None
    started: float
    estimate: float | None
    attempt: int = 0


def _latest(slots: Sequence[SlotRecord]) -> dict[int, SlotRecord]:
    """The latest attempt of each slot (attempts come in order)."""
    return {s.slot: s for s in slots}


def _final(slot: SlotRecord | None) -> bool:
    return slot is not None and slot.state.is_finished()


class SweepRunner:
    """Runs the stages of one sweep in this process, alone or beside other processes (``sweep
    resume``, ``worker``) on the same database; see :func:`run_sweep`.

    Every planned trial of a stage is a slot (``config * replicates + replicate``). A process
    claims a slot by inserting its RUNNING row: the unique (stage, slot, attempt) index lets
    one process win. A slot whose latest attempt was interrupted, or whose process is gone
    (see :func:`is_lost`), is claimed again as the next attempt. A stage's plan (space,
    configurations, reused trials) is stored by the first process that reaches it; the others
    read it, and a process leaves a stage only when each of its slots is final, helping to
    finish the stage or waiting for the trials that other processes run.
    """

    def __init__(self, spec: SweepSpec, storage: Storage, *, data_source: str | None,
                 jobs: int | None, threads: int | None, on_event: EventHandler | None,
                 estimate: Estimator | None, deadline: float | None, resume: bool = False,
                 backend: str = "loky", scheduler: str | None = None,
                 grace: float = DEFAULT_GRACE) -> None:
        if jobs is not None and jobs < 1:
            raise ValueError(f"--jobs must be at least 1, got {jobs}")
        if jobs is None and backend != "dask":
            raise ValueError("--jobs is needed unless the backend is dask")
        if grace <= 0:
            raise ValueError(f"--grace must be positive, got {grace}")
        self.spec = spec
        self.storage = storage
        self.data_source = data_source
        self.jobs = jobs or 1
        self.auto_jobs = jobs is None  # dask: as many as the cluster has threads
        self.threads = threads if threads is not None else default_threads(self.jobs)
        self.notify = on_event or (lambda _event: None)
        self.estimate = estimate
        self.deadline = deadline
        self.resume = resume
        self.backend = backend
        self.scheduler = scheduler
        self.grace = grace
        self.name = worker_name()
        self.reused: dict[str, list[TrialRecord]] = {}
        self.spaces: dict[str, dict[str, ParamSpace]] = {}
        self.running: dict[Future[TrialOutcome], _Running] = {}
        self.inline: _Running | None = None
        self.finished = 0

    def run(self) -> list[StageSummary]:
        spec, storage = self.spec, self.storage
        existing = [s for s in storage.list_sweeps() if s.name == spec.name]
        if not self.resume and existing and storage.count_trials(existing[0].id):
            raise SweepSpecError(
                f"sweep {spec.name!r} already has {storage.count_trials(existing[0].id)} trials "
                f"in {storage.shown_url}; continue it with `numsweep sweep resume {spec.name}` or "
                f"run it under another name (name=NEW)")
        if not self.resume and existing and existing[0].spec != self._stored():
            storage.set_sweep_spec(existing[0].id, self._stored())  # created, never run
        self.pool = make_executor(self.jobs, self.backend, self.scheduler)
        if self.auto_jobs and isinstance(self.pool, DaskExecutor):
            self.jobs = self.pool.threads()
        data = DataShare(self.data_source, self.jobs if self.backend == "loky" else 1)
        self.heart = Heartbeat(storage, min(10.0, self.grace / 4))
        try:
            check_against_images(spec, data.dataset.image_shape, len(data.dataset.classes))
            check_data_sizes(spec, data.dataset)  # issue 18 hook
            self.ostorage = optuna_storage(storage.engine_url)
            self.sweep = storage.get_or_create_sweep(spec.name, self._stored(), spec.seed)
            check_sweep_data(storage, self.sweep, data.dataset, self.data_source)  # issue 18
            self.data = data
            self.heart.start()
            return [self._run_stage(i, stage) for i, stage in enumerate(spec.stages)]
        except KeyboardInterrupt:
            ids = [job.trial_id for job in self.running.values()]
            ids += [self.inline.trial_id] if self.inline is not None else []
            self.pool.shutdown(wait=False, kill_workers=True)
            sweep = getattr(self, "sweep", None)
            count = mark_interrupted(  # issue 18 hook (was storage.interrupt_trials)
                storage, self.heart,
                ids, f"interrupted (Ctrl-C or SIGTERM) in {self.name}; `numsweep sweep resume "
                     f"{spec.name}` runs it again",
                sweep_id=sweep.id if sweep is not None else None, worker=self.name)
            raise SweepInterrupted(spec.name, count, self.finished) from None
        finally:
            self.heart.stop()
            if self.backend == "dask":
                self.pool.shutdown(wait=False)
            data.close()

    def _sampler_seed(self, index: int) -> int:
        """The seed of the stage's sampler: the sweep's own for ``sweep run``; for each
        resume or worker process another one (drawn from the sweep seed and the process's
        host and pid), so that processes sharing a stage do not propose the same values."""
        if not self.resume:
            return trial_seed(self.spec.seed, index, 2**31 - 1)
        return trial_seed(self.spec.seed, index, 2**31 - 1, zlib.crc32(self.name.encode()))

    def _stored(self) -> dict[str, Any]:
        return {**self.spec.to_dict(), "data": self.data_source, "threads": self.threads}

    # Stage set-up

    def _source_trials(self, names: Sequence[str]) -> list[TrialRecord]:
        out: list[TrialRecord] = []
        for name in names:
            out += self.storage.get_trials(self.spec.name, stage=name,
                                           states=[TrialState.COMPLETE])
            out += self.reused.get(name, [])
        unique = {t.id: t for t in out}
        return [t for _, t in sorted(unique.items())
                if math.isfinite(t.metrics.get("val_acc", math.nan))]

    def _space_for(self, stage: StageSpec) -> tuple[dict[str, ParamSpace], str]:
        space = dict(self.spec.space)
        if stage.narrow is None:
            return space, ""
        source = stage.narrow.source
        trials = self._source_trials([source])
        ranked = sorted(trials, key=lambda t: -t.metrics["val_acc"])[: stage.narrow.top_k]
        return narrow_space(space, [t.params for t in ranked], self.spaces[source],
                            stage.narrow.widen, source)

    def _best_config(self, stage: StageSpec, index: int) -> tuple[dict[str, Any], str]:
        sources = list(stage.source) or [s.name for s in self.spec.stages[:index]]
        trials = self._source_trials(sources)
        if not trials:
            raise SweepSpecError(f"{self.spec.origin}: stages.{stage.name}: no complete trial in "
                                 f"{', '.join(sources)} to take the best configuration from")
        names = [n for p in self.spec.space.values() for n in p.names]
        groups: dict[str, list[TrialRecord]] = {}
        for t in trials:
            key = json.dumps({n: t.params.get(n) for n in names}, sort_keys=True)
            groups.setdefault(key, []).append(t)
        key, best = max(groups.items(), key=lambda kv: (
            float(np.mean([t.metrics["val_acc"] for t in kv[1]])), -min(t.id for t in kv[1])))
        mean = float(np.mean([t.metrics["val_acc"] for t in best]))
        params = json.loads(key)
        shown = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                          for k, v in params.items())
        seeds = f" (mean of {len(best)} seeds)" if len(best) > 1 else ""
        note = (f"best of {', '.join(sources)}: trial {min(t.id for t in best)} val_acc "
                f"{mean:.4f}{seeds} with {shown}; retrained with "
                f"{', '.join(f'{k}={v}' for k, v in stage.fixed.items()) or 'the same settings'}")
        return {k: v for k, v in params.items() if k not in stage.fixed}, note

    def _reusable(self, stage: StageSpec, space: Mapping[str, ParamSpace],
                  fixed: Mapping[str, Any]) -> list[TrialRecord]:
        if stage.narrow is None or not stage.reuse or stage.replicates > 1 \
                or stage.sampler in ("list", "best"):
            return []
        source = next(s for s in self.spec.stages if s.name == stage.narrow.source)
        if self.spec.stage_fixed(source) != dict(fixed):
            return []
        trials = self._source_trials([source.name])
        return [t for t in trials if inside(space, t.params, fixed)]

    def _store_plan(self, index: int, stage: StageSpec) -> StageRecord:
        """Work out the stage's plan (every earlier stage is finished) and store it; when
        another process stored one first, that one is returned."""
        fixed = self.spec.stage_fixed(stage)
        space, note = self._space_for(stage)
        queue: list[dict[str, Any]] = [dict(c) for c in stage.configs]
        if stage.sampler == "best":
            best, note = self._best_config(stage, index)
            queue = [best]
            space = {k: p for k, p in space.items() if not set(p.names) & set(stage.fixed)}
        reused = self._reusable(stage, space, fixed)
        if stage.sampler == "grid":
            points = grid_points(space, fixed)
            done = [json.dumps(entry_values(space, t.params, fixed), sort_keys=True)
                    for t in reused]
            keys = [json.dumps(entry_values(space, p, fixed), sort_keys=True) for p in points]
            reused = [t for t, k in zip(reused, done, strict=True) if k in keys]
            taken = {json.dumps(entry_values(space, t.params, fixed), sort_keys=True)
                     for t in reused}
            listed = {json.dumps(entry_values(space, c, fixed), sort_keys=True) for c in queue}
            queue += [p for p, k in zip(points, keys, strict=True)
                      if k not in taken and k not in listed]
            total = len(queue) + len(reused)
            total = total if stage.n_trials is None else min(total, stage.n_trials)
            queue = queue[: max(0, total - len(reused))]
        elif stage.sampler not in ("list", "best"):
            assert stage.n_trials is not None
            reused = reused[: stage.n_trials]
        n_configs = (len(queue) if stage.sampler in ("grid", "list", "best")
                     else max(0, (stage.n_trials or 0) - len(reused)))
        if reused:
            note = (note + "; " if note else "") + (
                f"reuses {len(reused)} trials of {stage.narrow.source if stage.narrow else ''} "
                f"inside the narrowed range (ids {', '.join(str(t.id) for t in reused)})")
        return self.storage.get_or_create_stage(
            self.sweep.id, index, stage.name, stage.sampler,
            {"space": {k: p.to_dict() for k, p in space.items()}, "fixed": dict(stage.fixed),
             "planned": n_configs * stage.replicates, "reused": [t.id for t in reused],
             "configs": queue, "n_configs": n_configs,
             # the process that stores the plan adds the reused trials to the study
             "setup_by": self.name, "study_ready": not reused}, note)

    def _plan(self, index: int, stage: StageSpec) -> _Plan:
        """The stage's plan as stored (by this process or the first one to reach it)."""
        rec = self.storage.get_stage(self.sweep.id, index)
        if rec is None:
            rec = self._store_plan(index, stage)
        if rec.name != stage.name or "n_configs" not in rec.space:
            raise SweepSpecError(f"stage {index} of sweep {self.spec.name!r} in "
                                 f"{self.storage.shown_url} is {rec.name!r}, stored by another "
                                 f"spec or an older numsweep: it cannot be continued")
        space = {name: _space_from_dict(name, d) for name, d in rec.space["space"].items()}
        ids = [int(i) for i in rec.space.get("reused", [])]
        reused = self.storage.get_trials(trial_ids=ids) if ids else []
        self.spaces[stage.name] = space
        self.reused[stage.name] = reused
        return _Plan(rec.id, space, self.spec.stage_fixed(stage),
                     [dict(c) for c in rec.space.get("configs", [])], reused,
                     int(rec.space["n_configs"]), rec.note)

    def _study(self, index: int, stage: StageSpec, plan: _Plan) -> optuna.Study:
        """The stage's Optuna study (created by the first process), with the reused trials."""

        def load() -> optuna.Study:
            with _quiet():
                study = optuna.create_study(
                    storage=self.ostorage, study_name=study_name(self.spec.name, stage.name),
                    direction="maximize", load_if_exists=True,
                    sampler=make_sampler(stage.sampler, self._sampler_seed(index)),
                    pruner=make_pruner(stage.pruner))
            if plan.reused and not self._study_ready(index):
                add_reused(study)
                rec = self.storage.get_stage(self.sweep.id, index)
                assert rec is not None
                self.storage.merge_stage_space(rec.id, {"study_ready": True})  # issue 18
            return study

        def add_reused(study: optuna.Study) -> None:
            with _quiet():
                have = {t.user_attrs.get("ns_trial_id") for t in study.get_trials(deepcopy=False)}
                distributions = {k: distribution(p) for k, p in plan.space.items()}
                for t in plan.reused:
                    if t.id in have:
                        continue
                    values = entry_values(plan.space, t.params, plan.fixed)
                    for k, v in values.items():  # inside up to rounding: clip for Optuna's check
                        if plan.space[k].numeric:
                            values[k] = min(max(v, plan.space[k].low), plan.space[k].high)
                    study.add_trial(optuna.trial.create_trial(
                        params=values, distributions={k: distributions[k] for k in values},
                        value=t.metrics["val_acc"], user_attrs={"ns_trial_id": t.id}))

        return _optuna_retry(load)

    def _study_ready(self, index: int) -> bool:
        """False when this process is to add the stage's reused trials to the study: it
        stored the plan, or the process that did is gone or silent for ``grace`` seconds;
        True once they are there (waiting for the process adding them)."""
        give_up = time.monotonic() + self.grace
        while True:
            rec = self.storage.get_stage(self.sweep.id, index)
            assert rec is not None
            if rec.space.get("study_ready", True):
                return True
            owner = str(rec.space.get("setup_by", ""))
            if owner == self.name or _gone(owner) or time.monotonic() > give_up:
                return False
            time.sleep(POLL_SECONDS / 5)

    # Running

    def _run_stage(self, index: int, stage: StageSpec) -> StageSummary:
        plan = self._plan(index, stage)
        reps = stage.replicates
        slots = _latest(self.storage.stage_slots(plan.stage_id))
        self.notify(TrialEvent("stage", stage.name, planned=plan.n_configs * reps,
                               reused=len(plan.reused), message=plan.note,
                               counts=_counts(slots.values())))
        study = self._study(index, stage, plan)
        lagged = stage.sampler in HISTORY_SAMPLERS or stage.pruner != "none"
        stage_deadline = (time.monotonic() + stage.time_budget if stage.time_budget else None)
        # the sweep's budget never skips a final ``best`` stage: it is what the sweep is for
        sweep_deadline = None if stage.sampler == "best" else self.deadline
        deadlines = [d for d in (stage_deadline, sweep_deadline) if d is not None]
        deadline = min(deadlines) if deadlines else None
        told = 0  # configurations [0, told) are told to the study, in order

        while True:
            n_configs = self._n_configs(plan, index)
            slots = _latest(self.storage.stage_slots(plan.stage_id))
            proposed = max(slots) // reps + 1 if slots else 0
            if not lagged or proposed >= n_configs:
                told = self._tell_ready(study, reps, slots, told, proposed)
            while len(self.running) < self.jobs:
                lost = self._lost_slot(slots)
                if lost is not None:
                    if not self._run_again(study, stage, plan, lost):
                        break  # alive after all, or taken: look again after a pause
                elif proposed >= n_configs:
                    break
                elif deadline is not None and time.monotonic() > deadline and proposed:
                    n_configs = self._cut(plan, index, stage, proposed)
                    break
                else:
                    k = proposed
                    if lagged:
                        told = self._tell_ready(study, reps, slots, told, k - stage.sync + 1)
                        if told < k - stage.sync + 1:
                            break  # waits for the results of configuration k - sync
                    self._new_config(study, index, stage, plan, k)
                slots = _latest(self.storage.stage_slots(plan.stage_id))
                proposed = max(slots) // reps + 1 if slots else 0
            if self.running:
                done, _ = wait(list(self.running), timeout=5.0, return_when=FIRST_COMPLETED)
                for future in sorted(done, key=lambda f: self.running[f].number):
                    self._finish(future, study, stage)
                continue
            if proposed >= n_configs and all(_final(slots.get(s))
                                             for s in range(proposed * reps)):
                self._tell_ready(study, reps, slots, told, proposed)
                break
            time.sleep(POLL_SECONDS)  # other processes run this stage's last trials
        return self._summary(stage, plan, slots)

    def _n_configs(self, plan: _Plan, index: int) -> int:
        """The stage's planned configurations (fewer once a time budget cut the stage)."""
        rec = self.storage.get_stage(self.sweep.id, index)
        return plan.n_configs if rec is None else int(rec.space.get("n_configs",
                                                                    plan.n_configs))

    def _cut(self, plan: _Plan, index: int, stage: StageSpec, proposed: int) -> int:
        """The time budget is used up: the stage keeps the configurations proposed so far."""
        rec = self.storage.get_stage(self.sweep.id, index)
        assert rec is not None
        left = (int(rec.space["n_configs"]) - proposed) * stage.replicates
        if left > 0:  # issue 18: one atomic update (was set_stage_space + set_stage_note)
            self.storage.merge_stage_space(
                rec.id, {"n_configs": proposed, "planned": proposed * stage.replicates},
                note=f"time budget used up: {left} planned trials not run")
        return proposed

    def _lost_slot(self, slots: Mapping[int, SlotRecord]) -> SlotRecord | None:
        """The first slot to run again: interrupted, or left RUNNING by a process that is
        gone."""
        mine = {job.trial_id for job in self.running.values()}
        now = _utcnow()
        for slot in slots.values():
            if slot.state is TrialState.INTERRUPTED or (
                    slot.trial_id not in mine and is_lost(slot, self.grace, now)):
                return slot
        return None

    def _run_again(self, study: optuna.Study, stage: StageSpec, plan: _Plan,
                   old: SlotRecord) -> bool:
        seen = "never" if old.heartbeat_at is None else f"{old.heartbeat_at:%H:%M:%S} UTC"
        claimed = self.storage.claim_again(
            old.trial_id, worker=self.name, seen_heartbeat=old.heartbeat_at,
            lost_message=f"lost: no heartbeat from {old.worker} since {seen} (its process is "
                         f"gone); runs again as attempt {old.attempt + 1}")
        if claimed is None:
            return False
        trial_id, number = claimed
        [record] = self.storage.get_trials(trial_ids=[trial_id])
        trial_spec = TrialSpec.from_mapping(record.params)
        snapshot = self._snapshot(study, stage, old.study_trial)
        self._submit(stage, _Running(stage.name, old.slot // stage.replicates, old.slot,
                                     trial_id, number, old.study_trial, time.monotonic(), None,
                                     old.attempt + 1), trial_spec, snapshot)
        return True

    def _new_config(self, study: optuna.Study, index: int, stage: StageSpec, plan: _Plan,
                    k: int) -> bool:
        """Propose configuration ``k`` and claim its slots; False when another process
        claimed them first (the Optuna trial is then failed, marked unused)."""

        def ask() -> tuple[optuna.Trial, dict[str, Any]]:
            with _quiet():
                if k < len(plan.queue):
                    trial = _queued_trial(study, entry_values(plan.space, plan.queue[k],
                                                              plan.fixed))
                else:
                    trial = study.ask()
                return trial, suggest(trial, plan.space, plan.fixed)

        trial, params = _optuna_retry(ask)
        if k < len(plan.queue):
            params = {**plan.queue[k], **params}
        specs = []
        for r in range(stage.replicates):
            slot = k * stage.replicates + r
            seed = trial_seed(self.spec.seed, index, slot)
            specs.append((slot, TrialSpec.from_mapping({**plan.fixed, **params, "seed": seed})))
        claimed = self.storage.claim_slots(
            self.sweep.id, plan.stage_id, [(slot, s.to_dict(), s.seed) for slot, s in specs],
            study_trial=trial.number, worker=self.name)
        if claimed is None:
            def unused() -> None:
                with _quiet():
                    trial.set_user_attr("ns_unused", "another process proposed this "
                                                     "configuration first")
                    study.tell(trial, state=optuna.trial.TrialState.FAIL)
            _optuna_retry(unused)
            return False
        snapshot = self._snapshot(study, stage, trial.number)
        for (slot, trial_spec), (trial_id, number) in zip(specs, claimed, strict=True):
            self._submit(stage, _Running(stage.name, k, slot, trial_id, number, trial.number,
                                         time.monotonic(), None, 0), trial_spec, snapshot)
        return True

    def _snapshot(self, study: optuna.Study, stage: StageSpec,
                  number: int | None) -> PruneSnapshot | None:
        """The study's trials before Optuna trial ``number``, for pruning in the worker."""
        if stage.pruner == "none" or number is None:
            return None
        trials = _optuna_retry(lambda: study.get_trials(deepcopy=True))
        return PruneSnapshot(stage.pruner, study.study_name,
                             tuple(t for t in trials if t.number < number), number)

    def _submit(self, stage: StageSpec, job: _Running, trial_spec: TrialSpec,
                snapshot: PruneSnapshot | None) -> None:
        job.estimate = self.estimate(trial_spec) if self.estimate else None
        self.notify(TrialEvent("started", stage.name, job.number, estimate=job.estimate))
        shared = self.data.shared_for(trial_spec) if self.backend == "loky" else None
        watch_worker_deaths(shared)  # issue 18 hook
        task = TrialTask(job.trial_id, trial_spec, self.data_source, self.threads, shared,
                         snapshot)
        self.heart.add(job.trial_id)
        self.inline = job  # Ctrl-C while --jobs 1 runs the trial in this process
        job.started = time.monotonic()
        try:
            future = self.pool.submit(execute_announced, task)  # issue 18 hook (was execute)
        except BrokenExecutor:  # a loky worker died: its trials fail in _finish; a new pool
            self.pool = make_executor(self.jobs, self.backend, self.scheduler)
            future = self.pool.submit(execute_announced, task)  # issue 18 hook
        self.inline = None
        self.running[future] = job

    def _finish(self, future: Future[TrialOutcome], study: optuna.Study,
                stage: StageSpec) -> None:
        job = self.running.pop(future)
        try:
            outcome = future.result()
        except Exception as exc:  # the worker process died (killed, out of memory, ...)
            if self.backend == "loky":
                self.pool = make_executor(self.jobs, self.backend)  # a fresh pool
            verdict = judge_worker_loss(self.storage, job.trial_id, exc,  # issue 18 hook
                                        self.data.folder, MAX_LOST_ATTEMPTS)
            if not verdict.fail:
                self.storage.interrupt_trials([job.trial_id], verdict.message)
                self.heart.remove(job.trial_id)
                self.notify(TrialEvent("finished", stage.name, job.number,
                                       TrialState.INTERRUPTED, message=verdict.short))
                return
            outcome = TrialOutcome(job.trial_id, None, error=verdict.message,
                                   traceback=traceback.format_exc(), worker=self.name)
        state = _record(self.storage, outcome)
        self.heart.remove(job.trial_id)
        if state is None:
            self.notify(TrialEvent("finished", stage.name, job.number, TrialState.INTERRUPTED,
                                   message="taken for lost meanwhile: result not kept",
                                   seconds=time.monotonic() - job.started))
            return
        self.finished += 1
        if stage.replicates == 1 and job.study_trial is not None \
                and (outcome.reports or outcome.system_attrs):
            _optuna_retry(lambda: _keep_reports(study, job.study_trial, outcome))
        val = outcome.result.val_acc if outcome.result else None
        message = outcome.error or (outcome.result.message if outcome.result else "")
        self.notify(TrialEvent("finished", stage.name, job.number, state, val, message,
                               estimate=job.estimate, seconds=time.monotonic() - job.started))

    def _tell_ready(self, study: optuna.Study, reps: int, slots: Mapping[int, SlotRecord],
                    told: int, limit: int) -> int:
        """Tell the study, in order, configurations ``told`` .. ``limit - 1`` whose trials
        are all final (whichever process ran them); returns the new ``told``."""
        while told < limit:
            records = [slots.get(told * reps + r) for r in range(reps)]
            if not all(_final(s) for s in records):
                break
            final = [s for s in records if s is not None]
            _optuna_retry(lambda final=final: _tell(study, final))  # type: ignore[misc]
            told += 1
        return told

    def _summary(self, stage: StageSpec, plan: _Plan,
                 slots: Mapping[int, SlotRecord]) -> StageSummary:
        trials = self._source_trials([stage.name])
        best = max(trials, key=lambda t: (t.metrics["val_acc"], -t.id), default=None)
        names = [n for p in self.spec.space.values() for n in p.names]
        params = {n: best.params[n] for n in names if n in best.params} if best else None
        rec = self.storage.get_stage(self.sweep.id, self.spec.stages.index(stage))
        note = rec.note if rec is not None else plan.note
        planned = self._n_configs(plan, self.spec.stages.index(stage)) * stage.replicates
        return StageSummary(
            stage.name, planned, _counts(slots.values()),
            best.metrics["val_acc"] if best else None, params, sampler=stage.sampler,
            note=note, reused=len(plan.reused),
            best_test_acc=best.metrics.get("test_acc") if best else None,
            best_trial=best.id if best else None)


MAX_LOST_ATTEMPTS = 3
"""A trial whose worker process dies this many times (it may be what kills it) is failed."""


def _counts(slots: Iterable[SlotRecord]) -> dict[str, int]:
    """Planned trials by the state of their latest attempt (the attempt that counts)."""
    out: dict[str, int] = {}
    for s in slots:
        out[s.state.value] = out.get(s.state.value, 0) + 1
    return out


def _space_from_dict(name: str, raw: Mapping[str, Any]) -> ParamSpace:
    """A search entry as a stage stores it (:meth:`ParamSpace.to_dict`)."""

    def plain(value: Any) -> Any:
        return tuple(plain(v) for v in value) if isinstance(value, list) else value

    return ParamSpace(name, raw["type"], low=raw.get("low"), high=raw.get("high"),
                      log=bool(raw.get("log", False)), grid=raw.get("grid"),
                      choices=tuple(plain(c) for c in raw.get("choices", ())),
                      when={k: tuple(plain(v) for v in vs)
                            for k, vs in raw.get("when", {}).items()})


def _queued_trial(study: optuna.Study, values: Mapping[str, Any]) -> optuna.Trial:
    """A new RUNNING trial with these parameter values fixed (what ``enqueue_trial`` then
    ``ask`` give, except that no other process can take the queued trial in between)."""
    template = optuna.trial.create_trial(state=optuna.trial.TrialState.RUNNING,
                                         system_attrs={"fixed_params": dict(values)})
    trial_id = study._storage.create_new_trial(study._study_id, template_trial=template)
    study._thread_local.cached_all_trials = None
    return optuna.Trial(study, trial_id)


def _optuna_trial_id(study: optuna.Study, number: int) -> int:
    return study._storage.get_trial_id_from_study_id_trial_number(study._study_id, number)


def _keep_reports(study: optuna.Study, number: int, outcome: TrialOutcome) -> None:
    """Keep a trial's end-of-cycle reports (and its pruner's attributes) in its Optuna trial
    until the study is told, in order, by whichever process gets there."""
    storage = study._storage
    trial_id = _optuna_trial_id(study, number)
    attrs = {k: v for k, v in outcome.system_attrs.items() if not k.startswith("fixed_params")}
    try:
        storage.set_trial_user_attr(trial_id, "ns_reports", [list(r) for r in outcome.reports])
        storage.set_trial_user_attr(trial_id, "ns_system_attrs", attrs)
    except optuna.exceptions.UpdateFinishedTrialError:
        pass


def _tell(study: optuna.Study, records: Sequence[SlotRecord]) -> None:
    """Tell the study how a configuration's trials ended (mean val_acc of the complete ones)."""
    number = records[0].study_trial
    if number is None:
        return
    storage = study._storage
    trial_id = _optuna_trial_id(study, number)
    frozen = storage.get_trial(trial_id)
    if frozen.state.is_finished():
        return  # another process told it
    complete = [s.val_acc for s in records
                if s.state is TrialState.COMPLETE and s.val_acc is not None]
    states = {s.state for s in records}
    try:
        with _quiet():
            storage.set_trial_user_attr(trial_id, "ns_trial_ids", [s.trial_id for s in records])
            if len(records) == 1:
                for step, value in frozen.user_attrs.get("ns_reports", []):
                    storage.set_trial_intermediate_value(trial_id, int(step), float(value))
                for key, value in frozen.user_attrs.get("ns_system_attrs", {}).items():
                    storage.set_trial_system_attr(trial_id, key, value)
            if complete:
                study.tell(number, float(np.mean(complete)), skip_if_finished=True)
            elif TrialState.PRUNED in states:
                study.tell(number, state=optuna.trial.TrialState.PRUNED, skip_if_finished=True)
            else:
                study.tell(number, state=optuna.trial.TrialState.FAIL, skip_if_finished=True)
    except optuna.exceptions.UpdateFinishedTrialError:
        pass  # another process told it meanwhile


T = TypeVar("T")


def _optuna_retry(fn: Callable[[], T]) -> T:
    """Call ``fn`` (Optuna calls on the RDB storage) again after a growing pause when the
    database was locked or a deadlock was lost."""
    pause = 0.05
    give_up = time.monotonic() + 120.0
    while True:
        try:
            return fn()
        except Exception as exc:
            chain = [exc, exc.__cause__, exc.__context__]
            text = " ".join(str(e).lower() for e in chain if e is not None)
            locked = any(m in text for m in ("database is locked", "deadlock detected",
                                             "could not serialize access"))
            if not locked or time.monotonic() > give_up:
                raise
            time.sleep(pause * (0.5 + _JITTER.random()))
            pause = min(pause * 2, 1.0)


_JITTER = random.Random()  # pauses between retries only; never results


def run_sweep(spec: SweepSpec, storage: Storage, *, data_source: str | None,
              jobs: int | None = 1,
              threads: int | None = None, on_event: EventHandler | None = None,
              estimate: Estimator | None = None, time_budget: float | None = None,
              backend: str = "loky", scheduler: str | None = None,
              grace: float = DEFAULT_GRACE) -> list[StageSummary]:
    """Run every stage of ``spec`` in order and store every trial; returns a summary per stage.

    ``threads`` is the BLAS thread count per trial (default 1); ``estimate``
    gives the planner's seconds for a trial (shown against the measured time);
    ``time_budget`` (seconds) stops proposing new trials once it is used up. ``backend`` is
    ``loky`` (``jobs`` worker processes on this machine) or ``dask`` (the cluster whose
    scheduler is at ``scheduler``). Other processes may join with :func:`resume_sweep`.
    Raises :class:`SweepInterrupted` on Ctrl-C.
    """
    deadline = time.monotonic() + time_budget if time_budget else None
    return SweepRunner(spec, storage, data_source=data_source, jobs=jobs, threads=threads,
                       on_event=on_event, estimate=estimate, deadline=deadline,
                       backend=backend, scheduler=scheduler, grace=grace).run()


def create_sweep(spec: SweepSpec, storage: Storage, *, data_source: str | None,
                 threads: int | None = None) -> SweepRecord:
    """Store a sweep without running it, for :func:`resume_sweep` (``numsweep worker``)
    processes to run."""
    if any(s.name == spec.name for s in storage.list_sweeps()):
        raise SweepSpecError(f"sweep {spec.name!r} already exists in {storage.shown_url}; continue "
                             f"it with `numsweep worker {spec.name}` or use another name "
                             f"(name=NEW)")
    optuna_storage(storage.engine_url)  # Optuna's tables, before workers race to make them
    return storage.get_or_create_sweep(
        spec.name, {**spec.to_dict(), "data": data_source,
                    "threads": threads if threads is not None else default_threads(1)},
        spec.seed, data_fingerprint=fingerprint_of(data_source))  # issue 18 hook


def stored_spec(storage: Storage, name: str) -> tuple[SweepSpec, str | None, int | None]:
    """A sweep's spec as stored in the database, with the data path and BLAS threads it was
    started with."""
    record = storage.get_sweep(name)
    raw = dict(record.spec)
    if raw.get("single"):
        raise SweepSpecError(f"{name!r} holds single trials (numsweep train), not a sweep")
    data = raw.pop("data", None)
    threads = raw.pop("threads", None)
    return parse_spec(raw, f"sweep {name!r} in {storage.shown_url}"), data, threads


def resume_sweep(name: str, storage: Storage, *, data_source: str | None = None,
                 jobs: int | None = 1, threads: int | None = None,
                 on_event: EventHandler | None = None, estimate: Estimator | None = None,
                 backend: str = "loky", scheduler: str | None = None,
                 grace: float = DEFAULT_GRACE) -> list[StageSummary]:
    """Continue sweep ``name`` from the spec stored in the database, beside any other
    processes working on it: run what is left, again what was interrupted or lost (no
    heartbeat for ``grace`` seconds), and nothing twice. ``data_source`` defaults to the data
    the sweep was started with (give the path on this machine)."""
    spec, stored_data, stored_threads = stored_spec(storage, name)
    runner = SweepRunner(spec, storage, data_source=data_source or stored_data, jobs=jobs,
                         threads=threads if threads is not None else stored_threads,
                         on_event=on_event, estimate=estimate, deadline=None, resume=True,
                         backend=backend, scheduler=scheduler, grace=grace)
    return runner.run()


def _record(storage: Storage, outcome: TrialOutcome) -> TrialState | None:
    """Store how a trial ended; None when it was taken for lost meanwhile (not stored)."""
    result = outcome.result
    if result is None:
        kept = storage.finish_trial(outcome.trial_id, TrialState.FAILED, message=outcome.error,
                                    traceback=outcome.traceback, worker=outcome.worker)
        return TrialState.FAILED if kept else None
    state = (TrialState.FAILED if result.diverged
             else TrialState.PRUNED if result.stopped else TrialState.COMPLETE)
    curves = [CurveRecord(outcome.trial_id, c.step, c.split, c.loss, c.cost, c.acc, c.lr)
              for c in result.curves]
    kept = storage.finish_trial(outcome.trial_id, state, metrics=result.metrics(),
                                curves=curves, message=result.message, worker=outcome.worker,
                                params=result.spec.to_dict())
    return state if kept else None


def run_single(trial_spec: TrialSpec, storage: Storage, *, data_source: str | None,
               sweep_name: str = "train", message: str = "",
               stop_at: int | None = None,
               threads: int | None = None) -> tuple[int, TrialOutcome]:
    """Train one configuration in this process and store it as a trial of ``sweep_name``.

    ``stop_at`` stops training at the first end of a cycle at or after that update (to repeat
    a pruned trial).
    """
    sweep = storage.get_or_create_sweep(sweep_name, {"name": sweep_name, "single": True}, 0)
    number = storage.next_trial_number(sweep.id)
    trial_id = storage.start_trial(sweep.id, None, number, trial_spec.to_dict(), trial_spec.seed)
    outcome = execute(TrialTask(trial_id, trial_spec, data_source, threads, stop_at=stop_at))
    if message and outcome.result is not None:
        outcome = TrialOutcome(outcome.trial_id, _with_message(outcome.result, message),
                               outcome.error, outcome.traceback, outcome.worker)
    _record(storage, outcome)
    return trial_id, outcome


def _with_message(result: Any, message: str) -> Any:
    import dataclasses

    text = f"{result.message}; {message}" if result.message else message
    return dataclasses.replace(result, message=text)


RERUN_METRICS = ("val_acc", "test_acc", "train_acc", "updates")


@dataclass(frozen=True)
class Rerun:
    original: TrialRecord
    trial_id: int
    outcome: TrialOutcome

    def differences(self) -> dict[str, tuple[float, float]]:
        """Metrics that differ between the original and the rerun: name -> (was, now)."""
        result = self.outcome.result
        if result is None:
            return {"error": (math.nan, math.nan)}
        now = result.metrics()
        out = {}
        for name in RERUN_METRICS:
            was = self.original.metrics.get(name, math.nan)
            if not (was == now[name] or (math.isnan(was) and math.isnan(now[name]))):
                out[name] = (was, now[name])
        return out


def rerun_trial(storage: Storage, trial_id: int, *, data_source: str | None = None,
                threads: int | None = None) -> Rerun:
    """Train a stored trial again from its stored parameters and seed (stored under the sweep
    ``rerun``); a pruned trial stops where it was stopped. ``data_source`` defaults to the one
    the sweep ran on."""
    found = storage.get_trials(trial_ids=[trial_id])
    if not found:
        raise StorageError(f"no trial with id {trial_id} in {storage.shown_url}")
    original = found[0]
    sweep_spec = storage.get_sweep(original.sweep).spec
    if data_source is None:
        data_source = sweep_spec.get("data")
    if threads is None:  # as the original ran: a sweep's --threads, none for `train`
        threads = sweep_spec.get("threads")
    check_rerun_data(storage, original.sweep, data_source)  # issue 18 hook
    spec = TrialSpec.from_mapping(original.params)
    stop_at = int(original.metrics["updates"]) if original.state is TrialState.PRUNED else None
    new_id, outcome = run_single(spec, storage, data_source=data_source, sweep_name="rerun",
                                 message=f"rerun of trial {trial_id}", stop_at=stop_at,
                                 threads=threads)
    return Rerun(original, new_id, outcome)
