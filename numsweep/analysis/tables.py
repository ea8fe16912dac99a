"""Trial tables for a terminal: the columns worth showing, dropped by priority to fit a width.

:func:`trial_table` picks the columns of a frame from :func:`load_trials` (the trial id, the
state, the results, the parameters that vary), writes every cell with
:func:`format_cell`, and when the table is wider than the terminal leaves out the columns of
lowest priority, naming them so the caller can say how to see all.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd

from numsweep.analysis.formatting import format_cell
from numsweep.analysis.selection import varying_parameters
from numsweep.terminal import fit_columns

RESULTS = ("train_acc", "val_acc", "test_acc", "train_seconds", "updates")
PRIORITY = ("trial_id", "state", "val_acc", "test_acc", "*params", "stage",
            "train_seconds", "sweep", "train_acc", "updates")
"""Columns in the order they are kept when space runs out (``*params``: varying parameters)."""


@dataclass(frozen=True)
class TextTable:
    """Columns and rows of text, with the columns left out to fit the width."""

    columns: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    hidden: tuple[str, ...]


def trial_table(frame: pd.DataFrame, width: int | None = None,
                asked: Sequence[str] = ()) -> TextTable:
    """The table of ``frame``'s trials; ``width`` None keeps every column. The ``asked``
    columns (those a query filtered or sorted on) are shown, and kept first after the trial
    id and state.

    Trials are named by ``trial_id``, the database id that ``--trial`` and ``trial rerun``
    take (``--format csv`` also has ``number``, the trial's position in its sweep).
    """
    params = varying_parameters(frame)
    columns = ["trial_id", "sweep", "stage", "state", *params,
               *[c for c in RESULTS if c in frame]]
    asked = [c for c in dict.fromkeys(asked) if c in frame]
    columns += [c for c in asked if c not in columns]
    if frame["sweep"].nunique() <= 1:
        columns.remove("sweep")
    if frame["stage"].isna().all():
        columns.remove("stage")
    cells = {c: [format_cell(v) for v in frame[c]] for c in columns}
    heads = {c: c for c in columns}
    sizes = {c: max([len(heads[c]), *map(len, cells[c])]) for c in columns}
    # trials of several sweeps: which sweep is kept with the id
    order = ["trial_id", *(["sweep"] if "sweep" in columns else []), "state", *asked,
             *[p for name in PRIORITY for p in (params if name == "*params" else [name])]]
    kept = fit_columns(sizes, order, width)
    rows = tuple(tuple(cells[c][i] for c in kept) for i in range(len(frame)))
    return TextTable(tuple(heads[c] for c in kept), rows,
                     tuple(heads[c] for c in columns if c not in kept))
