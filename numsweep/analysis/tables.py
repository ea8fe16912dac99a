"""Trial tables for a terminal: the columns worth showing, dropped by priority to fit a width.

:func:`trial_table` picks the columns of a frame from :func:`load_trials` (the trial id, the
state, the results, the parameters that vary), writes every cell with
:func:`format_cell`, and when the table is wider than the terminal leaves out the columns of
lowest priority, naming them so the caller can say how to see all.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd

from numsweep.analysis.formatting import format_cell
from numsweep.analysis.selection import parameter_columns, varying_parameters
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


def set_parameters(frame: pd.DataFrame, defaults: Mapping[str, Any]) -> list[str]:
    """The parameters some trial of ``frame`` sets to other than its default (``data_seed``
    only where it is not the trial's ``seed``, as everywhere)."""
    out = []
    for name in parameter_columns(frame):
        if name not in defaults:
            continue
        default = _plain(defaults[name])
        values = [_plain(v) for v in frame[name]]
        if name == "data_seed" and "seed" in frame:
            values = [None if v == _plain(s) else v for v, s in zip(values, frame["seed"],
                                                                    strict=True)]
        if any(v != default for v in values):
            out.append(name)
    return out


def _plain(value: Any) -> Any:
    """Lists as tuples (also written as JSON, as ``numsweep trials`` writes them), missing
    values as None, numbers as floats: comparable."""
    if isinstance(value, str) and value.startswith("["):
        try:
            value = json.loads(value)
        except ValueError:
            return value
    if isinstance(value, (list, tuple)):
        return tuple(_plain(v) for v in value)
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    return value


def trial_table(frame: pd.DataFrame, width: int | None = None,
                asked: Sequence[str] = (), defaults: Mapping[str, Any] | None = None
                ) -> TextTable:
    """The table of ``frame``'s trials; ``width`` None keeps every column. The ``asked``
    columns (those a query filtered or sorted on) are shown, and kept first after the trial
    id and state. The parameters shown are those that vary; when none does (one trial, such
    as a ``numsweep train`` run), those set to other than their ``defaults``.

    Trials are named by ``trial_id``, the database id that ``--trial`` and ``trial rerun``
    take (``--format csv`` also has ``number``, the trial's position in its sweep).
    """
    params = varying_parameters(frame)
    if not params and defaults is not None:
        params = set_parameters(frame, defaults)
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
