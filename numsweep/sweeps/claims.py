"""Lost trials claimed again: a slot whose latest attempt was interrupted, or whose process
is gone (no heartbeat for ``grace`` seconds, see :func:`liveness.is_lost`), runs again as
its next attempt in this process (the unique stage/slot/attempt index lets one process
win)."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import TYPE_CHECKING

from numsweep.engine import TrialSpec
from numsweep.storage import SlotRecord, TrialState
from numsweep.sweeps.context import RunningTrial, SweepContext
from numsweep.sweeps.liveness import is_gone, is_lost, utcnow
from numsweep.sweeps.proposals import snapshot
from numsweep.sweeps.spec import StageSpec
from numsweep.sweeps.submission import submit

if TYPE_CHECKING:
    import optuna


def lost_slot(ctx: SweepContext, slots: Mapping[int, SlotRecord]) -> SlotRecord | None:
    """The first slot to run again: interrupted, or left RUNNING by a process that is
    gone."""
    mine = ctx.trials.mine()
    return next((slot for slot in slots.values() if claimable(ctx, slot, mine)), None)


def claimable(ctx: SweepContext, slot: SlotRecord, mine: set[int] | None = None) -> bool:
    """Whether ``slot``'s latest attempt is to run again: interrupted, or RUNNING in a
    process that is gone (not one of this process's own, ``mine``)."""
    if slot.state is TrialState.INTERRUPTED:
        return True
    if slot.state is not TrialState.RUNNING:
        return False
    if slot.trial_id in (ctx.trials.mine() if mine is None else mine):
        return False
    grace = ctx.settings.grace
    # after an outage no process could stamp its heartbeat: judge them a grace later
    back = ctx.storage.reconnected_at
    stale_ok = back is None or time.monotonic() - back > grace
    return is_lost(slot, grace, utcnow()) if stale_ok else is_gone(slot.worker)


def run_again(ctx: SweepContext, study: optuna.Study, stage: StageSpec,
              old: SlotRecord) -> bool:
    """Claim ``old``'s next attempt and submit it; False when its process is alive after
    all or another process claimed it first."""
    seen = "never" if old.heartbeat_at is None else f"{old.heartbeat_at:%H:%M:%S} UTC"
    claimed = ctx.storage.claim_again(
        old.trial_id, worker=ctx.settings.name, seen_heartbeat=old.heartbeat_at,
        lost_message=f"lost: no heartbeat from {old.worker} since {seen} (its process is "
                     f"gone); runs again as attempt {old.attempt + 1}")
    if claimed is None:
        return False
    trial_id, number = claimed
    [record] = ctx.storage.get_trials(trial_ids=[trial_id])
    params = dict(record.params)
    if ctx.settings.device is not None:  # trained here: on this process's device
        params["device"] = ctx.settings.device
    trial_spec = TrialSpec.from_mapping(params)
    shot = snapshot(ctx, study, stage, old.study_trial)
    submit(ctx, stage, RunningTrial(stage.name, old.slot // stage.replicates, old.slot,
                                    trial_id, number, old.study_trial, time.monotonic(), None,
                                    old.attempt + 1), trial_spec, shot)
    return True
