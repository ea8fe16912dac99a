"""Run a sweep: one process owns the database and the Optuna studies (ask/tell); worker
processes only train and send results back.

What is guaranteed (see docs/sweeps.md, "Parallel runs and reproducibility"):

- a trial's seed depends only on the sweep seed, the stage and the trial's place in it;
- grid points, ``configs`` and the ``best`` stage are fixed lists: each entry runs once;
- samplers whose proposals depend on results (tpe, gp, cmaes), and every stage with a pruner,
  see results with a fixed lag: configuration k is proposed (and its pruning snapshot taken)
  knowing exactly the results of configurations 0 .. k - ``sync``, told in order. So the same
  sweep seed gives the same trials and metrics with any ``--jobs`` up to ``sync`` (default 4)
  as long as the BLAS thread count per trial (``threads``) is the same;
- random and qmc proposals do not depend on results and are the same with any ``--jobs``;
- a trial's data stream (batch order, augmentation draws) is seeded by its stage's data seed
  (:func:`stage_data_seed`: the sweep seed, the stage and the seed replicate), its own stream
  (initialisation, dropout) by its ``seed``; both are stored as its parameters. So a trial
  trained in a fused group gets the metrics it gets alone (float64 to 1e-10, float32 to the
  rounding of another summation order), and which trials happen to group together never
  changes what is proposed;
- fused groups (``--group-size K``, stored with the stage): a stage whose proposals wait for
  results asks for configurations in batches of K, and the batch starting at configuration
  ``k0`` is proposed knowing exactly the results of configurations 0 .. ``k0`` - S, where S
  is ``sync`` rounded up to a multiple of K (:func:`grouping.proposal_lag`); K = 1 is the
  rule above. So with the same stored K the same sweep seed gives the same trials with any
  ``--jobs`` up to S / K, and the same metrics (bit for bit when the groups form alike,
  else to the rounding above).
"""

from __future__ import annotations

import contextlib
import json
import math
import shlex
import time
import traceback
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, BrokenExecutor, Future, wait
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

from numsweep.engine import CurvePoint, TrialSpec
from numsweep.engine.checkpoint import clear_state
from numsweep.shield import ctrl_c_deferred, shielded
from numsweep.storage import (
    RunSettings,
    SlotRecord,
    StagePlan,
    StageRecord,
    Storage,
    StorageError,
    StorageFull,
    StorageGone,
    StorageUnavailable,
    SweepRecord,
    TrialRecord,
    TrialState,
    full_message,
    retry_call,
)
from numsweep.storage.retry import driver_line, is_full_error
from numsweep.sweeps.data_share import DataShare
from numsweep.sweeps.dataset_cache import absolute_data
from numsweep.sweeps.deaths import (
    execute_group_announced,
    judge_worker_loss,
    watch_worker_deaths,
)
from numsweep.sweeps.executors import DEFAULT_THREADS, DaskExecutor, make_executor
from numsweep.sweeps.front_pruning import rule_from, rung_attrs
from numsweep.sweeps.grouping import auto_group_size, form_groups, proposal_lag
from numsweep.sweeps.guards import (
    check_data_sizes,
    check_sweep_data,
    fingerprint_of,
)
from numsweep.sweeps.interrupts import acting_on_interrupt, mark_interrupted
from numsweep.sweeps.kept import (
    DEFAULT_KEEP,
    apply_policy,
    check_policy,
    checkpoint_path,
    checkpoint_root,
    sweep_policy,
    weights_path,
)
from numsweep.sweeps.live import Message, open_channel, store_points
from numsweep.sweeps.liveness import (
    DEFAULT_GRACE,
    MAX_LOST_ATTEMPTS,
    POLL_SECONDS,
    Heartbeat,
    heartbeat_interval,
    is_gone,
    is_lost,
    utcnow,
)
from numsweep.sweeps.narrowing import narrow_space
from numsweep.sweeps.objectives import (
    Objective,
    chosen,
    describe,
    mean_values,
    objective_metrics,
    objective_values,
    ranked,
)
from numsweep.sweeps.optuna_bridge import (
    add_reused,
    discard,
    entry_values,
    inside,
    keep_outcome,
    load_study,
    optuna_storage,
    propose,
    report_running,
    study_name,
    tell,
    trial_user_attrs,
    trials_before,
)
from numsweep.sweeps.results import keep_unsaved, record_outcome, write_unsaved
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
from numsweep.sweeps.warm_start import check_source, config_key, warm_configs
from numsweep.sweeps.worker import (
    GroupTask,
    PruneSnapshot,
    TrialOutcome,
    TrialTask,
    worker_name,
)

if TYPE_CHECKING:
    import optuna

PROPOSAL_LEASE_SECONDS = 30.0
"""How long a process may hold a stage's proposal turn before another takes it over (only
a process that died while proposing holds it that long)."""
START_LEASE_SECONDS = 10 * 365 * 86400.0
"""How long a ``sweep run`` holds its sweep's start lease (see :func:`starting`): while it
runs, given back at its end; one killed, interrupted or stopped by a database error keeps
it until a process of its machine sees it gone (``sweep resume`` and ``worker`` continue
the sweep in any case)."""
PROPOSAL_TRIES = 20
"""How many times (POLL_SECONDS / 10 apart) a process asks for the proposal turn
before it goes back to its running trials."""
DATA_SEED_NUMBER = 2**31 - 2
"""The place :func:`trial_seed` draws a stage's data seed from (no trial has it)."""
LIVE_POLL_SECONDS = 0.5
"""How often the sweep process takes the curve points its running trials measured."""
T = TypeVar("T")


@dataclass(frozen=True)
class TrialEvent:
    """Sent to the progress display: a stage starts ("stage"), a trial starts, measures a
    curve point ("point", with its val_acc) or ends."""

    kind: str  # "stage", "started", "point" or "finished"
    stage: str
    number: int = -1  # the trial's number in its sweep; shown is trial_id
    state: TrialState | None = None
    val_acc: float | None = None
    message: str = ""
    # the trial's train_seconds + eval_seconds, what the planner estimates; for a trial of
    # a fused group its even share of the group's (group_size trials): see docs/numbers.md
    estimate: float | None = None  # the planner's estimate of it ("started", "finished")
    seconds: float | None = None  # as measured ("finished"; None without a result)
    planned: int = 0  # trials the stage plans to run ("stage")
    reused: int = 0  # earlier trials the stage reuses ("stage")
    counts: Mapping[str, int] = field(default_factory=dict)  # finished before ("stage")
    trial_id: int | None = None  # the database id: what `trials`, `--trial` and `rerun` take
    jobs: int | None = None  # trials this process runs at once ("stage")
    group_size: int = 1  # trials trained together at most ("stage"), or the finished
    # trial's group ("finished"); 1: one at a time
    group_auto: bool = False  # the group size was chosen automatically ("stage")
    step: int | None = None  # the update of its latest curve point ("point")
    total: int | None = None  # the updates it plans ("point")


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


def trial_seconds(outcome: TrialOutcome) -> float | None:
    """A finished trial's measured seconds as the planner estimates them: its train_seconds
    + eval_seconds (a grouped trial's share of its group's); None without a result."""
    if outcome.result is None:
        return None
    return outcome.result.train_seconds + outcome.result.eval_seconds


def trial_seed(sweep_seed: int, stage_index: int, number: int, replicate: int = 0) -> int:
    """A trial's seed depends only on the sweep seed and its place, never on worker timing."""
    entropy = [sweep_seed, stage_index, number] + ([replicate] if replicate else [])
    return int(np.random.SeedSequence(entropy).generate_state(1)[0])


def stage_data_seed(sweep_seed: int, stage_index: int, replicate: int = 0) -> int:
    """The seed of the data stream every trial of a stage shares (one per seed replicate):
    the same batches grouped or not, and paired comparisons inside the stage."""
    return trial_seed(sweep_seed, stage_index, DATA_SEED_NUMBER, replicate)


class SweepInterrupted(Exception):
    """Ctrl-C (SIGINT) or SIGTERM stopped the sweep: the running trials are marked
    INTERRUPTED, the finished ones stay; ``numsweep sweep resume`` continues."""

    def __init__(self, sweep: str, interrupted: int, finished: int) -> None:
        self.sweep = sweep
        self.interrupted = interrupted
        self.finished = finished
        super().__init__(f"sweep {sweep!r} interrupted: {interrupted} running trials marked "
                         f"interrupted, {finished} finished trials kept")


# One stage as stored in the database, so that every process runs the same plan

@dataclass(frozen=True)
class _Plan:
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
    group: int | None = None  # the id of the group it trains in (its first trial's id)
    checkpoint: Path | None = None  # its group's checkpoint (keyed by the group's slots)


@contextmanager
def starting(storage: Storage, name: str, holder: str) -> Iterator[None]:
    """Hold sweep ``name``'s start lease while it is started (``sweep run``: while it runs;
    ``sweep create``: while it is stored): a second process that starts the same sweep
    meanwhile is refused (it would run the same configurations again beside the first). A
    holder that was a process of this machine that is gone (killed) is taken over."""
    lease = f"start:{name}"[:200]
    if not storage.take_lease(lease, holder, START_LEASE_SECONDS):
        other = storage.lease_holder(lease)
        if not ((other is None or is_gone(other)) and storage.take_lease(
                lease, holder, START_LEASE_SECONDS, taking_from=other)):
            other = storage.lease_holder(lease) or "another process"
            raise SweepSpecError(
                f"sweep {name!r} in {storage.shown_url} is being started by {other} (another "
                f"`numsweep sweep run` or `sweep create`); join it with `numsweep worker "
                f"{name}`, or run this one under another name (name=NEW)")
    try:
        yield
    except (StorageError, KeyboardInterrupt, SweepInterrupted):
        # kept: giving it back could wait for the database (or a lock) when the process is
        # to end at once; a holder that is gone is taken over
        raise
    except BaseException:
        with suppress(StorageError):
            storage.give_back_lease(lease, holder)
        raise
    storage.give_back_lease(lease, holder)


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
                 grace: float = DEFAULT_GRACE, checkpoint_dir: str | Path | None = None,
                 keep_weights: str = DEFAULT_KEEP, group_size: int | None = None,
                 force: bool = False) -> None:
        if jobs is not None and jobs < 1:
            raise ValueError(f"--jobs must be at least 1, got {jobs}")
        if jobs is None and backend != "dask":
            raise ValueError("--jobs is needed unless the backend is dask")
        if grace <= 0:
            raise ValueError(f"--grace must be positive, got {grace}")
        if group_size is not None and group_size < 0:
            raise ValueError(f"--group-size must be 0 or more, got {group_size}")
        self.group_size = None if group_size is None else max(group_size, 1)  # None: auto
        self.force = force  # runs longer than guards.LONG_RUN_UPDATES allowed
        self.pending: list[tuple[_Running, TrialSpec, PruneSnapshot | None]] = []
        self.spec = spec
        self.storage = storage
        self.data_source = absolute_data(data_source)  # stored: found from any folder
        self.jobs = jobs or 1
        self.auto_jobs = jobs is None  # dask: as many as the cluster has threads
        self.threads = threads if threads is not None else DEFAULT_THREADS
        self.notify = on_event or (lambda _event: None)
        self.estimate = estimate
        self.deadline = deadline
        self.resume = resume
        self.backend = backend
        self.scheduler = scheduler
        self.grace = grace
        self.checkpoint_dir = checkpoint_root(storage, checkpoint_dir)
        self.keep_weights = check_policy(keep_weights)
        self.name = worker_name()
        self.reused: dict[str, list[TrialRecord]] = {}
        self.spaces: dict[str, dict[str, ParamSpace]] = {}
        self.study_objectives: dict[str, tuple[Objective, ...]] = {}
        self.running: dict[Future[TrialOutcome], _Running] = {}
        self.inline: _Running | None = None
        self.finished = 0
        self.unsaved: list[TrialOutcome] = []  # finished, not written: the database is away
        self.training: dict[int, _Running] = {}  # trial id -> job, from its group's start

    def run(self) -> list[StageSummary]:
        with ctrl_c_deferred():  # in a notebook too, Ctrl-C cuts no transaction short
            return self._run()

    def _run(self) -> list[StageSummary]:
        if self.resume:
            return self._run_claimed()
        with starting(self.storage, self.spec.name, self.name):
            return self._run_claimed()

    def _run_claimed(self) -> list[StageSummary]:
        spec, storage = self.spec, self.storage
        existing = [s for s in storage.list_sweeps() if s.name == spec.name]
        if not self.resume and existing and storage.count_trials(existing[0].id):
            raise SweepSpecError(
                f"sweep {spec.name!r} already has {storage.count_trials(existing[0].id)} trials "
                f"in {storage.shown_url}; continue it with `numsweep sweep resume "
                f"{shlex.quote(spec.name)}`, run it under another name (name=NEW), or start "
                f"over after `numsweep sweep delete {shlex.quote(spec.name)}`")
        if not self.resume and existing and (existing[0].spec, existing[0].run) != (
                self._stored(), self._run_settings()):  # created, never run
            storage.set_sweep_spec(existing[0].id, self._stored(), run=self._run_settings())
        self.pool = make_executor(self.jobs, self.backend, self.scheduler)
        if self.auto_jobs and isinstance(self.pool, DaskExecutor):
            self.jobs = self.pool.threads()
        data = DataShare(self.data_source, self.jobs if self.backend == "loky" else 1)
        self.heart = Heartbeat(storage, heartbeat_interval(self.grace))
        try:
            self.live = open_channel(self.pool,
                                     data.make_folder if self.backend == "loky" else None,
                                     self._take_points)
            check_against_images(spec, data.dataset.image_shape, len(data.dataset.classes))
            check_data_sizes(spec, data.dataset, force=self.force)
            for stage in spec.stages:  # a missing source fails before anything is stored
                if stage.warm_start is not None and not (
                        stage.warm_start.sweep == spec.name and stage.warm_start.db is None):
                    try:
                        check_source(stage.warm_start, storage)
                    except SweepSpecError as exc:
                        raise SweepSpecError(f"{spec.origin}: stages.{stage.name}.{exc}"
                                             ) from None
            self.ostorage = optuna_storage(storage.engine_url, storage.db_wait)
            self.sweep = storage.get_or_create_sweep(spec.name, self._stored(), spec.seed,
                                                     run=self._run_settings())
            check_sweep_data(storage, self.sweep, data.dataset, self.data_source)
            self.data = data
            write_unsaved(storage)  # results kept here when the database last went away
            self.heart.start()
            return [self._run_stage(i, stage) for i, stage in enumerate(spec.stages)]
        except StorageUnavailable as exc:
            raise self._keep_finished(exc) from None
        except StorageGone as exc:  # results of the running trials have nowhere to go
            running = len(self.running) + len(self.pending)
            self.pool.shutdown(wait=False, kill_workers=True)  # not waiting for their ends
            raise StorageGone(f"{exc}; sweep {spec.name!r} stopped (finished trials stored "
                              f"in it by this process: {self.finished}, running trials "
                              f"dropped: {running})") from None
        except StorageError as exc:  # a full disk, a database that refuses writes, ...
            self._stop_running(f"stopped: {exc}; `numsweep sweep resume "
                               f"{shlex.quote(spec.name)}` runs it again")
            raise
        except KeyboardInterrupt:
            acting_on_interrupt()  # from here on no re-raised interrupt cuts this short
            with suppress(Exception):  # the points measured so far, while the trials run
                self._take_points(self.live.take())
            ids = [job.trial_id for job in self.running.values()]
            ids += [job.trial_id for job, _, _ in self.pending]
            ids += [self.inline.trial_id] if self.inline is not None else []
            self.pool.shutdown(wait=False, kill_workers=True)
            sweep = getattr(self, "sweep", None)
            count = mark_interrupted(
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

    def _stop_running(self, message: str) -> None:
        """The sweep stops on a database error: its workers end and its running trials are
        marked INTERRUPTED with ``message`` where the database still takes that write (else
        the next resume takes them for lost: this process is gone)."""
        ids = [job.trial_id for job in self.running.values()]
        ids += [job.trial_id for job, _, _ in self.pending]
        ids += [self.inline.trial_id] if self.inline is not None else []
        self.pool.shutdown(wait=False, kill_workers=True)
        self.heart.stop()
        sweep = getattr(self, "sweep", None)
        with contextlib.suppress(StorageError):
            self.storage.interrupt_trials_promptly(
                ids, message, sweep_id=sweep.id if sweep is not None else None,
                worker=self.name)

    def _keep_finished(self, exc: StorageUnavailable) -> StorageUnavailable:
        """The database stayed away past --db-wait: keep the results that finished on this
        machine (written by the next process here to run the sweep) and say where."""
        done = self.unsaved + [f.result() for f in self.running
                               if f.done() and f.exception() is None]
        if not done:
            return exc
        count, folder = keep_unsaved(self.storage, done)
        return StorageUnavailable(f"{exc}; {count} finished trial results kept in {folder} "
                                  f"(the next `numsweep sweep resume` or `numsweep worker` "
                                  f"here writes them)")

    def _sampler_seed(self, index: int) -> int:
        """The seed of the stage's sampler: the sweep's own for ``sweep run``; for each
        resume or worker process another one (drawn from the sweep seed and the process's
        host and pid), so that processes sharing a stage do not propose the same values."""
        if not self.resume:
            return trial_seed(self.spec.seed, index, 2**31 - 1)
        return trial_seed(self.spec.seed, index, 2**31 - 1, zlib.crc32(self.name.encode()))

    def _stored(self) -> dict[str, Any]:
        return self.spec.to_dict()

    def _run_settings(self) -> RunSettings:
        return RunSettings(self.data_source, self.threads, str(self.checkpoint_dir),
                           self.keep_weights)

    # Stage set-up

    def _source_trials(self, names: Sequence[str], objectives: Sequence[Objective]
                       ) -> list[TrialRecord]:
        """The complete trials of stages ``names`` (with the ones they reused) that measured
        every objective."""
        out: list[TrialRecord] = []
        for name in names:
            out += self.storage.get_trials(self.spec.name, stage=name,
                                           states=[TrialState.COMPLETE])
            out += self.reused.get(name, [])
        unique = {t.id: t for t in out}
        return [t for _, t in sorted(unique.items())
                if objective_values(t.metrics, objectives) is not None]

    def _top_trials(self, trials: Sequence[TrialRecord], objectives: Sequence[Objective],
                    top_k: int) -> list[TrialRecord]:
        """The ``top_k`` best trials by one objective; with several, the Pareto front."""
        values = [objective_values(t.metrics, objectives) or () for t in trials]
        best = ranked(list(trials), values, objectives)
        return best[:top_k] if len(objectives) == 1 else best

    def _space_for(self, stage: StageSpec) -> tuple[dict[str, ParamSpace], str]:
        space = dict(self.spec.space)
        if stage.narrow is None:
            return space, ""
        source = stage.narrow.source
        objectives = self.spec.stage_objectives(stage)
        trials = self._source_trials([source], objectives)
        top = self._top_trials(trials, objectives, stage.narrow.top_k)
        space, note = narrow_space(space, [t.params for t in top], self.spaces[source],
                                   stage.narrow.widen, source, available=len(trials))
        if len(objectives) > 1 and top:
            note = (f"the {len(top)} trials on the Pareto front of {source} "
                    f"({describe(objectives)}; ids {', '.join(str(t.id) for t in top)}): "
                    + note)
        return space, note

    def _best_config(self, stage: StageSpec, index: int) -> tuple[dict[str, Any], str]:
        sources = list(stage.source) or [s.name for s in self.spec.stages[:index]]
        objectives = self.spec.stage_objectives(stage)
        trials = self._source_trials(sources, objectives)
        if not trials:
            raise SweepSpecError(f"{self.spec.origin}: stages.{stage.name}: no complete trial in "
                                 f"{', '.join(sources)} to take the best configuration from")
        names = [n for p in self.spec.space.values() for n in p.names]
        groups: dict[str, list[TrialRecord]] = {}
        for t in trials:
            key = json.dumps({n: t.params.get(n) for n in names}, sort_keys=True)
            groups.setdefault(key, []).append(t)
        # configurations in the order of their first trial: ties go to the earliest
        items = sorted(groups.items(), key=lambda kv: min(t.id for t in kv[1]))
        means = [mean_values([t.metrics for t in group], objectives) or () for _, group in items]
        key, best = chosen(items, means, objectives, stage.pick)
        mean = mean_values([t.metrics for t in best], objectives) or ()
        params = json.loads(key)
        shown = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                          for k, v in params.items())
        seeds = f" (mean of {len(best)} seeds)" if len(best) > 1 else ""
        scores = ", ".join(f"{o.metric} {v:.4g}" if o.metric != "val_acc" else f"val_acc {v:.4f}"
                           for o, v in zip(objectives, mean, strict=True))
        front = ""
        if len(objectives) > 1:
            size = len(ranked(items, means, objectives))
            front = (f" (pick = {stage.pick} on the Pareto front of {size} configurations "
                     f"over {describe(objectives)})")
        note = (f"best of {', '.join(sources)}{front}: trial {min(t.id for t in best)} "
                f"{scores}{seeds} with {shown}; retrained with "
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
        trials = self._source_trials([source.name], self.spec.stage_objectives(stage))
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
            # n_trials counts new trials: the reused ones come on top
            queue = queue if stage.n_trials is None else queue[: stage.n_trials]
        elif stage.sampler not in ("list", "best") and stage.warm_start is not None:
            assert stage.n_trials is not None
            warm, warm_note = warm_configs(
                stage.warm_start, self.storage, space, fixed,
                self.spec.stage_objectives(stage), room=stage.n_trials - len(queue),
                taken_already=[config_key(space, c, fixed) for c in queue])
            queue += warm
            note = (note + "; " if note else "") + warm_note
        n_configs = (len(queue) if stage.sampler in ("grid", "list", "best")
                     else stage.n_trials or 0)
        queue = queue[:n_configs]
        if reused:
            note = (note + "; " if note else "") + (
                f"reuses {len(reused)} trials of {stage.narrow.source if stage.narrow else ''} "
                f"inside the narrowed range (ids {', '.join(str(t.id) for t in reused)}) "
                f"and trains {n_configs * stage.replicates} new")
        plan = StagePlan(
            space={k: p.to_dict() for k, p in space.items()}, fixed=dict(stage.fixed),
            planned=n_configs * stage.replicates, reused=tuple(t.id for t in reused),
            configs=tuple(queue), n_configs=n_configs,
            # the process that stores the plan adds the reused trials to the study
            setup_by=self.name, study_ready=not reused,
            group_size=self._plan_group_size(stage, n_configs * stage.replicates),
            group_auto=self.group_size is None)
        return self.storage.get_or_create_stage(self.sweep.id, index, stage.name,
                                                stage.sampler, plan.to_dict(), note)

    def _plan_group_size(self, stage: StageSpec, trials: int) -> int:
        """The stage's group size: ``--group-size``, or chosen from the stage's size, the
        jobs and the free memory (see :func:`grouping.auto_group_size`)."""
        if self.group_size is not None:
            return self.group_size
        try:
            spec = TrialSpec.from_mapping(self.spec.stage_fixed(stage))
        except ValueError:
            return 1
        lagged = stage.sampler in HISTORY_SAMPLERS or stage.pruner != "none"
        dataset = self.data.dataset
        return auto_group_size(spec, trials, self.jobs, dataset.image_shape,
                               len(dataset.classes), sync=stage.sync if lagged else None)

    def _exec_group_size(self, plan: _Plan) -> int:
        """How many claimed trials this process trains together: ``--group-size`` when
        given, else the stage's stored choice (1 for a stage stored by an older numsweep)."""
        if self.group_size is not None:
            return self.group_size
        return plan.stored.group_size or 1

    def _plan(self, index: int, stage: StageSpec) -> _Plan:
        """The stage's plan as stored (by this process or the first one to reach it)."""
        rec = self.storage.get_stage(self.sweep.id, index)
        if rec is None:
            rec = self._store_plan(index, stage)
        stored = rec.plan
        if rec.name != stage.name or stored.n_configs is None:
            raise SweepSpecError(f"stage {index} of sweep {self.spec.name!r} in "
                                 f"{self.storage.shown_url} is {rec.name!r}, stored by another "
                                 f"spec or an older numsweep: it cannot be continued")
        space = {name: ParamSpace.from_dict(name, d) for name, d in stored.space.items()}
        ids = list(stored.reused)
        reused = self.storage.get_trials(trial_ids=ids) if ids else []
        self.spaces[stage.name] = space
        self.reused[stage.name] = reused
        return _Plan(rec.id, stored, space, self.spec.stage_fixed(stage), reused, rec.note)

    def _study(self, index: int, stage: StageSpec, plan: _Plan) -> optuna.Study:
        """The stage's Optuna study (created by the first process), with the reused trials."""
        rec = self.storage.get_stage(self.sweep.id, index)
        note = rec.note if rec is not None else plan.note
        objectives = self.spec.stage_objectives(stage)
        attrs = {"sweep": self.spec.name, "stage": stage.name, "sampler": stage.sampler,
                 "pruner": stage.pruner, "stage_spec": stage.to_dict(),
                 "fixed": self.spec.stage_fixed(stage), "narrowing": note,
                 "objectives": [o.text for o in objectives]}
        description = (f"numsweep sweep {self.spec.name}, stage {stage.name} "
                       f"({stage.sampler}): {plan.stored.describe(stage.sampler)}"
                       + (f". {note}" if note else ""))

        self.study_objectives[study_name(self.spec.name, stage.name)] = objectives

        def load() -> optuna.Study:
            study = load_study(self.ostorage, study_name(self.spec.name, stage.name),
                               stage.sampler, self._sampler_seed(index), stage.pruner,
                               attrs, description, objectives, stage.n_trials)
            if plan.reused and not self._study_ready(index):
                add_reused(study, plan.space, plan.fixed, plan.reused, objectives)
                rec = self.storage.get_stage(self.sweep.id, index)
                assert rec is not None
                self.storage.merge_stage_space(rec.id, {"study_ready": True})
            return study

        return self._optuna(load)

    def _optuna(self, fn: Callable[[], T]) -> T:
        """An Optuna call on the database, retried like numsweep's own (locks, outages); a
        Ctrl-C waits for each attempt to end, as for numsweep's own transactions."""
        def attempt() -> T:
            with shielded():
                return fn()

        try:
            return retry_call(attempt, seconds=self.storage.db_wait,
                              what=self.storage.shown_url, on_reconnect=self.storage.reconnected)
        except StorageError:
            raise
        except Exception as exc:  # Optuna's own: a long traceback for a database error
            import optuna

            if is_full_error(exc):
                raise StorageFull(full_message(self.storage.shown_url, exc)) from None
            if isinstance(exc, optuna.exceptions.StorageInternalError):
                raise StorageError(f"database error on {self.storage.shown_url}: "
                                   f"{driver_line(exc)}") from None
            raise

    def _study_ready(self, index: int) -> bool:
        """False when this process is to add the stage's reused trials to the study: it
        stored the plan, or the process that did is gone or silent for ``grace`` seconds;
        True once they are there (waiting for the process adding them)."""
        give_up = time.monotonic() + self.grace
        while True:
            rec = self.storage.get_stage(self.sweep.id, index)
            assert rec is not None
            if rec.plan.study_ready:
                return True
            owner = rec.plan.setup_by
            if owner == self.name or is_gone(owner) or time.monotonic() > give_up:
                return False
            time.sleep(POLL_SECONDS / 5)

    # Running

    def _run_stage(self, index: int, stage: StageSpec) -> StageSummary:
        plan = self._plan(index, stage)
        reps = stage.replicates
        slots = _latest(self.storage.stage_slots(plan.stage_id))
        size = self._exec_group_size(plan)
        batch = plan.stored.group_size or 1  # proposals come in batches of the stored size
        sync = proposal_lag(stage.sync, batch)
        self.notify(TrialEvent("stage", stage.name, planned=plan.n_configs * reps,
                               reused=len(plan.reused), message=plan.note,
                               counts=_counts(slots.values()), jobs=self.jobs, group_size=size,
                               group_auto=self.group_size is None and plan.stored.group_auto))
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
            while len(self.pending) < size * (self.jobs - self._groups_running()):
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
                        first = k - k % batch  # the batch's first configuration
                        told = self._tell_ready(study, reps, slots, told, first - sync + 1)
                        if told < first - sync + 1:
                            break  # waits for the results of configuration first - sync
                    if not self._new_config(study, index, stage, plan, k):
                        break  # another process is proposing: look again after a pause
                slots = _latest(self.storage.stage_slots(plan.stage_id))
                proposed = max(slots) // reps + 1 if slots else 0
            self._start_groups(plan, size)
            if self.running:
                done = self._wait_for_trials()
                for future in sorted(done, key=lambda f: self.running[f].number):
                    self._finish(future, study, stage)
                continue
            if proposed >= n_configs and all(_final(slots.get(s))
                                             for s in range(proposed * reps)):
                self._tell_ready(study, reps, slots, told, proposed)
                break
            time.sleep(POLL_SECONDS)  # other processes run this stage's last trials
        apply_policy(self.storage, self.spec.name, self.checkpoint_dir, self.keep_weights,
                     stages=[stage.name])
        return self._summary(stage, plan, slots)

    def _n_configs(self, plan: _Plan, index: int) -> int:
        """The stage's planned configurations (fewer once a time budget cut the stage)."""
        rec = self.storage.get_stage(self.sweep.id, index)
        stored = None if rec is None else rec.plan.n_configs
        return plan.n_configs if stored is None else stored

    def _cut(self, plan: _Plan, index: int, stage: StageSpec, proposed: int) -> int:
        """The time budget is used up: the stage keeps the configurations proposed so far."""
        rec = self.storage.get_stage(self.sweep.id, index)
        assert rec is not None
        left = ((rec.plan.n_configs or 0) - proposed) * stage.replicates
        if left > 0:  # one atomic update of the plan and the note
            self.storage.merge_stage_space(
                rec.id, {"n_configs": proposed, "planned": proposed * stage.replicates},
                note=f"time budget used up: {left} planned trials not run")
        return proposed

    def _lost_slot(self, slots: Mapping[int, SlotRecord]) -> SlotRecord | None:
        """The first slot to run again: interrupted, or left RUNNING by a process that is
        gone."""
        mine = {job.trial_id for job in self.running.values()}
        mine |= {job.trial_id for job, _, _ in self.pending}
        now = utcnow()
        # after an outage no process could stamp its heartbeat: judge them a grace later
        back = self.storage.reconnected_at
        stale_ok = back is None or time.monotonic() - back > self.grace
        for slot in slots.values():
            if slot.state is TrialState.INTERRUPTED or (
                    slot.trial_id not in mine and (
                        is_lost(slot, self.grace, now) if stale_ok else is_gone(slot.worker))):
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
        """Propose configuration ``k`` and claim its slots, holding the stage's proposal
        turn (a lease in the database) so that no two processes ask Optuna for the same
        configuration: a lost race would leave a trial in the study that never ran. False
        when another process holds the turn (look again after a pause); True once ``k``
        is claimed, by this process or another."""
        lease = f"propose:{plan.stage_id}"
        for _ in range(PROPOSAL_TRIES):
            if self.storage.take_lease(lease, self.name, PROPOSAL_LEASE_SECONDS):
                break
            # a process of this machine killed while it held the turn: take it at once
            holder = self.storage.lease_holder(lease)
            if holder is not None and is_gone(holder) and self.storage.take_lease(
                    lease, self.name, PROPOSAL_LEASE_SECONDS, taking_from=holder):
                break
            time.sleep(POLL_SECONDS / 10)
        else:
            return False
        try:
            slots = self.storage.stage_slots(plan.stage_id)
            if slots and max(s.slot for s in slots) // stage.replicates >= k:
                return True  # another process proposed it while this one waited
            self._propose(study, index, stage, plan, k)
        finally:
            self.storage.give_back_lease(lease, self.name)
        return True

    def _propose(self, study: optuna.Study, index: int, stage: StageSpec, plan: _Plan,
                 k: int) -> None:
        queued = plan.queue[k] if k < len(plan.queue) else None
        trial, params = self._optuna(lambda: propose(study, plan.space, plan.fixed, queued, k))
        if k < len(plan.queue):
            params = {**plan.queue[k], **params}
        specs = []
        for r in range(stage.replicates):
            slot = k * stage.replicates + r
            seeds = {"seed": trial_seed(self.spec.seed, index, slot),
                     "data_seed": stage_data_seed(self.spec.seed, index, r)}
            if plan.fixed.get("data_seed") is not None:  # the spec's own data seed
                seeds["data_seed"] = plan.fixed["data_seed"]
            specs.append((slot, TrialSpec.from_mapping({**plan.fixed, **params, **seeds})))
        claimed = self.storage.claim_slots(
            self.sweep.id, plan.stage_id, [(slot, s.to_dict(), s.seed) for slot, s in specs],
            study_trial=trial.number, worker=self.name)
        if claimed is None:  # only beside a process that does not take the proposal turn
            self._optuna(lambda: discard(study, trial, "another process proposed this "
                                                       "configuration first"))
            return
        snapshot = self._snapshot(study, stage, trial.number)
        for (slot, trial_spec), (trial_id, number) in zip(specs, claimed, strict=True):
            self._submit(stage, _Running(stage.name, k, slot, trial_id, number, trial.number,
                                         time.monotonic(), None, 0), trial_spec, snapshot)

    def _snapshot(self, study: optuna.Study, stage: StageSpec,
                  number: int | None) -> PruneSnapshot | None:
        """The study's trials before Optuna trial ``number``, for pruning in the worker."""
        if stage.pruner == "none" or number is None:
            return None
        trials = self._optuna(lambda: trials_before(study, number))
        if stage.pruner == "front":  # the rung values of the told trials are all it needs
            rule = rule_from(trials, self.spec.stage_objectives(stage), stage.prune_share)
            return PruneSnapshot(stage.pruner, study.study_name, (), number, front=rule)
        return PruneSnapshot(stage.pruner, study.study_name, trials, number)

    def _submit(self, stage: StageSpec, job: _Running, trial_spec: TrialSpec,
                snapshot: PruneSnapshot | None) -> None:
        """A claimed trial waits in ``pending`` until :meth:`_start_groups` starts it in a
        group with the trials claimed beside it."""
        job.estimate = self._estimated(trial_spec)
        self.notify(TrialEvent("started", stage.name, job.number, estimate=job.estimate,
                               trial_id=job.trial_id))
        self.heart.add(job.trial_id)
        self.pending.append((job, trial_spec, snapshot))

    def _wait_for_trials(self) -> set[Future[TrialOutcome]]:
        """Wait up to 5 s for a running trial to end, taking the curve points the running
        trials measure meanwhile (every LIVE_POLL_SECONDS)."""
        give_up = time.monotonic() + 5.0
        while True:
            done, _ = wait(list(self.running), timeout=LIVE_POLL_SECONDS,
                           return_when=FIRST_COMPLETED)
            self._take_points(self.live.take())  # before an ended trial's whole curve
            if done or time.monotonic() >= give_up:
                return done

    def _take_points(self, messages: Sequence[Message]) -> None:
        """Curve points measured by running trials of this process: stored, the latest
        val_acc told to their Optuna trial as an intermediate value, and shown. A trial
        measures a point every few seconds at most in real runs, so every point is told;
        a faster one's running curve in Optuna is the points of each look (its whole curve
        is told when it ends). Only points of a trial that is still RUNNING are stored; the
        whole curve replaces them when it ends. Best effort: a point the database does not
        take now is stored with the whole curve."""
        merged: dict[int, tuple[int, list[CurvePoint]]] = {}  # one write per trial
        for trial_id, total, points in messages:
            merged[trial_id] = (total, [*merged.get(trial_id, (0, []))[1], *points])
        for trial_id, (total, points) in merged.items():
            job = self.training.get(trial_id)
            if job is None or not points:
                continue  # ended meanwhile: its whole curve is stored
            if not store_points(self.storage, trial_id, points):
                continue  # taken for lost meanwhile, or ended
            val = [(p.step, p.acc) for p in points if p.split == "val"]
            stage = next(st for st in self.spec.stages if st.name == job.stage)
            # one Optuna trial per configuration: with replicates its curve is no one's
            if job.study_trial is not None and stage.replicates == 1 and val:
                name, number = study_name(self.spec.name, job.stage), job.study_trial
                latest = val[-1:]  # one write per look: Optuna writes a value at a time
                with suppress(Exception):  # told at the end all the same (see tell)
                    self._optuna(lambda name=name, number=number, latest=latest:  # type: ignore[misc]
                                 report_running(self.ostorage, name, number, latest))
            last = max(points, key=lambda p: p.step)
            self.notify(TrialEvent("point", job.stage, job.number,
                                   val_acc=val[-1][1] if val else None, trial_id=trial_id,
                                   step=last.step, total=total))

    def _estimated(self, trial_spec: TrialSpec) -> float | None:
        """The planner's seconds for a trial; None when it has none or cannot say (an
        estimate is for the display: its arithmetic never stops a claimed trial)."""
        if self.estimate is None:
            return None
        try:
            seconds = float(self.estimate(trial_spec))
        except (ArithmeticError, ValueError):
            return None
        return seconds if math.isfinite(seconds) else None

    def _groups_running(self) -> int:
        return len({job.group for job in self.running.values()})

    def _start_groups(self, plan: _Plan, size: int) -> None:
        """The pending trials in groups of at most ``size`` that share a group key, each
        group one task of a worker; every trial gets a future of its own (``running``)."""
        pending, self.pending = self.pending, []
        for members in form_groups(pending, lambda p: p[1], size):
            self._submit_group(plan, members)

    def _submit_group(self, plan: _Plan,
                      members: list[tuple[_Running, TrialSpec, PruneSnapshot | None]]) -> None:
        jobs = [job for job, _, _ in members]
        # keyed by the slots it trains: a lone trial's is its own slot's
        checkpoint = checkpoint_path(self.checkpoint_dir, self.spec.name, jobs[0].stage,
                                     [job.slot for job in jobs])
        tasks = []
        for job, trial_spec, snapshot in members:
            shared = self.data.shared_for(trial_spec) if self.backend == "loky" else None
            watch_worker_deaths(shared)
            weights = (None if self.keep_weights == "none" else
                       str(weights_path(self.checkpoint_dir, self.spec.name, job.trial_id)))
            tasks.append(TrialTask(job.trial_id, trial_spec, self.data_source, self.threads,
                                   shared, snapshot, slot=job.slot, checkpoint=str(checkpoint),
                                   weights=weights, live=self.live.sink))
        task = GroupTask(tuple(tasks), plan.stage_id, self.sweep.id, str(checkpoint))
        for job in jobs:
            job.group = task.group_id
            job.checkpoint = checkpoint
            job.started = time.monotonic()
            self.training[job.trial_id] = job
        self.inline = jobs[0]  # Ctrl-C while --jobs 1 runs the group in this process
        try:
            future = self.pool.submit(execute_group_announced, task)
        except BrokenExecutor:  # a loky worker died: its trials fail in _finish; a new pool
            self.pool = make_executor(self.jobs, self.backend, self.scheduler)
            future = self.pool.submit(execute_group_announced, task)
        self.inline = None
        children: list[Future[TrialOutcome]] = [Future() for _ in jobs]
        for child, job in zip(children, jobs, strict=True):
            self.running[child] = job

        def share_out(done: Future[list[TrialOutcome]]) -> None:
            try:
                outcomes = done.result()
            except BaseException as exc:  # the worker died, or took a Ctrl-C: each trial
                # sees it (raised here, loky's thread would print it with a traceback)
                for child in children:
                    child.set_exception(exc)
                return
            for child, outcome in zip(children, outcomes, strict=True):
                child.set_result(outcome)

        future.add_done_callback(share_out)

    def _finish(self, future: Future[TrialOutcome], study: optuna.Study,
                stage: StageSpec) -> None:
        job = self.running.pop(future)
        self.training.pop(job.trial_id, None)
        self.live.forget(job.trial_id)
        try:
            outcome = future.result()
        except Exception as exc:  # the worker process died (killed, out of memory, ...)
            if self.backend == "loky":
                self.pool = make_executor(self.jobs, self.backend)  # a fresh pool
            verdict = judge_worker_loss(self.storage, job.trial_id, exc,
                                        self.data.folder, MAX_LOST_ATTEMPTS)
            if not verdict.fail:
                self.storage.interrupt_trials([job.trial_id], verdict.message)
                self.heart.remove(job.trial_id)
                self.notify(TrialEvent("finished", stage.name, job.number,
                                       TrialState.INTERRUPTED, message=verdict.short,
                                       trial_id=job.trial_id))
                return
            outcome = TrialOutcome(job.trial_id, None, error=verdict.message,
                                   traceback=traceback.format_exc(), worker=self.name)
        try:
            if job.study_trial is not None:  # before the slot is final: then it may be told
                self._keep_outcome(study, stage, job, outcome)
            state = record_outcome(self.storage, outcome)
        except StorageUnavailable:  # past --db-wait: run() keeps what finished, then stops
            self.unsaved.append(outcome)
            raise
        self.heart.remove(job.trial_id)
        # stored: its group's checkpoint is of no more use once none of its trials runs here
        if state is not None and job.checkpoint is not None and not any(
                j.group == job.group for j in self.running.values()):
            clear_state(job.checkpoint)
        if state is None:
            self.notify(TrialEvent("finished", stage.name, job.number, TrialState.INTERRUPTED,
                                   message="taken for lost meanwhile: result not kept",
                                   trial_id=job.trial_id))
            return
        self.finished += 1
        val = outcome.result.val_acc if outcome.result else None
        message = outcome.error or (outcome.result.message if outcome.result else "")
        self.notify(TrialEvent("finished", stage.name, job.number, state, val, message,
                               estimate=job.estimate, seconds=trial_seconds(outcome),
                               trial_id=job.trial_id,
                               group_size=outcome.group[1] if outcome.group else 1))

    def _told_values(self, records: Sequence[SlotRecord], objectives: Sequence[Objective]
                     ) -> tuple[float, ...] | None:
        """The mean of each objective over a configuration's complete trials."""
        ids = [s.trial_id for s in records if s.state is TrialState.COMPLETE]
        if not ids:
            return None
        return mean_values([t.metrics for t in self.storage.get_trials(trial_ids=ids)],
                           objectives)

    def _tell_ready(self, study: optuna.Study, reps: int, slots: Mapping[int, SlotRecord],
                    told: int, limit: int) -> int:
        """Tell the study, in order, configurations ``told`` .. ``limit - 1`` whose trials
        are all final (whichever process ran them); returns the new ``told``."""
        objectives = self.study_objectives[study.study_name]
        while told < limit:
            records = [slots.get(told * reps + r) for r in range(reps)]
            if not all(_final(s) for s in records):
                break
            final = [s for s in records if s is not None]
            curve = self._val_curve(final[0].trial_id) if len(final) == 1 else []
            values = self._told_values(final, objectives)
            self._optuna(lambda final=final, curve=curve, values=values:  # type: ignore[misc]
                         tell(study, self.ostorage, final, curve, values))
            told += 1
        return told

    def _keep_outcome(self, study: optuna.Study, stage: StageSpec, job: _Running,
                      outcome: TrialOutcome) -> None:
        """What the finished trial tells its Optuna trial (see :func:`trial_user_attrs`); a
        configuration run several times keeps each replicate's under ``replicate<r>.``."""
        assert job.study_trial is not None
        result = outcome.result
        metrics = {**result.metrics(), **objective_metrics(result)} if result is not None else {}
        # the searched values are the Optuna trial's own parameters; these are the rest the
        # spec sets, as the trial resolved them, and its seed
        shown = {*self.spec.stage_fixed(stage), "seed", "data_seed"}
        params = ({k: v for k, v in result.spec.to_dict().items() if k in shown}
                  if result is not None else {})
        extra: dict[str, Any] = {"error": outcome.error} if outcome.error else {}
        if outcome.group is not None:
            extra.update(group=outcome.group[0], group_size=outcome.group[1])
        extra.update(rung_attrs(outcome.rungs))
        attrs = trial_user_attrs(outcome.trial_id, metrics, params, extra)
        reports = outcome.reports
        system_attrs = outcome.system_attrs
        if stage.replicates > 1:
            r = job.slot % stage.replicates
            attrs = {f"replicate{r}.{k}": v for k, v in attrs.items()}
            reports, system_attrs = (), {}
        number = job.study_trial
        self._optuna(lambda: keep_outcome(study, self.ostorage, number, attrs, reports,
                                          system_attrs))

    def _val_curve(self, trial_id: int) -> list[tuple[int, float]]:
        """A trial's validation accuracy at each curve point (the study's learning curve)."""
        return [(c.step, c.acc) for c in self.storage.get_curves([trial_id])
                if c.split == "val" and math.isfinite(c.acc)]

    def _summary(self, stage: StageSpec, plan: _Plan,
                 slots: Mapping[int, SlotRecord]) -> StageSummary:
        objectives = self.spec.stage_objectives(stage)
        trials = self._source_trials([stage.name], objectives)
        values = [objective_values(t.metrics, objectives) or () for t in trials]
        best = chosen(trials, values, objectives, stage.pick) if trials else None
        names = [n for p in self.spec.space.values() for n in p.names]
        params = {n: best.params[n] for n in names if n in best.params} if best else None
        rec = self.storage.get_stage(self.sweep.id, self.spec.stages.index(stage))
        note = rec.note if rec is not None else plan.note
        planned = self._n_configs(plan, self.spec.stages.index(stage)) * stage.replicates
        return StageSummary(
            stage.name, planned, _counts(slots.values()),
            best.metrics.get("val_acc") if best else None, params, sampler=stage.sampler,
            note=note, reused=len(plan.reused),
            best_test_acc=best.metrics.get("test_acc") if best else None,
            best_trial=best.id if best else None)


def _counts(slots: Iterable[SlotRecord]) -> dict[str, int]:
    """Planned trials by the state of their latest attempt (the attempt that counts)."""
    out: dict[str, int] = {}
    for s in slots:
        out[s.state.value] = out.get(s.state.value, 0) + 1
    return out


def run_sweep(spec: SweepSpec, storage: Storage, *, data_source: str | None,
              jobs: int | None = 1,
              threads: int | None = None, on_event: EventHandler | None = None,
              estimate: Estimator | None = None, time_budget: float | None = None,
              backend: str = "loky", scheduler: str | None = None,
              grace: float = DEFAULT_GRACE, checkpoint_dir: str | Path | None = None,
              keep_weights: str = DEFAULT_KEEP,
              group_size: int | None = None, force: bool = False) -> list[StageSummary]:
    """Run every stage of ``spec`` in order and store every trial; returns a summary per stage.

    ``threads`` is the BLAS thread count per trial (default 1); ``estimate``
    gives the planner's seconds for a trial (shown against the measured time);
    ``time_budget`` (seconds) stops proposing new trials once it is used up. ``backend`` is
    ``loky`` (``jobs`` worker processes on this machine) or ``dask`` (the cluster whose
    scheduler is at ``scheduler``). ``group_size`` trains up to that many trials of a stage
    together as fused groups (0 or 1: one at a time; None: chosen per stage, see
    :func:`grouping.auto_group_size`). ``force`` allows trials longer than
    :data:`guards.LONG_RUN_UPDATES` updates. Other processes may join with
    :func:`resume_sweep`. Raises :class:`SweepInterrupted` on Ctrl-C.
    """
    deadline = time.monotonic() + time_budget if time_budget else None
    return SweepRunner(spec, storage, data_source=data_source, jobs=jobs, threads=threads,
                       on_event=on_event, estimate=estimate, deadline=deadline,
                       backend=backend, scheduler=scheduler, grace=grace,
                       checkpoint_dir=checkpoint_dir, keep_weights=keep_weights,
                       group_size=group_size, force=force).run()


def create_sweep(spec: SweepSpec, storage: Storage, *, data_source: str | None,
                 threads: int | None = None, checkpoint_dir: str | Path | None = None,
                 keep_weights: str = DEFAULT_KEEP) -> SweepRecord:
    """Store a sweep without running it, for :func:`resume_sweep` (``numsweep worker``)
    processes to run."""
    with starting(storage, spec.name, worker_name()):  # two at once: the second is refused
        if any(s.name == spec.name for s in storage.list_sweeps()):
            raise SweepSpecError(f"sweep {spec.name!r} already exists in {storage.shown_url}; "
                                 f"continue it with `numsweep worker {shlex.quote(spec.name)}`, "
                                 f"use another name (name=NEW), or start over after "
                                 f"`numsweep sweep delete {shlex.quote(spec.name)}`")
        # Optuna's tables, before workers race to make them
        optuna_storage(storage.engine_url, storage.db_wait)
        return storage.get_or_create_sweep(
            spec.name, spec.to_dict(), spec.seed, data_fingerprint=fingerprint_of(data_source),
            run=RunSettings(absolute_data(data_source),
                            threads if threads is not None else DEFAULT_THREADS,
                            str(checkpoint_root(storage, checkpoint_dir)),
                            check_policy(keep_weights)))


def stored_spec(storage: Storage, name: str) -> tuple[SweepSpec, str | None, int | None]:
    """A sweep's spec as stored in the database, with the data path and BLAS threads it was
    started with."""
    record = storage.get_sweep(name)
    raw = dict(record.spec)
    if raw.get("single"):
        raise SweepSpecError(f"{name!r} holds single trials (numsweep train), not a sweep")
    run = record.run or RunSettings()
    return parse_spec(raw, f"sweep {name!r} in {storage.shown_url}"), run.data, run.threads


def resume_sweep(name: str, storage: Storage, *, data_source: str | None = None,
                 jobs: int | None = 1, threads: int | None = None,
                 on_event: EventHandler | None = None, estimate: Estimator | None = None,
                 backend: str = "loky", scheduler: str | None = None,
                 grace: float = DEFAULT_GRACE, checkpoint_dir: str | Path | None = None,
                 keep_weights: str | None = None,
                 device: str | None = None,
                 group_size: int | None = None, force: bool = False) -> list[StageSummary]:
    """Continue sweep ``name`` from the spec stored in the database, beside any other
    processes working on it: run what is left, again what was interrupted or lost (no
    heartbeat for ``grace`` seconds), and nothing twice. ``data_source`` defaults to the data
    the sweep was started with (give the path on this machine); ``checkpoint_dir`` and
    ``keep_weights`` to the ones it was started with. A lost or interrupted trial continues
    from its checkpoint. ``device`` (``cpu``, ``cuda``) sets the device parameter of the
    trials this process trains. ``group_size`` (see :func:`run_sweep`) sets the stages this
    process plans and how many trials it trains together; stages already planned keep their
    stored size for their proposals. ``force``: see :func:`run_sweep`."""
    spec, stored_data, stored_threads = stored_spec(storage, name)
    stored_policy, stored_root = sweep_policy(storage, name)
    if device is not None:
        spec = spec.with_overrides({"device": device})
    runner = SweepRunner(spec, storage, data_source=data_source or stored_data, jobs=jobs,
                         threads=threads if threads is not None else stored_threads,
                         on_event=on_event, estimate=estimate, deadline=None, resume=True,
                         backend=backend, scheduler=scheduler, grace=grace,
                         checkpoint_dir=checkpoint_dir or stored_root,
                         keep_weights=keep_weights or stored_policy, group_size=group_size,
                         force=force)
    return runner.run()


