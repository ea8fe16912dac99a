"""Tables that fit a terminal: which columns to keep when not all fit the width.

Shared by the trials table (:mod:`numsweep.analysis.tables`) and the live progress table of
a sweep (:mod:`numsweep.sweeps.progress`): rather than cutting headers and cells short
("runni…", "0.083…"), whole columns are left out, those of lowest priority first.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

COLUMN_OVERHEAD = 3
"""rich's padding and border around each cell (a table has one more border at its left)."""


def table_width(sizes: Mapping[str, int], columns: Sequence[str]) -> int:
    """Characters a rich table with the default box takes for ``columns`` whose widest text
    (header or cell) is ``sizes[column]``."""
    return sum(sizes[c] + COLUMN_OVERHEAD for c in columns) + 1


def fit_columns(sizes: Mapping[str, int], priority: Sequence[str],
                width: int | None) -> list[str]:
    """The columns of ``sizes`` (in their order) that fit ``width``, leaving out those last in
    ``priority`` first (columns missing from ``priority`` go before any in it); at least one
    column is kept. ``width`` None keeps every column."""
    kept = list(sizes)
    if width is None:
        return kept
    order = [c for c in dict.fromkeys(priority) if c in sizes]  # a name's first place counts
    order += [c for c in sizes if c not in order]
    while len(kept) > 1 and table_width(sizes, kept) > width:
        kept.remove(next(c for c in reversed(order) if c in kept))
    return kept
