"""What a slot group's occupancy becomes once the group ends: the one place that takes a
finished slot group's :class:`~numsweep.engine.slots.SlotStats` (:func:`note_slot_group`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from numsweep.sweeps.events import TrialEvent

if TYPE_CHECKING:
    from numsweep.engine.slots import SlotStats
    from numsweep.sweeps.context import SweepContext


@dataclass(frozen=True)
class SlotGroupRecord:
    """A slot group that ended: its stage, its id (its first trial's) and its stats."""

    stage_id: int
    stage: str
    group_id: int
    stats: SlotStats


def note_slot_group(ctx: SweepContext, stage_id: int, group_id: int, stats: SlotStats, *,
                    stage: str = "") -> SlotGroupRecord:
    """A slot group of stage ``stage_id`` ended with ``stats``: shown (a "group" event)."""
    record = SlotGroupRecord(stage_id, stage, group_id, stats)
    ctx.settings.notify(TrialEvent("group", stage, group_size=stats.size,
                                   occupancy=stats.occupancy))
    return record
