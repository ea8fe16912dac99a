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
import shutil
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, wait
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import optuna
from joblib.externals.loky import get_reusable_executor

from numsweep.engine import TrialSpec, make_split
from numsweep.engine.train import build_network
from numsweep.storage import CurveRecord, Storage, StorageError, TrialRecord, TrialState
from numsweep.sweeps.spec import (
    HISTORY_SAMPLERS,
    ParamSpace,
    StageSpec,
    SweepSpec,
    SweepSpecError,
    check_against_images,
    grid_points,
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
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return optuna.storages.RDBStorage(url, engine_kwargs=kwargs)
    except Exception as exc:
        raise StorageError(f"cannot open the Optuna study storage on {url}: "
                           f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"
                           ) from None


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


def make_executor(jobs: int) -> Any:
    if jobs == 1:
        return InlineExecutor()
    return get_reusable_executor(max_workers=jobs, timeout=60)


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


# One configuration of a stage (run ``replicates`` times)

@dataclass
class _Config:
    index: int
    trial: optuna.Trial
    params: dict[str, Any]
    outcomes: dict[int, TrialOutcome] = field(default_factory=dict)
    states: dict[int, TrialState] = field(default_factory=dict)
    told: bool = False


@dataclass
class _Running:
    config: _Config
    replicate: int
    trial_id: int
    number: int
    started: float
    estimate: float | None


class SweepRunner:
    """Runs the stages of one sweep; see :func:`run_sweep`."""

    def __init__(self, spec: SweepSpec, storage: Storage, *, data_source: str | None,
                 jobs: int, threads: int | None, on_event: EventHandler | None,
                 estimate: Estimator | None, deadline: float | None) -> None:
        if jobs < 1:
            raise ValueError(f"--jobs must be at least 1, got {jobs}")
        self.spec = spec
        self.storage = storage
        self.data_source = data_source
        self.jobs = jobs
        self.threads = threads if threads is not None else default_threads(jobs)
        self.notify = on_event or (lambda _event: None)
        self.estimate = estimate
        self.deadline = deadline
        self.reused: dict[str, list[TrialRecord]] = {}
        self.spaces: dict[str, dict[str, ParamSpace]] = {}

    def run(self) -> list[StageSummary]:
        spec, storage = self.spec, self.storage
        existing = [s for s in storage.list_sweeps() if s.name == spec.name]
        if existing and storage.count_trials(existing[0].id):
            raise SweepSpecError(
                f"sweep {spec.name!r} already has {storage.count_trials(existing[0].id)} trials "
                f"in {storage.url}; run it under another name (name=NEW)")
        data = DataShare(self.data_source, self.jobs)
        check_against_images(spec, data.dataset.image_shape, len(data.dataset.classes))
        self.ostorage = optuna_storage(storage.url)
        self.sweep = storage.get_or_create_sweep(
            spec.name, {**spec.to_dict(), "data": self.data_source, "threads": self.threads},
            spec.seed)
        self.pool = make_executor(self.jobs)
        self.data = data
        try:
            return [self._run_stage(i, stage) for i, stage in enumerate(spec.stages)]
        finally:
            data.close()

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

    # Running

    def _run_stage(self, index: int, stage: StageSpec) -> StageSummary:
        spec = self.spec
        fixed = spec.stage_fixed(stage)
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
        self.spaces[stage.name] = space
        self.reused[stage.name] = reused
        stage_rec = self.storage.get_or_create_stage(
            self.sweep.id, index, stage.name, stage.sampler,
            {"space": {k: p.to_dict() for k, p in space.items()}, "fixed": dict(stage.fixed),
             "planned": n_configs * stage.replicates, "reused": [t.id for t in reused]},
            note)
        self.stage_id = stage_rec.id
        planned = n_configs * stage.replicates
        self.notify(TrialEvent("stage", stage.name, planned=planned, reused=len(reused),
                               message=note))

        with _quiet():
            study = optuna.create_study(
                storage=self.ostorage, study_name=study_name(spec.name, stage.name),
                direction="maximize",
                sampler=make_sampler(stage.sampler, trial_seed(spec.seed, index, 2**31 - 1)),
                pruner=make_pruner(stage.pruner))
            distributions = {k: distribution(p) for k, p in space.items()}
            for t in reused:
                values = entry_values(space, t.params, fixed)
                for k, v in values.items():  # inside up to rounding: clip for Optuna's check
                    if space[k].numeric:
                        values[k] = min(max(v, space[k].low), space[k].high)
                study.add_trial(optuna.trial.create_trial(
                    params=values, distributions={k: distributions[k] for k in values},
                    value=t.metrics["val_acc"], user_attrs={"ns_trial_id": t.id}))
        lagged = stage.sampler in HISTORY_SAMPLERS or stage.pruner != "none"
        stage_deadline = (time.monotonic() + stage.time_budget if stage.time_budget else None)
        # the sweep's budget never skips a final ``best`` stage: it is what the sweep is for
        sweep_deadline = None if stage.sampler == "best" else self.deadline
        deadlines = [d for d in (stage_deadline, sweep_deadline) if d is not None]
        deadline = min(deadlines) if deadlines else None

        configs: list[_Config] = []
        running: dict[Future[TrialOutcome], _Running] = {}
        counts: dict[str, int] = {}
        told_upto = 0  # configurations [0, told_upto) are told, in order
        stopped_for_time = False

        def tell_ready(limit: int) -> int:
            nonlocal told_upto
            while told_upto < min(limit, len(configs)):
                config = configs[told_upto]
                if len(config.outcomes) < stage.replicates:
                    break
                self._tell(study, config)
                told_upto += 1
            return told_upto

        while True:
            while len(configs) < n_configs and len(running) < self.jobs:
                if deadline is not None and time.monotonic() > deadline:
                    stopped_for_time = True
                    break
                k = len(configs)
                if lagged and tell_ready(k - stage.sync + 1) < k - stage.sync + 1:
                    break
                configs.append(self._ask(study, stage, index, space, fixed, queue, k,
                                         running, lagged))
            if not running:
                break
            done, _ = wait(list(running), return_when=FIRST_COMPLETED)
            for future in sorted(done, key=lambda f: running[f].number):
                job = running.pop(future)
                outcome = future.result()
                state = _record(self.storage, outcome)
                counts[state.value] = counts.get(state.value, 0) + 1
                job.config.outcomes[job.replicate] = outcome
                job.config.states[job.replicate] = state
                val = outcome.result.val_acc if outcome.result else None
                message = outcome.error or (outcome.result.message if outcome.result else "")
                self.notify(TrialEvent("finished", stage.name, job.number, state, val, message,
                                       estimate=job.estimate,
                                       seconds=time.monotonic() - job.started))
            if not lagged:
                tell_ready(len(configs))
        tell_ready(len(configs))
        if stopped_for_time:
            left = (n_configs - len(configs)) * stage.replicates
            extra = f"time budget used up: {left} planned trials not run"
            note = (note + "; " if note else "") + extra
            self.storage.set_stage_note(stage_rec.id, note)
        return self._summary(stage, planned, counts, note, reused, space)

    def _ask(self, study: optuna.Study, stage: StageSpec, index: int,
             space: Mapping[str, ParamSpace], fixed: Mapping[str, Any],
             queue: list[dict[str, Any]], k: int, running: dict[Future[TrialOutcome], _Running],
             lagged: bool) -> _Config:
        snapshot = None
        if stage.pruner != "none":
            trials = tuple(study.get_trials(deepcopy=True))
            snapshot = PruneSnapshot(stage.pruner, study.study_name, trials, len(trials))
        with _quiet():
            if k < len(queue):
                study.enqueue_trial(entry_values(space, queue[k], fixed),
                                    skip_if_exists=False)
            trial = study.ask()
            params = suggest(trial, space, fixed)
        if k < len(queue):
            params = {**queue[k], **params}
        config = _Config(k, trial, params)
        for r in range(stage.replicates):
            number = k * stage.replicates + r
            seed = trial_seed(self.spec.seed, index, number)
            trial_spec = TrialSpec.from_mapping({**fixed, **params, "seed": seed})
            db_number = self.storage.next_trial_number(self.sweep.id)
            trial_id = self.storage.start_trial(self.sweep.id, self.stage_id, db_number,
                                                trial_spec.to_dict(), seed)
            estimate = self.estimate(trial_spec) if self.estimate else None
            self.notify(TrialEvent("started", stage.name, db_number, estimate=estimate))
            task = TrialTask(trial_id, trial_spec, self.data_source, self.threads,
                             self.data.shared_for(trial_spec), snapshot)
            started = time.monotonic()
            future = self.pool.submit(execute, task)
            running[future] = _Running(config, r, trial_id, db_number, started, estimate)
        return config

    def _tell(self, study: optuna.Study, config: _Config) -> None:
        trial = config.trial
        ids = [o.trial_id for o in config.outcomes.values()]
        complete = [o.result.val_acc for r, o in sorted(config.outcomes.items())
                    if config.states[r] is TrialState.COMPLETE and o.result is not None]
        with _quiet():
            trial.set_user_attr("ns_trial_ids", ids)
            if len(config.outcomes) == 1:
                outcome = next(iter(config.outcomes.values()))
                for step, value in outcome.reports:
                    trial.report(value, step)
                for key, value in outcome.system_attrs.items():
                    if not key.startswith("fixed_params"):
                        study._storage.set_trial_system_attr(trial._trial_id, key, value)
            states = set(config.states.values())
            if complete:
                study.tell(trial, float(np.mean(complete)))
            elif TrialState.PRUNED in states:
                study.tell(trial, state=optuna.trial.TrialState.PRUNED)
            else:
                study.tell(trial, state=optuna.trial.TrialState.FAIL)
        config.told = True

    def _summary(self, stage: StageSpec, planned: int, counts: dict[str, int], note: str,
                 reused: list[TrialRecord], space: Mapping[str, ParamSpace]) -> StageSummary:
        trials = self._source_trials([stage.name])
        best = max(trials, key=lambda t: (t.metrics["val_acc"], -t.id), default=None)
        names = [n for p in self.spec.space.values() for n in p.names]
        params = {n: best.params[n] for n in names if n in best.params} if best else None
        return StageSummary(
            stage.name, planned, counts, best.metrics["val_acc"] if best else None, params,
            sampler=stage.sampler, note=note, reused=len(reused),
            best_test_acc=best.metrics.get("test_acc") if best else None,
            best_trial=best.id if best else None)


def run_sweep(spec: SweepSpec, storage: Storage, *, data_source: str | None, jobs: int = 1,
              threads: int | None = None, on_event: EventHandler | None = None,
              estimate: Estimator | None = None,
              time_budget: float | None = None) -> list[StageSummary]:
    """Run every stage of ``spec`` in order and store every trial; returns a summary per stage.

    ``threads`` is the BLAS thread count per trial (default 1); ``estimate``
    gives the planner's seconds for a trial (shown against the measured time);
    ``time_budget`` (seconds) stops proposing new trials once it is used up.
    """
    deadline = time.monotonic() + time_budget if time_budget else None
    return SweepRunner(spec, storage, data_source=data_source, jobs=jobs, threads=threads,
                       on_event=on_event, estimate=estimate, deadline=deadline).run()


def _record(storage: Storage, outcome: TrialOutcome) -> TrialState:
    result = outcome.result
    if result is None:
        storage.finish_trial(outcome.trial_id, TrialState.FAILED, message=outcome.error,
                             traceback=outcome.traceback, worker=outcome.worker)
        return TrialState.FAILED
    state = (TrialState.FAILED if result.diverged
             else TrialState.PRUNED if result.stopped else TrialState.COMPLETE)
    curves = [CurveRecord(outcome.trial_id, c.step, c.split, c.loss, c.cost, c.acc, c.lr)
              for c in result.curves]
    storage.finish_trial(outcome.trial_id, state, metrics=result.metrics(), curves=curves,
                         message=result.message, worker=outcome.worker,
                         params=result.spec.to_dict())
    return state


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
        raise StorageError(f"no trial with id {trial_id} in {storage.url}")
    original = found[0]
    sweep_spec = storage.get_sweep(original.sweep).spec
    if data_source is None:
        data_source = sweep_spec.get("data")
    if threads is None:  # as the original ran: a sweep's --threads, none for `train`
        threads = sweep_spec.get("threads")
    spec = TrialSpec.from_mapping(original.params)
    stop_at = int(original.metrics["updates"]) if original.state is TrialState.PRUNED else None
    new_id, outcome = run_single(spec, storage, data_source=data_source, sweep_name="rerun",
                                 message=f"rerun of trial {trial_id}", stop_at=stop_at,
                                 threads=threads)
    return Rerun(original, new_id, outcome)
