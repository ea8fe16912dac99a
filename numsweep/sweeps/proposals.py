"""A stage's next configuration: proposed by Optuna while this process holds the stage's
proposal turn (a lease in the database, so that no two processes ask Optuna for the same
configuration), its slots claimed, and its trials handed to :func:`submission.submit`."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from numsweep.engine import TrialSpec
from numsweep.sweeps.context import Plan, RunningTrial, SweepContext
from numsweep.sweeps.front_pruning import rule_from
from numsweep.sweeps.liveness import POLL_SECONDS, is_gone
from numsweep.sweeps.optuna_bridge import discard, propose, trials_before
from numsweep.sweeps.seeds import stage_data_seed, trial_seed
from numsweep.sweeps.spec import StageSpec
from numsweep.sweeps.studies import optuna_call
from numsweep.sweeps.submission import submit
from numsweep.sweeps.worker import PruneSnapshot

if TYPE_CHECKING:
    import optuna

PROPOSAL_LEASE_SECONDS = 30.0
"""How long a process may hold a stage's proposal turn before another takes it over (only
a process that died while proposing holds it that long)."""
PROPOSAL_TRIES = 20
"""How many times (POLL_SECONDS / 10 apart) a process asks for the proposal turn
before it goes back to its running trials."""


def new_config(ctx: SweepContext, study: optuna.Study, index: int, stage: StageSpec,
               plan: Plan, k: int) -> bool:
    """Propose configuration ``k`` and claim its slots, holding the stage's proposal
    turn (a lease in the database) so that no two processes ask Optuna for the same
    configuration: a lost race would leave a trial in the study that never ran. False
    when another process holds the turn (look again after a pause); True once ``k``
    is claimed, by this process or another."""
    storage, me = ctx.storage, ctx.settings.name
    lease = f"propose:{plan.stage_id}"
    for _ in range(PROPOSAL_TRIES):
        if storage.take_lease(lease, me, PROPOSAL_LEASE_SECONDS):
            break
        # a process of this machine killed while it held the turn: take it at once
        holder = storage.lease_holder(lease)
        if holder is not None and is_gone(holder) and storage.take_lease(
                lease, me, PROPOSAL_LEASE_SECONDS, taking_from=holder):
            break
        time.sleep(POLL_SECONDS / 10)
    else:
        return False
    try:
        slots = storage.stage_slots(plan.stage_id)
        if slots and max(s.slot for s in slots) // stage.replicates >= k:
            return True  # another process proposed it while this one waited
        _propose(ctx, study, index, stage, plan, k)
    finally:
        storage.give_back_lease(lease, me)
    return True


def _propose(ctx: SweepContext, study: optuna.Study, index: int, stage: StageSpec,
             plan: Plan, k: int) -> None:
    queued = plan.queue[k] if k < len(plan.queue) else None
    trial, params = optuna_call(ctx.storage,
                                lambda: propose(study, plan.space, plan.fixed, queued, k))
    if k < len(plan.queue):
        params = {**plan.queue[k], **params}
    seed = ctx.spec.seed
    specs = []
    for r in range(stage.replicates):
        slot = k * stage.replicates + r
        seeds = {"seed": trial_seed(seed, index, slot),
                 "data_seed": stage_data_seed(seed, index, r)}
        if plan.fixed.get("data_seed") is not None:  # the spec's own data seed
            seeds["data_seed"] = plan.fixed["data_seed"]
        specs.append((slot, TrialSpec.from_mapping({**plan.fixed, **params, **seeds})))
    claimed = ctx.storage.claim_slots(
        ctx.sweep.id, plan.stage_id, [(slot, s.to_dict(), s.seed) for slot, s in specs],
        study_trial=trial.number, worker=ctx.settings.name)
    if claimed is None:  # only beside a process that does not take the proposal turn
        optuna_call(ctx.storage, lambda: discard(study, trial, "another process proposed "
                                                               "this configuration first"))
        return
    shot = snapshot(ctx, study, stage, trial.number)
    for (slot, trial_spec), (trial_id, number) in zip(specs, claimed, strict=True):
        submit(ctx, stage, RunningTrial(stage.name, k, slot, trial_id, number, trial.number,
                                        time.monotonic(), None, 0), trial_spec, shot)


def snapshot(ctx: SweepContext, study: optuna.Study, stage: StageSpec,
             number: int | None) -> PruneSnapshot | None:
    """The study's trials before Optuna trial ``number``, for pruning in the worker."""
    if stage.pruner == "none" or number is None:
        return None
    trials = optuna_call(ctx.storage, lambda: trials_before(study, number))
    if stage.pruner == "front":  # the rung values of the told trials are all it needs
        rule = rule_from(trials, ctx.spec.stage_objectives(stage), stage.prune_share)
        return PruneSnapshot(stage.pruner, study.study_name, (), number, front=rule)
    return PruneSnapshot(stage.pruner, study.study_name, trials, number)
