"""How full a stage's slot groups were: a slot group (engine ``train_slots``) trains K slots
at every group update, and a slot with no trial in it trains nothing. Occupancy is the share
of slot-updates (group updates x K) that trained a trial; "until dry" counts only the
updates before a group first found no trial for a free slot (the stage ran out of trials),
so that a stage's tail, which no feed can fill, does not hide how full it ran before.

:func:`note_slot_group` stores a group that ended and tells the progress display."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from numsweep.storage import SlotGroupRecord
from numsweep.sweeps.events import TrialEvent

if TYPE_CHECKING:
    from numsweep.sweeps.context import SweepContext


class GroupStats(Protocol):
    """What a slot group that ended reports (engine ``SlotStats``)."""

    size: int
    steps: int
    slot_updates: int
    trials: int
    full_steps: int
    full_slot_updates: int


@dataclass(frozen=True)
class Occupancy:
    """A stage's slot groups summed: ``slot_updates`` of ``capacity`` (group updates x
    slots) trained a trial, ``full_slot_updates`` of ``full_capacity`` before each group
    first found no trial for a free slot; ``groups`` groups trained ``trials`` trials."""

    slot_updates: int
    capacity: int
    full_slot_updates: int
    full_capacity: int
    groups: int
    trials: int

    @property
    def share(self) -> float:
        """The share of slot-updates that trained a trial (1.0 before any update)."""
        return self.slot_updates / self.capacity if self.capacity else 1.0

    @property
    def until_dry(self) -> float | None:
        """The share before the stage ran out of trials; None when no group made an update
        with every slot asked for (each started short of trials)."""
        return self.full_slot_updates / self.full_capacity if self.full_capacity else None

    @property
    def ran_dry(self) -> bool:
        """Whether some group went on with empty slots for want of trials."""
        return self.full_capacity < self.capacity


def stage_occupancy(records: Sequence[SlotGroupRecord]) -> Occupancy:
    """The occupancy of these slot groups together (one stage's, as stored)."""
    return Occupancy(
        slot_updates=sum(r.slot_updates for r in records),
        capacity=sum(r.steps * r.size for r in records),
        full_slot_updates=sum(r.full_slot_updates for r in records),
        full_capacity=sum(r.full_steps * r.size for r in records),
        groups=len(records), trials=sum(r.trials for r in records))


def note_slot_group(ctx: SweepContext, stage_id: int, group_id: int, stats: GroupStats, *,
                    worker: str | None = None) -> Occupancy:
    """A slot group of stage ``stage_id`` ended (``group_id``: the id of its first trial):
    its counts stored (in place of an earlier row of the group: it resumed), and a "group"
    event with the stage's occupancy so far (every process's groups). ``worker``: the
    process that trained it (default this one). Returns that occupancy."""
    stored = ctx.storage.record_slot_group(
        stage_id, group_id, worker or ctx.settings.name, stats.size, stats.steps,
        stats.slot_updates, stats.trials, stats.full_steps, stats.full_slot_updates)
    occupancy = stage_occupancy(ctx.storage.slot_groups(stage_id))
    ctx.settings.notify(TrialEvent("group", stored.stage, group_size=stats.size,
                                   occupancy=occupancy.share))
    return occupancy
