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
  else to the rounding above). That is batch grouping (``grouping="batch"``);
- slot groups (``grouping="slots"``, for K > 1 the default of a stage with a pruner or a
  sampler that learns from results; a fixed list of equally long trials defaults to batch
  groups, so its metrics depend on neither ``--jobs`` nor K; :mod:`slot_stage`): a slot
  freed by a trial that ended is refilled at once, and a sampler is asked then, knowing
  every result told so far (no lag). One process (``--jobs 1``), the same sweep seed and the
  same K give the same trials and metrics, bit for bit. With several processes the sampler
  sees results in the order they arrive, so what TPE, GP or CMA-ES propose (and the step a
  trial joins its group at, and so the batches it trains on) depends on timing; grid,
  ``configs``, random and qmc stages stay fixed lists of configurations. Each trial stores
  the group step it joined at (``data_offset``), so it reruns alone to the same metrics.
"""

from __future__ import annotations

import shlex
import time
from pathlib import Path

from numsweep.shield import ctrl_c_deferred
from numsweep.storage import RunSettings as StoredRunSettings
from numsweep.storage import Storage, SweepRecord
from numsweep.sweeps.claims import lost_slot, run_again
from numsweep.sweeps.context import InFlight, ProcessSettings, SweepContext
from numsweep.sweeps.dataset_cache import absolute_data
from numsweep.sweeps.events import Estimator, EventHandler, StageSummary, TrialEvent
from numsweep.sweeps.executors import DEFAULT_THREADS
from numsweep.sweeps.grouping import proposal_lag
from numsweep.sweeps.guards import fingerprint_of
from numsweep.sweeps.kept import (
    DEFAULT_KEEP,
    apply_policy,
    check_policy,
    checkpoint_root,
    sweep_policy,
)
from numsweep.sweeps.lifecycle import opened, starting
from numsweep.sweeps.liveness import DEFAULT_GRACE, POLL_SECONDS
from numsweep.sweeps.optuna_bridge import optuna_storage
from numsweep.sweeps.pbt import run_pbt_stage
from numsweep.sweeps.planning import (
    check_grouping,
    cut,
    exec_group_size,
    exec_grouping,
    planned_configs,
    stage_plan,
    stage_summary,
)
from numsweep.sweeps.proposals import new_config
from numsweep.sweeps.slot_stage import SlotStage, slots_fit
from numsweep.sweeps.slots import final, latest, slot_counts
from numsweep.sweeps.spec import StageSpec, SweepSpec, SweepSpecError, parse_spec
from numsweep.sweeps.studies import stage_study
from numsweep.sweeps.submission import finish, start_groups, wait_for_trials
from numsweep.sweeps.telling import tell_ready
from numsweep.sweeps.worker import worker_name


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

    The stage loop is here; each of its other jobs is a module of its own (see
    ``numsweep/sweeps/__init__.py``), working on the state this process shares among them
    (:mod:`numsweep.sweeps.context`).
    """

    def __init__(self, spec: SweepSpec, storage: Storage, *, data_source: str | None,
                 jobs: int | None, threads: int | None, on_event: EventHandler | None,
                 estimate: Estimator | None, deadline: float | None, resume: bool = False,
                 backend: str = "loky", scheduler: str | None = None,
                 grace: float = DEFAULT_GRACE, checkpoint_dir: str | Path | None = None,
                 keep_weights: str = DEFAULT_KEEP, group_size: int | None = None,
                 force: bool = False, device: str | None = None,
                 grouping: str | None = None) -> None:
        if jobs is not None and jobs < 1:
            raise ValueError(f"--jobs must be at least 1, got {jobs}")
        if jobs is None and backend != "dask":
            raise ValueError("--jobs is needed unless the backend is dask")
        if grace <= 0:
            raise ValueError(f"--grace must be positive, got {grace}")
        if group_size is not None and group_size < 0:
            raise ValueError(f"--group-size must be 0 or more, got {group_size}")
        self.storage = storage
        self.settings = ProcessSettings(
            spec=spec, data_source=absolute_data(data_source), jobs=jobs,
            threads=threads if threads is not None else DEFAULT_THREADS, backend=backend,
            scheduler=scheduler, grace=grace,
            checkpoint_dir=checkpoint_root(storage, checkpoint_dir),
            keep_weights=check_policy(keep_weights),
            group_size=None if group_size is None else max(group_size, 1), force=force,
            resume=resume, deadline=deadline, name=worker_name(), device=device,
            grouping=check_grouping(grouping), notify=on_event or (lambda _event: None),
            estimate=estimate)
        self.trials = InFlight()

    def run(self) -> list[StageSummary]:
        with ctrl_c_deferred():  # in a notebook too, Ctrl-C cuts no transaction short
            if self.settings.resume:
                return self._run_claimed()
            with starting(self.storage, self.settings.spec.name, self.settings.name):
                return self._run_claimed()

    def _run_claimed(self) -> list[StageSummary]:
        with opened(self.settings, self.storage, self.trials) as ctx:
            return [self._run_stage(ctx, i, stage)
                    for i, stage in enumerate(self.settings.spec.stages)]

    def _run_stage(self, ctx: SweepContext, index: int, stage: StageSpec) -> StageSummary:
        if stage.sampler == "pbt":  # one population task, no Optuna study (sweeps.pbt)
            return run_pbt_stage(ctx, index, stage)
        settings, storage, trials = ctx.settings, ctx.storage, ctx.trials
        plan = stage_plan(ctx, index, stage)
        reps = stage.replicates
        slots = latest(storage.stage_slots(plan.stage_id))
        size = exec_group_size(settings, plan)
        batch = plan.stored.group_size or 1  # proposals come in batches of the stored size
        sync = proposal_lag(stage.sync, batch)
        settings.notify(TrialEvent(
            "stage", stage.name, planned=plan.n_configs * reps, reused=len(plan.reused),
            message=plan.note, counts=slot_counts(slots.values()), jobs=ctx.pool.jobs,
            group_size=size, group_auto=settings.group_size is None and plan.stored.group_auto))
        slotted = size > 1 and exec_grouping(settings, plan) == "slots" and slots_fit(plan)
        study = stage_study(ctx, index, stage, plan, liar=slotted)
        lagged = stage.waits_for_results
        stage_deadline = (time.monotonic() + stage.time_budget if stage.time_budget else None)
        # the sweep's budget never skips a final ``best`` stage: it is what the sweep is for
        sweep_deadline = None if stage.sampler == "best" else settings.deadline
        deadlines = [d for d in (stage_deadline, sweep_deadline) if d is not None]
        deadline = min(deadlines) if deadlines else None
        if slotted:
            slots = SlotStage(ctx, index, stage, plan, study, size, deadline).run()
            apply_policy(storage, ctx.spec.name, settings.checkpoint_dir,
                         settings.keep_weights, stages=[stage.name])
            return stage_summary(ctx, index, stage, plan, slots)
        told = 0  # configurations [0, told) are told to the study, in order

        while True:
            n_configs = planned_configs(ctx, plan, index)
            slots = latest(storage.stage_slots(plan.stage_id))
            proposed = max(slots) // reps + 1 if slots else 0
            if not lagged or proposed >= n_configs:
                told = tell_ready(ctx, study, reps, slots, told, proposed)
            while len(trials.pending) < size * (ctx.pool.jobs - trials.groups_running()):
                lost = lost_slot(ctx, slots)
                if lost is not None:
                    if not run_again(ctx, study, stage, lost):
                        break  # alive after all, or taken: look again after a pause
                elif proposed >= n_configs:
                    break
                elif deadline is not None and time.monotonic() > deadline and proposed:
                    n_configs = cut(ctx, index, stage, proposed)
                    break
                else:
                    k = proposed
                    if lagged:
                        first = k - k % batch  # the batch's first configuration
                        told = tell_ready(ctx, study, reps, slots, told, first - sync + 1)
                        if told < first - sync + 1:
                            break  # waits for the results of configuration first - sync
                    if not new_config(ctx, study, index, stage, plan, k):
                        break  # another process is proposing: look again after a pause
                slots = latest(storage.stage_slots(plan.stage_id))
                proposed = max(slots) // reps + 1 if slots else 0
            start_groups(ctx, plan.stage_id, size)
            if trials.running:
                done = wait_for_trials(ctx)
                for future in sorted(done, key=lambda f: trials.running[f].number):
                    finish(ctx, future, study, stage)
                continue
            if proposed >= n_configs and all(final(slots.get(s))
                                             for s in range(proposed * reps)):
                tell_ready(ctx, study, reps, slots, told, proposed)
                break
            time.sleep(POLL_SECONDS)  # other processes run this stage's last trials
        apply_policy(storage, ctx.spec.name, settings.checkpoint_dir, settings.keep_weights,
                     stages=[stage.name])
        return stage_summary(ctx, index, stage, plan, slots)


def run_sweep(spec: SweepSpec, storage: Storage, *, data_source: str | None,
              jobs: int | None = 1,
              threads: int | None = None, on_event: EventHandler | None = None,
              estimate: Estimator | None = None, time_budget: float | None = None,
              backend: str = "loky", scheduler: str | None = None,
              grace: float = DEFAULT_GRACE, checkpoint_dir: str | Path | None = None,
              keep_weights: str = DEFAULT_KEEP,
              group_size: int | None = None, force: bool = False,
              grouping: str | None = None) -> list[StageSummary]:
    """Run every stage of ``spec`` in order and store every trial; returns a summary per stage.

    ``threads`` is the BLAS thread count per trial (default 1); ``estimate``
    gives the planner's seconds for a trial (shown against the measured time);
    ``time_budget`` (seconds) stops proposing new trials once it is used up. ``backend`` is
    ``loky`` (``jobs`` worker processes on this machine) or ``dask`` (the cluster whose
    scheduler is at ``scheduler``). ``group_size`` trains up to that many trials of a stage
    together as fused groups (0 or 1: one at a time; None: chosen per stage, see
    :func:`grouping.auto_group_size`); ``grouping`` how the groups form: ``slots`` (a
    slot group refills a slot as soon as its trial ends, see :mod:`slot_stage`) or
    ``batch`` (a group's trials start together; the group ends with its last), stored with
    each stage; None: per stage (``defaults.default_grouping``: slots where a pruner or a
    sampler that learns from results makes trials end or start at different times, batch
    for a fixed list). ``force`` allows trials longer than
    :data:`guards.LONG_RUN_UPDATES` updates. Other processes may join with
    :func:`resume_sweep`. Raises :class:`SweepInterrupted` on Ctrl-C.
    """
    deadline = time.monotonic() + time_budget if time_budget else None
    return SweepRunner(spec, storage, data_source=data_source, jobs=jobs, threads=threads,
                       on_event=on_event, estimate=estimate, deadline=deadline,
                       backend=backend, scheduler=scheduler, grace=grace,
                       checkpoint_dir=checkpoint_dir, keep_weights=keep_weights,
                       group_size=group_size, force=force, grouping=grouping).run()


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
            run=StoredRunSettings(absolute_data(data_source),
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
    run = record.run or StoredRunSettings()
    return parse_spec(raw, f"sweep {name!r} in {storage.shown_url}"), run.data, run.threads


def resume_sweep(name: str, storage: Storage, *, data_source: str | None = None,
                 jobs: int | None = 1, threads: int | None = None,
                 on_event: EventHandler | None = None, estimate: Estimator | None = None,
                 backend: str = "loky", scheduler: str | None = None,
                 grace: float = DEFAULT_GRACE, checkpoint_dir: str | Path | None = None,
                 keep_weights: str | None = None,
                 device: str | None = None,
                 group_size: int | None = None, force: bool = False,
                 grouping: str | None = None) -> list[StageSummary]:
    """Continue sweep ``name`` from the spec stored in the database, beside any other
    processes working on it: run what is left, again what was interrupted or lost (no
    heartbeat for ``grace`` seconds), and nothing twice. ``data_source`` defaults to the data
    the sweep was started with (give the path on this machine); ``checkpoint_dir`` and
    ``keep_weights`` to the ones it was started with. A lost or interrupted trial continues
    from its checkpoint. ``device`` (``cpu``, ``cuda``) sets the device parameter of the
    trials this process trains. ``group_size`` (see :func:`run_sweep`) sets the stages this
    process plans and how many trials it trains together; stages already planned keep their
    stored size for their proposals. ``grouping`` (see :func:`run_sweep`; None: as each
    stage stored it, slots for a stage this process plans). ``force``: see
    :func:`run_sweep`."""
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
                         force=force, device=device, grouping=grouping)
    return runner.run()


