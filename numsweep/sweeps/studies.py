"""A stage's Optuna study set up for this process (:func:`stage_study`: created by the first
process, with the stage's reused trials added once), and every Optuna call on the database
retried as numsweep's own (:func:`optuna_call`)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

from numsweep.shield import shielded
from numsweep.storage import Storage, StorageError, StorageFull, full_message, retry_call
from numsweep.storage.retry import driver_line, is_full_error
from numsweep.sweeps.context import Plan, SweepContext
from numsweep.sweeps.liveness import POLL_SECONDS, is_gone
from numsweep.sweeps.optuna_bridge import add_reused, load_study, study_name
from numsweep.sweeps.seeds import sampler_seed
from numsweep.sweeps.spec import StageSpec

if TYPE_CHECKING:
    import optuna

T = TypeVar("T")


def optuna_call(storage: Storage, fn: Callable[[], T]) -> T:
    """An Optuna call on the database, retried like numsweep's own (locks, outages); a
    Ctrl-C waits for each attempt to end, as for numsweep's own transactions."""
    def attempt() -> T:
        with shielded():
            return fn()

    try:
        return retry_call(attempt, seconds=storage.db_wait, what=storage.shown_url,
                          on_reconnect=storage.reconnected)
    except StorageError:
        raise
    except Exception as exc:  # Optuna's own: a long traceback for a database error
        import optuna

        if is_full_error(exc):
            raise StorageFull(full_message(storage.shown_url, exc)) from None
        if isinstance(exc, optuna.exceptions.StorageInternalError):
            raise StorageError(f"database error on {storage.shown_url}: "
                               f"{driver_line(exc)}") from None
        raise


def stage_study(ctx: SweepContext, index: int, stage: StageSpec, plan: Plan, *,
                liar: bool = False) -> optuna.Study:
    """The stage's Optuna study (created by the first process), with the reused trials
    (``liar``: see :func:`optuna_bridge.make_sampler`)."""
    spec, settings = ctx.spec, ctx.settings
    rec = ctx.storage.get_stage(ctx.sweep.id, index)
    note = rec.note if rec is not None else plan.note
    objectives = spec.stage_objectives(stage)
    attrs = {"sweep": spec.name, "stage": stage.name, "sampler": stage.sampler,
             "pruner": stage.pruner, "stage_spec": stage.to_dict(),
             "fixed": spec.stage_fixed(stage), "narrowing": note,
             "objectives": [o.text for o in objectives]}
    description = (f"numsweep sweep {spec.name}, stage {stage.name} "
                   f"({stage.sampler}): {plan.stored.describe(stage.sampler)}"
                   + (f". {note}" if note else ""))
    name = study_name(spec.name, stage.name)
    ctx.study_objectives[name] = objectives

    def load() -> optuna.Study:
        study = load_study(ctx.ostorage, name, stage.sampler,
                           sampler_seed(spec.seed, index, settings.resume, settings.name),
                           stage.pruner, attrs, description, objectives, stage.n_trials,
                           liar=liar)
        if plan.reused and not _reused_added(ctx, index):
            add_reused(study, plan.space, plan.fixed, plan.reused, objectives)
            rec = ctx.storage.get_stage(ctx.sweep.id, index)
            assert rec is not None
            ctx.storage.merge_stage_space(rec.id, {"study_ready": True})
        return study

    return optuna_call(ctx.storage, load)


def _reused_added(ctx: SweepContext, index: int) -> bool:
    """False when this process is to add the stage's reused trials to the study: it
    stored the plan, or the process that did is gone or silent for ``grace`` seconds;
    True once they are there (waiting for the process adding them)."""
    give_up = time.monotonic() + ctx.settings.grace
    while True:
        rec = ctx.storage.get_stage(ctx.sweep.id, index)
        assert rec is not None
        if rec.plan.study_ready:
            return True
        owner = rec.plan.setup_by
        if owner == ctx.settings.name or is_gone(owner) or time.monotonic() > give_up:
            return False
        time.sleep(POLL_SECONDS / 5)
