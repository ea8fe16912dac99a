"""Claimed trials to the worker pool and their outcomes back: a claimed trial waits
(:func:`submit`) until :func:`start_groups` starts it in a fused group with the trials
claimed beside it, one task of a worker; the curve points running trials measure are taken
(:func:`take_points`); an ended trial's outcome is stored, or its worker's death judged
(:func:`finish`)."""

from __future__ import annotations

import math
import time
import traceback
from collections.abc import Sequence
from concurrent.futures import FIRST_COMPLETED, BrokenExecutor, Future, wait
from contextlib import suppress
from typing import TYPE_CHECKING

from numsweep.engine import CurvePoint, TrialSpec
from numsweep.engine.checkpoint import clear_state
from numsweep.storage import StorageUnavailable, TrialState
from numsweep.sweeps.context import Pending, RunningTrial, SweepContext
from numsweep.sweeps.deaths import (
    execute_group_announced,
    judge_worker_loss,
    watch_worker_deaths,
)
from numsweep.sweeps.events import TrialEvent, trial_seconds
from numsweep.sweeps.grouping import form_groups
from numsweep.sweeps.kept import checkpoint_path, weights_path
from numsweep.sweeps.live import Message, store_points
from numsweep.sweeps.liveness import MAX_LOST_ATTEMPTS
from numsweep.sweeps.optuna_bridge import report_running, study_name
from numsweep.sweeps.results import record_outcome
from numsweep.sweeps.spec import StageSpec
from numsweep.sweeps.studies import optuna_call
from numsweep.sweeps.telling import keep_outcome
from numsweep.sweeps.worker import GroupTask, PruneSnapshot, TrialOutcome, TrialTask

if TYPE_CHECKING:
    import optuna

LIVE_POLL_SECONDS = 0.5
"""How often the sweep process takes the curve points its running trials measured."""
WAIT_SECONDS = 5.0
"""How long the stage loop waits for a running trial to end before it looks again."""


def submit(ctx: SweepContext, stage: StageSpec, job: RunningTrial, trial_spec: TrialSpec,
           snapshot: PruneSnapshot | None) -> None:
    """A claimed trial waits in ``pending`` until :func:`start_groups` starts it in a
    group with the trials claimed beside it."""
    job.estimate = _estimated(ctx, trial_spec)
    ctx.settings.notify(TrialEvent("started", stage.name, job.number, estimate=job.estimate,
                                   trial_id=job.trial_id))
    ctx.heart.add(job.trial_id)
    ctx.trials.pending.append((job, trial_spec, snapshot))


def _estimated(ctx: SweepContext, trial_spec: TrialSpec) -> float | None:
    """The planner's seconds for a trial; None when it has none or cannot say (an
    estimate is for the display: its arithmetic never stops a claimed trial)."""
    estimate = ctx.settings.estimate
    if estimate is None:
        return None
    try:
        seconds = float(estimate(trial_spec))
    except (ArithmeticError, ValueError):
        return None
    return seconds if math.isfinite(seconds) else None


def start_groups(ctx: SweepContext, stage_id: int, size: int) -> None:
    """The pending trials in groups of at most ``size`` that share a group key, each
    group one task of a worker; every trial gets a future of its own (``running``)."""
    pending, ctx.trials.pending = ctx.trials.pending, []
    for members in form_groups(pending, lambda p: p[1], size):
        _submit_group(ctx, stage_id, members)


def _submit_group(ctx: SweepContext, stage_id: int, members: list[Pending]) -> None:
    settings, trials = ctx.settings, ctx.trials
    jobs = [job for job, _, _ in members]
    # keyed by the slots it trains: a lone trial's is its own slot's
    checkpoint = checkpoint_path(settings.checkpoint_dir, ctx.spec.name, jobs[0].stage,
                                 [job.slot for job in jobs])
    tasks = []
    for job, trial_spec, snapshot in members:
        shared = ctx.data.shared_for(trial_spec) if ctx.pool.local else None
        watch_worker_deaths(shared)
        weights = (None if settings.keep_weights == "none" else
                   str(weights_path(settings.checkpoint_dir, ctx.spec.name, job.trial_id)))
        tasks.append(TrialTask(job.trial_id, trial_spec, settings.data_source,
                               settings.threads, shared, snapshot, slot=job.slot,
                               checkpoint=str(checkpoint), weights=weights,
                               live=ctx.live.sink))
    task = GroupTask(tuple(tasks), stage_id, ctx.sweep.id, str(checkpoint))
    for job in jobs:
        job.group = task.group_id
        job.checkpoint = checkpoint
        job.started = time.monotonic()
        trials.training[job.trial_id] = job
    trials.inline = jobs[0]  # Ctrl-C while --jobs 1 runs the group in this process
    try:
        future = ctx.pool.submit(execute_group_announced, task)
    except BrokenExecutor:  # a loky worker died: its trials fail in finish(); a new pool
        ctx.pool.replace()
        future = ctx.pool.submit(execute_group_announced, task)
    trials.inline = None
    children: list[Future[TrialOutcome]] = [Future() for _ in jobs]
    for child, job in zip(children, jobs, strict=True):
        trials.running[child] = job

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


def wait_for_trials(ctx: SweepContext) -> set[Future[TrialOutcome]]:
    """Wait up to :data:`WAIT_SECONDS` for a running trial to end, taking the curve points
    the running trials measure meanwhile (every LIVE_POLL_SECONDS)."""
    give_up = time.monotonic() + WAIT_SECONDS
    while True:
        done, _ = wait(list(ctx.trials.running), timeout=LIVE_POLL_SECONDS,
                       return_when=FIRST_COMPLETED)
        take_points(ctx, ctx.live.take())  # before an ended trial's whole curve
        if done or time.monotonic() >= give_up:
            return done


def take_points(ctx: SweepContext, messages: Sequence[Message]) -> None:
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
        job = ctx.trials.training.get(trial_id)
        if job is None or not points:
            continue  # ended meanwhile: its whole curve is stored
        if not store_points(ctx.storage, trial_id, points):
            continue  # taken for lost meanwhile, or ended
        val = [(p.step, p.acc) for p in points if p.split == "val"]
        # one Optuna trial per configuration: with replicates its curve is no one's
        if job.study_trial is not None and ctx.stage(job.stage).replicates == 1 and val:
            name, number = study_name(ctx.spec.name, job.stage), job.study_trial
            latest = val[-1:]  # one write per look: Optuna writes a value at a time
            with suppress(Exception):  # told at the end all the same (see tell)
                optuna_call(ctx.storage, lambda name=name, number=number, latest=latest:  # type: ignore[misc]
                            report_running(ctx.ostorage, name, number, latest))
        last = max(points, key=lambda p: p.step)
        ctx.settings.notify(TrialEvent("point", job.stage, job.number,
                                       val_acc=val[-1][1] if val else None,
                                       trial_id=trial_id, step=last.step, total=total))


def finish(ctx: SweepContext, future: Future[TrialOutcome], study: optuna.Study,
           stage: StageSpec) -> None:
    """A trial ended: its outcome stored (and kept by its Optuna trial), or, when its
    worker died, the loss judged: it runs again, or fails once lost too often."""
    trials = ctx.trials
    job = trials.running.pop(future)
    try:
        outcome = future.result()
    except Exception as exc:  # the worker process died (killed, out of memory, ...)
        ctx.pool.after_worker_death()
        lost = worker_lost(ctx, job, exc, stage)
        if lost is None:
            return
        outcome = lost
    state = store_outcome(ctx, job, outcome, study, stage)
    # stored: its group's checkpoint is of no more use once none of its trials runs here
    if state is not None and job.checkpoint is not None and not any(
            j.group == job.group for j in trials.running.values()):
        clear_state(job.checkpoint)


def worker_lost(ctx: SweepContext, job: RunningTrial, exc: BaseException,
                stage: StageSpec) -> TrialOutcome | None:
    """``job``'s worker died: None when it runs again (marked interrupted), else its
    failed outcome (lost too often) to store."""
    verdict = judge_worker_loss(ctx.storage, job.trial_id, exc, ctx.data.folder,
                                MAX_LOST_ATTEMPTS)
    if not verdict.fail:
        ctx.trials.training.pop(job.trial_id, None)
        ctx.live.forget(job.trial_id)
        ctx.storage.interrupt_trials([job.trial_id], verdict.message)
        ctx.heart.remove(job.trial_id)
        ctx.settings.notify(TrialEvent("finished", stage.name, job.number,
                                       TrialState.INTERRUPTED, message=verdict.short,
                                       trial_id=job.trial_id))
        return None
    return TrialOutcome(job.trial_id, None, error=verdict.message,
                        traceback="".join(traceback.format_exception(exc)),
                        worker=ctx.settings.name)


def store_outcome(ctx: SweepContext, job: RunningTrial, outcome: TrialOutcome,
                  study: optuna.Study, stage: StageSpec) -> TrialState | None:
    """Store how ``job`` ended (kept by its Optuna trial first) and show it; None when it
    was taken for lost meanwhile (not kept)."""
    trials, storage, notify = ctx.trials, ctx.storage, ctx.settings.notify
    trials.training.pop(job.trial_id, None)
    ctx.live.forget(job.trial_id)
    try:
        if job.study_trial is not None:  # before the slot is final: then it may be told
            keep_outcome(ctx, study, stage, job, outcome)
        state = record_outcome(storage, outcome)
    except StorageUnavailable:  # past --db-wait: the run keeps what finished, then stops
        trials.unsaved.append(outcome)
        raise
    ctx.heart.remove(job.trial_id)
    if state is None:
        notify(TrialEvent("finished", stage.name, job.number, TrialState.INTERRUPTED,
                          message="taken for lost meanwhile: result not kept",
                          trial_id=job.trial_id))
        return None
    trials.finished += 1
    val = outcome.result.val_acc if outcome.result else None
    message = outcome.error or (outcome.result.message if outcome.result else "")
    notify(TrialEvent("finished", stage.name, job.number, state, val, message,
                      estimate=job.estimate, seconds=trial_seconds(outcome),
                      trial_id=job.trial_id,
                      group_size=outcome.group[1] if outcome.group else 1))
    return state
