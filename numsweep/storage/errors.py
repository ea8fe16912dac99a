"""What goes wrong with the database, as exceptions whose message is one line for the user."""

from __future__ import annotations

from numsweep.errors import NumsweepError


class StorageError(NumsweepError):
    """The database could not be opened, read or written; the message says which and why."""


class StorageBusy(StorageError):
    """The database was locked by another writer for longer than the retries allow."""


class StorageConflict(StorageError):
    """A write broke a unique constraint: another process wrote the same row first."""


class StorageUnavailable(StorageError):
    """The database server could not be reached (down, restarting, network gone); after
    ``--db-wait`` seconds of retries the message says for how long it was tried."""


class StorageGone(StorageError):
    """The database file was deleted or replaced by another file while this process had it
    open: what it would write there would be lost, so it stops."""


class StorageFull(StorageError):
    """The database could not grow: its disk (or its quota) is full."""
