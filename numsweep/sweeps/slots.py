"""A stage's slots as the database holds them: every planned trial is a slot (``config *
replicates + replicate``) with one row per attempt; the latest attempt is the one that
counts."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from numsweep.storage import SlotRecord


def latest(slots: Sequence[SlotRecord]) -> dict[int, SlotRecord]:
    """The latest attempt of each slot (attempts come in order)."""
    return {s.slot: s for s in slots}


def final(slot: SlotRecord | None) -> bool:
    return slot is not None and slot.state.is_finished()


def slot_counts(slots: Iterable[SlotRecord]) -> dict[str, int]:
    """Planned trials by the state of their latest attempt (the attempt that counts)."""
    out: dict[str, int] = {}
    for s in slots:
        out[s.state.value] = out.get(s.state.value, 0) + 1
    return out
