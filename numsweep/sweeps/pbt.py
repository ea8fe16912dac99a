"""A ``pbt`` stage: its population (``population`` members, one stored trial each with its
initial values from the stage's plan and its own seed) trained as ONE task of a worker
(``engine.train_population``: every ``interval`` updates the weakest members copy the
strongest and perturb their values), then each member stored as a normal trial and every
exploit step as the stage's lineage (``Storage.record_lineage``).

A pbt stage has no Optuna study: its exploit decisions are the engine's, drawn from the
stage's own seed. The population trains with a checkpoint (keyed by the stage's slots, so a
resume finds it): when its process is killed, ``sweep resume`` claims the members again and
the population continues from its last exploit step with the same history.
"""

from __future__ import annotations

import dataclasses
import time
import traceback
from collections.abc import Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, wait
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from threadpoolctl import threadpool_limits

from numsweep.engine import TrialSpec
from numsweep.engine.checkpoint import clear_state
from numsweep.storage import (
    TrialState,
)
from numsweep.sweeps.claims import lost_slot
from numsweep.sweeps.context import RunningTrial, SweepContext
from numsweep.sweeps.deaths import judge_worker_loss
from numsweep.sweeps.events import StageSummary, TrialEvent
from numsweep.sweeps.kept import apply_policy, checkpoint_path, weights_path
from numsweep.sweeps.liveness import MAX_LOST_ATTEMPTS, POLL_SECONDS
from numsweep.sweeps.planning import stage_plan, stage_summary
from numsweep.sweeps.population import member_specs, pbt_settings
from numsweep.sweeps.results import record_outcome
from numsweep.sweeps.slots import final, latest, slot_counts
from numsweep.sweeps.spec import StageSpec, SweepSpecError
from numsweep.sweeps.submission import LIVE_POLL_SECONDS, store_outcome, take_points
from numsweep.sweeps.worker import (
    TrialOutcome,
    TrialTask,
    load_split,
    prepared_for,
    worker_name,
)

if TYPE_CHECKING:
    from numsweep.engine.pbt import ExploitEvent, PBTSettings


@dataclass(frozen=True)
class PopulationTask:
    """A pbt stage's members (in population order) trained together by
    :func:`execute_population`; its checkpoint keyed by the stage's slots."""

    members: tuple[TrialTask, ...]
    settings: PBTSettings
    checkpoint: str | None

    @property
    def group_id(self) -> int:
        return self.members[0].trial_id


@dataclass(frozen=True)
class PopulationOutcome:
    """Each member's outcome (in order), every exploit step, and the seconds they took."""

    outcomes: tuple[TrialOutcome, ...]
    events: tuple[ExploitEvent, ...] = ()
    exploit_seconds: float = 0.0


def execute_population(task: PopulationTask) -> PopulationOutcome:
    """In a worker: train the population (``engine.train_population``); never raises (an
    exception fails every member)."""
    from numsweep.engine.pbt import train_population
    from numsweep.sweeps.live import watcher

    members = task.members
    group = (task.group_id, len(members))
    try:
        first = members[0]
        split = load_split(first)
        with threadpool_limits(limits=first.blas_threads):
            population = train_population(
                [m.spec for m in members], split, task.settings,
                prepared=prepared_for(first.spec, split, first.shared),
                checkpoint=task.checkpoint,
                on_points=[None if m.live is None else watcher(m.live, m.trial_id)
                           for m in members],
                weights=[m.weights for m in members])
        name = worker_name()
        return PopulationOutcome(
            tuple(TrialOutcome(m.trial_id, result, worker=name, group=group)
                  for m, result in zip(members, population.results, strict=True)),
            tuple(population.events), float(population.exploit_seconds))
    except Exception as exc:  # the sweep records it for every member and goes on
        return PopulationOutcome(tuple(
            TrialOutcome(m.trial_id, None, error=f"{type(exc).__name__}: {exc}",
                         traceback=traceback.format_exc(), worker=worker_name(), group=group)
            for m in members))


def run_pbt_stage(ctx: SweepContext, index: int, stage: StageSpec) -> StageSummary:
    """Run a pbt stage to its end: claim the members (again, when a process running them is
    gone), train the population, store the members and the lineage; leaves when every
    member is final (trained here or by another process)."""
    storage, settings = ctx.storage, ctx.settings
    plan = stage_plan(ctx, index, stage)
    population = plan.n_configs
    slots = latest(storage.stage_slots(plan.stage_id))
    settings.notify(TrialEvent("stage", stage.name, planned=population, reused=0,
                               message=plan.note, counts=slot_counts(slots.values()),
                               jobs=ctx.pool.jobs, group_size=population))
    specs = member_specs(ctx.spec.seed, index, plan.fixed, plan.queue, settings.device)
    engine_settings = pbt_settings(stage, plan.space, ctx.spec.seed, index)
    _check_interval(stage, specs[0], ctx)
    while True:
        slots = latest(storage.stage_slots(plan.stage_id))
        if len(slots) >= population and all(final(slots.get(s)) for s in range(population)):
            break
        members = _claim(ctx, plan.stage_id, stage, specs, slots)
        if members is None:  # another process trains it: look again after a pause
            time.sleep(POLL_SECONDS)
            continue
        _train(ctx, plan.stage_id, stage, specs, engine_settings, members)
    apply_policy(storage, ctx.spec.name, settings.checkpoint_dir, settings.keep_weights,
                 stages=[stage.name])
    return stage_summary(ctx, index, stage, plan, slots)


def _check_interval(stage: StageSpec, spec: TrialSpec, ctx: SweepContext) -> None:
    """``interval`` below the run's updates, on the data's n_train (the spec could not say
    when n_train is not fixed)."""
    from numsweep.engine.runplan import planned_updates

    assert stage.pbt is not None
    n_train = spec.n_train or len(ctx.data.dataset.x_train) - spec.n_val
    updates = planned_updates(spec, n_train)
    if stage.pbt.interval >= updates:
        raise SweepSpecError(f"{ctx.spec.origin}: stages.{stage.name}.interval="
                             f"{stage.pbt.interval} must be below the run's {updates} "
                             "updates (else no exploit step happens)")


def _claim(ctx: SweepContext, stage_id: int, stage: StageSpec, specs: Sequence[TrialSpec],
           slots: Mapping[int, Any]) -> dict[int, RunningTrial] | None:
    """The members this process trains now, by slot: all of them claimed at once the first
    time; afterwards every member that is not final, claimed again once none of them runs
    in a live process (the population trains whole). None when another process has it."""
    storage, me = ctx.storage, ctx.settings.name
    now = time.monotonic()
    if not slots:
        claimed = storage.claim_slots(
            ctx.sweep.id, stage_id, [(slot, s.to_dict(), s.seed) for slot, s in enumerate(specs)],
            study_trial=None, worker=me)
        if claimed is None:
            return None
        return {slot: RunningTrial(stage.name, slot, slot, trial_id, number, None, now, None)
                for slot, (trial_id, number) in enumerate(claimed)}
    open_slots = {s: r for s, r in slots.items() if not final(r)}
    if len(slots) < len(specs):  # a claim cut short cannot happen (one transaction)
        raise SweepSpecError(f"stage {stage.name!r} holds {len(slots)} members, not the "
                             f"{len(specs)} it planned")
    members = {}
    for slot, record in sorted(open_slots.items()):
        if record.state is not TrialState.INTERRUPTED and lost_slot(ctx, {slot: record}) is None:
            return None  # still trained by a live process
    for slot, record in sorted(open_slots.items()):
        seen = ("never" if record.heartbeat_at is None
                else f"{record.heartbeat_at:%H:%M:%S} UTC")
        again = storage.claim_again(
            record.trial_id, worker=me, seen_heartbeat=record.heartbeat_at,
            lost_message=f"lost: no heartbeat from {record.worker} since {seen} (its process "
                         f"is gone); its population runs again as attempt "
                         f"{record.attempt + 1}")
        if again is None:
            continue  # another process took it: it trains the population
        trial_id, number = again
        members[slot] = RunningTrial(stage.name, slot, slot, trial_id, number, None, now, None,
                                     record.attempt + 1)
    if len(members) < len(open_slots):
        # another process took some: the ones this process took run again later
        if members:
            storage.interrupt_trials([j.trial_id for j in members.values()],
                                     "another process trains its population")
        return None
    return members


def _train(ctx: SweepContext, stage_id: int, stage: StageSpec, specs: Sequence[TrialSpec],
           engine_settings: PBTSettings, members: Mapping[int, RunningTrial]) -> None:
    """Train the whole population as one task; store the members claimed here (by slot)
    and the lineage."""
    settings, trials = ctx.settings, ctx.trials
    population = len(specs)
    checkpoint = checkpoint_path(settings.checkpoint_dir, ctx.spec.name, stage.name,
                                 list(range(population)))
    # the members stored already (final) train again with a trial id of their own place
    ids = _member_ids(ctx, stage_id, members, population)
    tasks = []
    for slot, spec in enumerate(specs):
        shared = ctx.data.shared_for(spec) if ctx.pool.local else None
        job = members.get(slot)
        weights = (None if settings.keep_weights == "none" or job is None else
                   str(weights_path(settings.checkpoint_dir, ctx.spec.name, job.trial_id)))
        tasks.append(TrialTask(ids[slot], spec, settings.data_source, settings.threads, shared,
                               slot=slot, checkpoint=str(checkpoint), weights=weights,
                               live=ctx.live.sink if job is not None else None))
    task = PopulationTask(tuple(tasks), engine_settings, str(checkpoint))
    children: dict[Future[TrialOutcome], RunningTrial] = {}
    for job in members.values():
        job.group, job.checkpoint, job.started = task.group_id, checkpoint, time.monotonic()
        settings.notify(TrialEvent("started", stage.name, job.number, trial_id=job.trial_id))
        ctx.heart.add(job.trial_id)
        trials.training[job.trial_id] = job
        children[Future()] = job
    trials.running.update(children)  # so that Ctrl-C marks them interrupted
    trials.inline = next(iter(members.values()))  # --jobs 1 trains it in this process
    try:
        future = ctx.pool.submit(execute_population, task)
    finally:
        trials.inline = None
    try:
        while True:
            done, _ = wait([future], timeout=LIVE_POLL_SECONDS, return_when=FIRST_COMPLETED)
            take_points(ctx, ctx.live.take())
            if done:
                break
    finally:
        for child in children:
            trials.running.pop(child, None)
    for job in members.values():
        trials.training.pop(job.trial_id, None)
        ctx.live.forget(job.trial_id)
    try:
        outcome: PopulationOutcome = future.result()
    except Exception as exc:  # the worker process died (killed, out of memory, ...)
        ctx.pool.after_worker_death()
        _judge_loss(ctx, stage, list(members.values()), exc)
        return
    _store(ctx, stage_id, stage, members, ids, outcome)
    clear_state(checkpoint)


def _member_ids(ctx: SweepContext, stage_id: int, members: Mapping[int, RunningTrial],
                population: int) -> list[int]:
    """The trial id of each member: the attempt claimed here, else its latest stored one."""
    slots = latest(ctx.storage.stage_slots(stage_id))
    return [members[s].trial_id if s in members else slots[s].trial_id
            for s in range(population)]


def _judge_loss(ctx: SweepContext, stage: StageSpec, jobs: Sequence[RunningTrial],
                exc: BaseException) -> None:
    """The population's worker died: every member runs again (its checkpoint kept), or, lost
    too often, fails."""
    verdict = judge_worker_loss(ctx.storage, jobs[0].trial_id, exc, ctx.data.folder,
                                MAX_LOST_ATTEMPTS)
    ids = [job.trial_id for job in jobs]
    if verdict.fail:
        for job in jobs:
            record_outcome(ctx.storage, TrialOutcome(job.trial_id, None, error=verdict.message,
                                                     worker=ctx.settings.name))
    else:
        ctx.storage.interrupt_trials(ids, verdict.message)
    for job in jobs:
        ctx.heart.remove(job.trial_id)
        ctx.settings.notify(TrialEvent(
            "finished", stage.name, job.number,
            TrialState.FAILED if verdict.fail else TrialState.INTERRUPTED,
            message=verdict.short, trial_id=job.trial_id))


def _store(ctx: SweepContext, stage_id: int, stage: StageSpec,
           members: Mapping[int, RunningTrial], ids: Sequence[int],
           outcome: PopulationOutcome) -> None:
    """The lineage (the whole history, in place of any stored), then each member claimed
    here as a normal trial; the exploit share in the stage's note."""
    storage = ctx.storage
    steps = [(ids[e.member], int(e.update), ids[e.source], float(e.metric_member),
              float(e.metric_source), dict(e.before), dict(e.after)) for e in outcome.events]
    if outcome.events or all(o.result is not None for o in outcome.outcomes):
        storage.record_lineage(stage_id, steps)
    for slot, job in sorted(members.items()):
        result = outcome.outcomes[slot]
        # a member is a trial like any other: stored and shown as submission stores them
        store_outcome(ctx, job, dataclasses.replace(
            result, trial_id=job.trial_id, group=result.group or (ids[0], len(ids))),
            None, stage)
    if any(o.result is not None for o in outcome.outcomes):
        storage.merge_stage_space(stage_id, {"exploit_seconds": outcome.exploit_seconds,
                                             "exploit_steps": len(outcome.events)})
