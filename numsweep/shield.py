"""Ctrl-C held back while code that must not be cut short runs.

A KeyboardInterrupt raised in the middle of a database transaction, or inside a connection
pool's bookkeeping, can leave this process holding a write lock (and then waiting on it) or a
connection half closed (and SQLAlchemy printing tracebacks as the process ends). Such code
runs inside :func:`shielded`. numsweep's signal handlers call :func:`interrupt` instead of
raising: outside a shielded block it raises KeyboardInterrupt at once, inside one it notes the
interrupt, and the outermost block raises it as it ends. A second Ctrl-C while the first
waits raises at once: a block stuck on a database that does not answer can still be left.

Python runs signal handlers in the main thread only, so only the main thread's blocks count;
in other threads :func:`shielded` does nothing.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import TracebackType

REDELIVER_DELAY = 0.05
"""Seconds after Python dropped a KeyboardInterrupt that it is raised again."""


class _Held:
    """The main thread's shielded depth and whether an interrupt waits for it to end."""

    depth = 0
    pending = False


_held = _Held()


class shielded:  # lower case: used like contextlib's, ``with shielded():``
    """A block that a Ctrl-C does not cut short; the interrupt is raised as it ends."""

    __slots__ = ("counted",)

    def __enter__(self) -> None:
        self.counted = threading.current_thread() is threading.main_thread()
        if self.counted:
            _held.depth += 1

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if not self.counted:
            return
        _held.depth -= 1
        if _held.depth == 0 and _held.pending:
            _held.pending = False
            raise KeyboardInterrupt


def interrupt() -> None:
    """What a signal handler does for Ctrl-C: raise KeyboardInterrupt now, or as the current
    shielded block ends (now, if one already waits for that)."""
    if _held.depth > 0 and not _held.pending:
        _held.pending = True
        return
    _held.pending = False
    raise KeyboardInterrupt


def interrupt_pending() -> bool:
    """Whether a Ctrl-C waits for the main thread's shielded block to end."""
    return _held.pending


def _on_sigint(_signum: int, _frame: object) -> None:
    interrupt()


def install_sigint_handler() -> None:
    """Make Ctrl-C wait for shielded blocks for the rest of the process, and raise again a
    KeyboardInterrupt that Python dropped (one raised in a ``__del__`` or weakref callback
    during garbage collection is printed as "Exception ignored" and lost: the command would
    run on). The ``numsweep`` command does this first; a notebook keeps its own handler."""
    signal.signal(signal.SIGINT, _on_sigint)
    previous = sys.unraisablehook

    def raise_dropped_again(unraisable: sys.UnraisableHookArgs) -> None:
        if isinstance(unraisable.exc_value, KeyboardInterrupt):
            # a moment later, from another thread: sent from here, it would be raised (and
            # dropped) inside this hook
            again = threading.Timer(REDELIVER_DELAY, os.kill, (os.getpid(), signal.SIGINT))
            again.daemon = True
            again.start()
            return
        previous(unraisable)

    sys.unraisablehook = raise_dropped_again


@contextmanager
def ctrl_c_deferred() -> Iterator[None]:
    """While it lasts, a Ctrl-C waits for shielded blocks also where Python's own handler is
    in place (a notebook, a script); another program's handler is left as it is."""
    if threading.current_thread() is not threading.main_thread() \
            or signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        yield
        return
    signal.signal(signal.SIGINT, _on_sigint)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)
