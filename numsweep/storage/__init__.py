"""The result database (SQLAlchemy). Nothing ORM-shaped leaves this package."""

from numsweep.storage.models import TrialState
from numsweep.storage.records import (
    CurveRecord,
    SlotRecord,
    StageRecord,
    SweepRecord,
    TrialRecord,
)
from numsweep.storage.storage import (
    DEFAULT_URL,
    Storage,
    StorageBusy,
    StorageConflict,
    StorageError,
    normalize_url,
    shown_url,
)

__all__ = [
    "DEFAULT_URL",
    "CurveRecord",
    "SlotRecord",
    "StageRecord",
    "Storage",
    "StorageBusy",
    "StorageConflict",
    "StorageError",
    "SweepRecord",
    "TrialRecord",
    "TrialState",
    "normalize_url",
    "shown_url",
]
