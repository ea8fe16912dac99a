"""What this process tells a stage's Optuna study: a finished trial's outcome as its Optuna
trial's attributes (:func:`keep_outcome`), and each configuration, in order, once all its
trials are final (:func:`tell_ready`), whichever process ran them."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from numsweep.storage import SlotRecord, Storage, TrialState
from numsweep.sweeps.context import RunningTrial, SweepContext
from numsweep.sweeps.front_pruning import rung_attrs
from numsweep.sweeps.objectives import Objective, mean_values, objective_metrics
from numsweep.sweeps.optuna_bridge import keep_outcome as keep_study_outcome
from numsweep.sweeps.optuna_bridge import tell, trial_user_attrs
from numsweep.sweeps.slots import final
from numsweep.sweeps.spec import StageSpec
from numsweep.sweeps.studies import optuna_call
from numsweep.sweeps.worker import TrialOutcome

if TYPE_CHECKING:
    import optuna


def _told_values(storage: Storage, records: Sequence[SlotRecord],
                 objectives: Sequence[Objective]) -> tuple[float, ...] | None:
    """The mean of each objective over a configuration's complete trials."""
    ids = [s.trial_id for s in records if s.state is TrialState.COMPLETE]
    if not ids:
        return None
    return mean_values([t.metrics for t in storage.get_trials(trial_ids=ids)], objectives)


def _val_curve(storage: Storage, trial_id: int) -> list[tuple[int, float]]:
    """A trial's validation accuracy at each curve point (the study's learning curve)."""
    return [(c.step, c.acc) for c in storage.get_curves([trial_id])
            if c.split == "val" and math.isfinite(c.acc)]


def tell_ready(ctx: SweepContext, study: optuna.Study, reps: int,
               slots: Mapping[int, SlotRecord], told: int, limit: int) -> int:
    """Tell the study, in order, configurations ``told`` .. ``limit - 1`` whose trials
    are all final (whichever process ran them); returns the new ``told``."""
    while told < limit and _tell_config(ctx, study, reps, slots, told):
        told += 1
    return told


def tell_final(ctx: SweepContext, study: optuna.Study, reps: int,
               slots: Mapping[int, SlotRecord], told: set[int], limit: int) -> None:
    """Tell the study each configuration below ``limit`` whose trials are all final and
    that is not in ``told`` yet (added there), as soon as it is: a slot stage's sampler
    knows every result so far."""
    for k in range(limit):
        if k not in told and _tell_config(ctx, study, reps, slots, k):
            told.add(k)


def _tell_config(ctx: SweepContext, study: optuna.Study, reps: int,
                 slots: Mapping[int, SlotRecord], k: int) -> bool:
    """Tell configuration ``k`` when its trials are all final; False when they are not."""
    objectives = ctx.study_objectives[study.study_name]
    records = [slots.get(k * reps + r) for r in range(reps)]
    if not all(final(s) for s in records):
        return False
    done = [s for s in records if s is not None]
    curve = _val_curve(ctx.storage, done[0].trial_id) if len(done) == 1 else []
    values = _told_values(ctx.storage, done, objectives)
    optuna_call(ctx.storage, lambda: tell(study, ctx.ostorage, done, curve, values))
    return True


def keep_outcome(ctx: SweepContext, study: optuna.Study, stage: StageSpec, job: RunningTrial,
                 outcome: TrialOutcome) -> None:
    """What the finished trial tells its Optuna trial (see :func:`trial_user_attrs`); a
    configuration run several times keeps each replicate's under ``replicate<r>.``."""
    assert job.study_trial is not None
    result = outcome.result
    metrics = {**result.metrics(), **objective_metrics(result)} if result is not None else {}
    # the searched values are the Optuna trial's own parameters; these are the rest the
    # spec sets, as the trial resolved them, and its seed
    shown = {*ctx.spec.stage_fixed(stage), "seed", "data_seed"}
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
    optuna_call(ctx.storage, lambda: keep_study_outcome(study, ctx.ostorage, number, attrs,
                                                        reports, system_attrs))
