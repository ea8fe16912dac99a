"""A stage trained in slot groups (continuous batching, ``engine.train_slots``): each worker
runs one slot group of up to K trials that share a group key; a slot freed by a trial that
ended (complete, pruned, diverged) is refilled at once, at the same group update, with the
next trial this process has for the key: a trial left over from a crash (lost or
interrupted), else the stage's next configuration (grid and ``configs`` entries in order; a
sampler asked now, knowing every result told so far: :func:`telling.tell_final`). A claimed
trial that fits no running group waits in ``pending`` and starts a new group when a worker
is free; a group whose feed has nothing for its key ends once its last trial ends.

The groups' feeds (``slot_training.py``) reach this process through a line per backend
(``slot_links.py``); each ended trial's outcome is stored as it arrives
(:func:`submission.store_outcome`, as for batch groups), and the stage's Optuna pruner is
asked at each trial's own period ends with the study as it is then (:meth:`SlotStage.report`).

Each group keeps one checkpoint (:func:`kept.slot_group_checkpoint_path`) whose state names
its members (their planned slots). After a crash the members are claimed again together
and restart as one group from it (``first`` = the saved members), each mid-run.
"""

from __future__ import annotations

import copy
import time
from concurrent.futures import BrokenExecutor, Future
from pathlib import Path
from typing import TYPE_CHECKING, Any

from numsweep.engine import TrialSpec
from numsweep.engine.checkpoint import clear_state
from numsweep.engine.group import group_key, groupable
from numsweep.storage import SlotRecord
from numsweep.sweeps.claims import claimable, lost_slot, run_again
from numsweep.sweeps.context import Pending, Plan, SlotGroupRun, SweepContext
from numsweep.sweeps.deaths import execute_slots_announced, watch_worker_deaths
from numsweep.sweeps.kept import (
    slot_group_checkpoint_path,
    slot_group_checkpoints,
    slot_group_members,
    weights_path,
)
from numsweep.sweeps.liveness import POLL_SECONDS
from numsweep.sweeps.occupancy import note_slot_group
from numsweep.sweeps.optuna_bridge import quiet, trial_id_of
from numsweep.sweeps.planning import cut, planned_configs
from numsweep.sweeps.proposals import new_config
from numsweep.sweeps.slot_links import SERVE_SECONDS, open_link
from numsweep.sweeps.slot_training import SlotGroupOutcome, SlotGroupTask
from numsweep.sweeps.slots import final, latest
from numsweep.sweeps.spec import StageSpec
from numsweep.sweeps.studies import optuna_call
from numsweep.sweeps.submission import (
    LIVE_POLL_SECONDS,
    WAIT_SECONDS,
    store_outcome,
    take_points,
    worker_lost,
)
from numsweep.sweeps.telling import tell_final
from numsweep.sweeps.worker import PruneSnapshot, TrialOutcome, TrialTask

if TYPE_CHECKING:
    import optuna

SLOT_SEARCHED_NEVER = ("model", "batch_schedule")
"""Searched parameters that keep a stage in batch groups: a slot group needs one model kind
and a constant batch schedule for every trial it may hold."""


def slots_fit(plan: Plan) -> bool:
    """Whether a stage's trials can train in slot groups: a groupable model with a constant
    batch schedule, neither searched (``engine.slots`` joins trials mid-stream only with
    a constant batch size)."""
    searched = {n for p in plan.space.values() for n in p.names}
    if searched & set(SLOT_SEARCHED_NEVER):
        return False
    try:
        spec = TrialSpec.from_mapping(plan.fixed)
    except ValueError:
        return False
    return groupable(spec) and spec.batch_schedule == "constant"


class SlotStage:
    """One stage run in slot groups of ``size`` by this process (see the module
    docstring); :meth:`run` returns the stage's slots once each is final."""

    def __init__(self, ctx: SweepContext, index: int, stage: StageSpec, plan: Plan,
                 study: optuna.Study, size: int, deadline: float | None) -> None:
        self.ctx, self.index, self.stage, self.plan = ctx, index, stage, plan
        self.study, self.size, self.deadline = study, size, deadline
        self.reps = stage.replicates
        self.n_configs = plan.n_configs
        self.told: set[int] = set()
        self.runs: dict[int, SlotGroupRun] = {}  # group id -> its run
        self.reported: dict[int, dict[int, float]] = {}  # trial id -> its reports
        self.saved: dict[Path, list[int] | None] = {}  # checkpoint -> its members' slots
        self.resumed: dict[int, Path] = {}  # slot -> the saved group it restarts with
        self.server = open_link(ctx.pool.executor,
                                ctx.data.make_folder if ctx.pool.local else None, self.answer)

    # -- the stage loop ---------------------------------------------------------------

    def run(self) -> dict[int, SlotRecord]:
        ctx, trials = self.ctx, self.ctx.trials
        while True:
            self.n_configs = planned_configs(ctx, self.plan, self.index)
            slots = self._slots()
            self._tell(slots)
            while trials.groups_running() < ctx.pool.jobs and self._start_group():
                pass
            if trials.slot_groups:
                self._wait()
                continue
            slots = self._slots()
            proposed = max(slots) // self.reps + 1 if slots else 0
            if proposed >= self.n_configs and not trials.pending and all(
                    final(slots.get(s)) for s in range(proposed * self.reps)):
                self._tell(slots)
                return slots
            time.sleep(POLL_SECONDS)  # other processes run this stage's last trials

    def _slots(self) -> dict[int, SlotRecord]:
        return latest(self.ctx.storage.stage_slots(self.plan.stage_id))

    def _tell(self, slots: dict[int, SlotRecord]) -> None:
        proposed = max(slots) // self.reps + 1 if slots else 0
        tell_final(self.ctx, self.study, self.reps, slots, self.told, proposed)

    def _wait(self) -> None:
        """Answer the running groups' requests (every :data:`SERVE_SECONDS`) and take
        their curve points until a group ends (or :data:`WAIT_SECONDS` pass)."""
        ctx = self.ctx
        give_up = time.monotonic() + WAIT_SECONDS
        looked = 0.0
        while True:
            self.server.serve(self.answer)
            now = time.monotonic()
            if now - looked >= LIVE_POLL_SECONDS:
                take_points(ctx, ctx.live.take())
                looked = now
            done = [f for f in ctx.trials.slot_groups if f.done()]
            for future in done:
                self._ended(future)
            if done or now >= give_up:
                return
            time.sleep(SERVE_SECONDS)

    # -- groups -----------------------------------------------------------------------

    def _start_group(self) -> bool:
        """Start a slot group with the first pending trial and the pending ones that share
        its key (a saved group's members: those, from its checkpoint); False when there is
        nothing to start."""
        ctx, trials = self.ctx, self.ctx.trials
        if not trials.pending and not self._claim_one():
            return False
        if not trials.pending:
            return False
        head = trials.pending[0]
        key = group_key(head[1])
        saved = self.resumed.get(head[0].slot)
        if saved is not None:
            order = self.saved.get(saved) or []
            first = sorted([p for p in trials.pending if self.resumed.get(p[0].slot) == saved],
                           key=lambda p: order.index(p[0].slot))
            for p in first:
                del self.resumed[p[0].slot]
            checkpoint = saved
        else:
            first = [p for p in trials.pending
                     if p[0].slot not in self.resumed and group_key(p[1]) == key][: self.size]
            checkpoint = slot_group_checkpoint_path(ctx.settings.checkpoint_dir, ctx.spec.name,
                                                    self.stage.name, first[0][0].trial_id)
        taken = {id(p) for p in first}
        trials.pending = [p for p in trials.pending if id(p) not in taken]
        run = SlotGroupRun(first[0][0].trial_id, self.stage.name, key,
                           max(self.size, len(first)), checkpoint)
        self.runs[run.group_id] = run
        tasks = tuple(self._task(p, run) for p in first)
        task = SlotGroupTask(run.group_id, run.size, tasks, self.server.link, str(checkpoint),
                             self.plan.stage_id)
        try:
            future = ctx.pool.submit(execute_slots_announced, task)
        except BrokenExecutor:  # a loky worker died: its groups fail in _ended(); a new pool
            ctx.pool.replace()
            future = ctx.pool.submit(execute_slots_announced, task)
        trials.slot_groups[future] = run
        return True

    def _task(self, pending: Pending, run: SlotGroupRun) -> TrialTask:
        """The worker's task of a claimed trial joining ``run``; from here it is a member."""
        ctx, settings = self.ctx, self.ctx.settings
        job, trial_spec, snapshot = pending
        shared = ctx.data.shared_for(trial_spec) if ctx.pool.local else None
        watch_worker_deaths(shared)
        weights = (None if settings.keep_weights == "none" else
                   str(weights_path(settings.checkpoint_dir, ctx.spec.name, job.trial_id)))
        if snapshot is not None and snapshot.front is None:  # decided here, on the study
            snapshot = PruneSnapshot(snapshot.pruner, snapshot.study_name, (), snapshot.number)
        job.group = run.group_id
        job.checkpoint = None  # the group's checkpoint goes when the group ends
        job.started = time.monotonic()
        run.members[job.trial_id] = job
        ctx.trials.training[job.trial_id] = job
        return TrialTask(job.trial_id, trial_spec, settings.data_source, settings.threads,
                         shared, snapshot, slot=job.slot, weights=weights, live=ctx.live.sink)

    def _ended(self, future: Future[Any]) -> None:
        """A slot group ended: what it could not hand over stored, its checkpoint
        removed, its occupancy noted; when its worker died, its members' losses judged."""
        ctx = self.ctx
        run = ctx.trials.slot_groups.pop(future)
        self.runs.pop(run.group_id, None)
        try:
            outcome: SlotGroupOutcome = future.result()
        except Exception as exc:  # the worker process died (killed, out of memory, ...)
            ctx.pool.after_worker_death()
            for job in list(run.members.values()):
                lost = worker_lost(ctx, job, exc, self.stage)
                if lost is not None:
                    store_outcome(ctx, job, lost, self.study, self.stage)
            run.members.clear()
            return
        for left in outcome.left:
            self._store(run, left)
        for job in list(run.members.values()):  # never expected: the feed hands each over
            self._store(run, TrialOutcome(job.trial_id, None, worker=ctx.settings.name,
                                          error="the slot group ended without its result",
                                          group=(run.group_id, run.size)))
        if outcome.stats is not None:
            clear_state(run.checkpoint)
            note_slot_group(ctx, self.plan.stage_id, run.group_id, outcome.stats,
                            worker=outcome.worker or None)

    def _store(self, run: SlotGroupRun, outcome: TrialOutcome) -> None:
        job = run.members.pop(outcome.trial_id, None)
        self.reported.pop(outcome.trial_id, None)
        if job is not None:
            store_outcome(self.ctx, job, outcome, self.study, self.stage)

    # -- the feeds' questions ---------------------------------------------------------

    def answer(self, kind: str, group: int, args: Any) -> Any:
        if kind == "refill":
            outcomes, free = args
            return self.refill(group, outcomes, free)
        if kind == "report":
            return self.report(group, args)
        raise ValueError(f"unknown slot group request {kind!r}")

    def refill(self, group: int, outcomes: tuple[TrialOutcome, ...], free: int
               ) -> list[TrialTask]:
        """Store the ended trials' outcomes, then claim up to ``free`` trials that fit
        the group's key."""
        run = self.runs.get(group)
        if run is None:
            return []  # a group this process no longer counts (its worker taken for dead)
        for outcome in outcomes:
            self._store(run, outcome)
        if outcomes:
            self._tell(self._slots())
        return [self._task(p, run) for p in self._claim(run.key, free)]

    def report(self, group: int, reports: tuple[tuple[int, int, float], ...]) -> list[int]:
        """Tell each trial's report (trial id, its update, its val_acc) to its Optuna trial
        and ask the stage's pruner with the study as it is now; the trials to stop."""
        out = []
        for trial_id, step, val_acc in reports:
            job = self.ctx.trials.training.get(trial_id)
            if job is None or job.study_trial is None:
                continue
            own = self.reported.setdefault(trial_id, {})
            own[int(step)] = float(val_acc)
            if self._prune(job.study_trial, own, int(step), float(val_acc)):
                out.append(trial_id)
        return out

    def _prune(self, number: int, own: dict[int, float], step: int, val_acc: float) -> bool:
        study, ostorage = self.study, self.ctx.ostorage
        shared = self.reps == 1  # one Optuna trial per configuration: replicates keep theirs

        def ask() -> bool:
            with quiet():
                trial_id = trial_id_of(study, ostorage, number)
                if shared:
                    ostorage.set_trial_intermediate_value(trial_id, step, val_acc)
                trial = copy.deepcopy(ostorage.get_trial(trial_id))
                trial.intermediate_values = dict(own)  # this trial's period ends alone
                return bool(study.pruner.prune(study, trial))

        return optuna_call(self.ctx.storage, ask)

    # -- claiming ---------------------------------------------------------------------

    def _claim(self, key: Any, free: int) -> list[Pending]:
        """Up to ``free`` claimed trials for a group of ``key``: pending ones first, then
        trials to run again, then new configurations (one that fits no group waits)."""
        trials = self.ctx.trials
        out: list[Pending] = []
        while True:
            for p in list(trials.pending):
                if len(out) < free and p[0].slot not in self.resumed \
                        and group_key(p[1]) == key:
                    out.append(p)
                    trials.pending.remove(p)
            if len(out) >= free or len(trials.pending) >= self.size * self.ctx.pool.jobs:
                return out
            if not self._claim_one():
                return out

    def _claim_one(self) -> bool:
        """Claim the next trial(s) into ``pending``: a lost or interrupted one (with the
        other members of its saved group), else the next configuration. False when there
        is nothing to claim now."""
        ctx = self.ctx
        slots = self._slots()
        proposed = max(slots) // self.reps + 1 if slots else 0
        lost = lost_slot(ctx, slots)
        if lost is not None:
            return self._claim_lost(lost, slots)
        if proposed >= self.n_configs:
            return False
        if self.deadline is not None and time.monotonic() > self.deadline and proposed:
            self.n_configs = cut(ctx, self.index, self.stage, proposed)
            return False
        return new_config(ctx, self.study, self.index, self.stage, self.plan, proposed)

    def _claim_lost(self, lost: SlotRecord, slots: dict[int, SlotRecord]) -> bool:
        """Claim ``lost`` again; when a saved slot group held it, every member of that
        group that is to run again too, to restart together from its checkpoint."""
        ctx = self.ctx
        saved = self._saved_group_of(lost.slot)
        if saved is None:
            return run_again(ctx, self.study, self.stage, lost)
        path, members = saved
        self.saved[path] = members  # taken: no other group restarts from it
        mine = ctx.trials.mine()
        records = [slots.get(s) for s in members]
        if not all(r is not None and claimable(ctx, r, mine) for r in records):
            clear_state(path)  # the state is not the members': they start afresh
            self.saved[path] = None
            return run_again(ctx, self.study, self.stage, lost)
        before = {p[0].slot for p in ctx.trials.pending}
        for r in records:
            assert r is not None
            run_again(ctx, self.study, self.stage, r)
        claimed = {p[0].slot for p in ctx.trials.pending} - before
        if claimed == set(members):
            for s in members:
                self.resumed[s] = path
        else:  # another process took some: the state is no one's now
            clear_state(path)
        return bool(claimed)

    def _saved_group_of(self, slot: int) -> tuple[Path, list[int]] | None:
        """The checkpoint of a slot group of this stage that held ``slot`` when it last
        saved, not yet taken by this process."""
        settings = self.ctx.settings
        for path in slot_group_checkpoints(settings.checkpoint_dir, self.ctx.spec.name,
                                           self.stage.name):
            if path in self.saved:
                continue
            members = slot_group_members(path)
            if members is None:
                continue
            if slot in members:
                return path, list(members)
        return None
