"""The result database (SQLAlchemy). Nothing ORM-shaped leaves this package.

- ``storage.py``: :class:`Storage`, one transaction per method, frozen records out.
- ``models.py``: the ORM tables (``ns_`` prefix) of the newest schema, and trial states.
- ``schema.py``: the schema's revision: create, upgrade (Alembic) or refuse a database.
- ``migrations/``: the Alembic environment and one migration per revision (``versions/``).
- ``records.py``: the frozen records that leave the package.
- ``plan.py``: a stage's stored plan (:class:`StagePlan`) and its ranges in words.
- ``errors.py``: what goes wrong with the database, as one-line exceptions.
- ``retry.py``: one retry policy (tenacity) for locked or unreachable databases.
"""

from numsweep.storage.errors import (
    StorageBusy,
    StorageConflict,
    StorageError,
    StorageFull,
    StorageGone,
    StorageUnavailable,
)
from numsweep.storage.models import TrialState
from numsweep.storage.plan import StagePlan, describe_space
from numsweep.storage.records import (
    CurveRecord,
    LineageRecord,
    RunSettings,
    SlotGroupRecord,
    SlotRecord,
    StageRecord,
    SweepRecord,
    TrialRecord,
)
from numsweep.storage.retry import DEFAULT_DB_WAIT, retry_call
from numsweep.storage.storage import (
    DEFAULT_URL,
    Storage,
    database_identity,
    full_message,
    is_in_memory,
    normalize_url,
    shown_url,
)

__all__ = [
    "DEFAULT_DB_WAIT",
    "DEFAULT_URL",
    "CurveRecord",
    "LineageRecord",
    "RunSettings",
    "SlotGroupRecord",
    "SlotRecord",
    "StagePlan",
    "StageRecord",
    "Storage",
    "StorageBusy",
    "StorageConflict",
    "StorageError",
    "StorageFull",
    "StorageGone",
    "StorageUnavailable",
    "SweepRecord",
    "TrialRecord",
    "TrialState",
    "database_identity",
    "describe_space",
    "full_message",
    "is_in_memory",
    "normalize_url",
    "retry_call",
    "shown_url",
]
