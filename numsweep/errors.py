"""The domain error every user-facing numsweep error derives from.

A :class:`NumsweepError` is a mistake in what the user asked for (a wrong spec value, a
missing file, an unknown sweep or column): the CLI prints its first line and exits 1. Any
other exception is a bug and keeps its traceback.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class NumsweepError(Exception):
    """A user error; the message says what is wrong in one line."""


def did_you_mean(name: str, known: Iterable[str]) -> str:
    """``" (did you mean 'lam'?)"`` for the closest of ``known``, or ``""`` when none is close."""
    close = difflib.get_close_matches(name, list(known), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""
