"""One retry policy for every database call, numsweep's own and Optuna's (tenacity): a
locked database (SQLite) or a lost deadlock (PostgreSQL) is retried for
:data:`LOCK_RETRY_SECONDS`; a database that cannot be reached (stopped, restarting,
connection dropped) for the caller's ``db_wait`` seconds (``--db-wait``), with random pauses
that grow up to :data:`MAX_PAUSE_SECONDS`. A failed transaction was rolled back, so repeating
it is safe."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from tenacity import RetryCallState, Retrying, retry_if_exception, wait_random_exponential

from numsweep.defaults import DEFAULT_DB_WAIT
from numsweep.storage.errors import StorageBusy, StorageUnavailable

LOCK_RETRY_SECONDS = 120.0
"""How long a transaction that found the database locked or lost a deadlock is retried."""
MAX_PAUSE_SECONDS = 1.0
LOCK_MARKERS = ("database is locked", "database table is locked", "deadlock detected",
                "could not serialize access", "lock timeout", "database schema has changed")
CONNECTION_MARKERS = (
    "connection refused", "could not connect", "server closed the connection",
    "terminating connection", "connection is closed", "connection already closed",
    "connection to server", "the database system is shutting down",
    "the database system is starting up", "the database system is in recovery mode",
    "connection reset", "broken pipe", "no connection to the server",
    "ssl connection has been closed", "consuming input failed", "connection timed out",
    "server conn crashed", "cannot connect", "connection was closed",
)
FULL_MARKERS = ("database or disk is full", "no space left on device", "could not extend file",
                "disk full", "quota exceeded")
# processes that open a new database at once race to create the tables
TABLE_RACE_MARKERS = ("unique", "already exists", "duplicate key")

T = TypeVar("T")


def _text(exc: BaseException) -> str:
    """The messages of an exception and of those it came from, lower case."""
    parts = []
    seen: set[int] = set()
    node: BaseException | None = exc
    while node is not None and id(node) not in seen:
        seen.add(id(node))
        parts.append(str(getattr(node, "orig", None) or node))
        node = node.__cause__ or node.__context__
    return " ".join(parts).lower()


def is_lock_error(exc: BaseException) -> bool:
    return isinstance(exc, StorageBusy) or any(m in _text(exc) for m in LOCK_MARKERS)


def is_connection_error(exc: BaseException) -> bool:
    if isinstance(exc, StorageUnavailable) or getattr(exc, "connection_invalidated", False):
        return True
    return any(m in _text(exc) for m in CONNECTION_MARKERS)


def is_full_error(exc: BaseException) -> bool:
    """The database could not be written because its disk (or quota) is full."""
    return any(m in _text(exc) for m in FULL_MARKERS)


def driver_line(exc: BaseException) -> str:
    """The first line of the innermost database error under ``exc`` (Optuna wraps the
    driver's in a StorageInternalError whose own message says only that a commit failed)."""
    node: BaseException | None = exc
    seen: set[int] = set()
    line = first_line(exc)
    while node is not None and id(node) not in seen:
        seen.add(id(node))
        orig = getattr(node, "orig", None)
        if orig is not None:
            line = first_line(orig)
        node = node.__cause__ or node.__context__
    return line


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _connection_line(exc: BaseException) -> str:
    """The first line of the exception in the chain that says the connection failed (Optuna
    wraps driver errors in its own)."""
    node: BaseException | None = exc
    seen: set[int] = set()
    while node is not None and id(node) not in seen:
        seen.add(id(node))
        if any(m in str(node).lower() for m in CONNECTION_MARKERS):
            return first_line(node)
        node = node.__cause__ or node.__context__
    return first_line(exc)


def retry_call(fn: Callable[[], T], *, seconds: float, what: str = "the database",
               table_race: bool = False,
               on_reconnect: Callable[[], None] | None = None) -> T:
    """``fn()``, called again while it fails with a lock or connection error (or, with
    ``table_race``, while another process is creating the same tables).

    ``on_reconnect`` is called when ``fn`` succeeded after a connection error. Past the
    time allowed (if any), a connection error becomes :class:`StorageUnavailable`
    saying for how long ``what`` was unreachable; other errors are raised as they are.
    """
    disconnected = []

    def transient(exc: BaseException) -> bool:
        if getattr(exc, "gave_up", False):
            return False  # a nested call waited its time already
        if is_connection_error(exc):
            disconnected.append(True)
        return is_lock_error(exc) or is_connection_error(exc) or (
            table_race and any(m in _text(exc) for m in TABLE_RACE_MARKERS))

    def stop(state: RetryCallState) -> bool:
        assert state.outcome is not None
        exc = state.outcome.exception()
        limit = seconds if exc is not None and is_connection_error(exc) else \
            LOCK_RETRY_SECONDS if exc is not None and is_lock_error(exc) else 2.0
        return state.seconds_since_start >= limit

    retrying = Retrying(retry=retry_if_exception(transient), stop=stop, reraise=True,
                        wait=wait_random_exponential(multiplier=0.02, max=MAX_PAUSE_SECONDS))
    try:
        result = retrying(fn)
    except Exception as exc:
        if getattr(exc, "gave_up", False) or not is_connection_error(exc) \
                or isinstance(exc, StorageBusy) or seconds <= 0:
            raise
        line = _connection_line(exc).removeprefix(f"database error on {what}: ")
        error = StorageUnavailable(f"{what} was unreachable for {seconds:g} s (--db-wait): "
                                   f"{line}")
        error.gave_up = True  # type: ignore[attr-defined]
        raise error from None
    if disconnected and on_reconnect is not None:
        on_reconnect()
    return result


__all__ = ["DEFAULT_DB_WAIT", "LOCK_RETRY_SECONDS", "driver_line", "first_line",
           "is_connection_error", "is_full_error", "is_lock_error", "retry_call"]
