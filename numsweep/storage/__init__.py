"""The result database (SQLAlchemy). Nothing ORM-shaped leaves this package."""

from numsweep.storage.models import TrialState
from numsweep.storage.records import CurveRecord, StageRecord, SweepRecord, TrialRecord
from numsweep.storage.storage import DEFAULT_URL, Storage, StorageError

__all__ = [
    "DEFAULT_URL",
    "CurveRecord",
    "StageRecord",
    "Storage",
    "StorageError",
    "SweepRecord",
    "TrialRecord",
    "TrialState",
]
