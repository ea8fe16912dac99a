"""What both exports share: the finished trials of the chosen sweeps as plain records, their
curve points, the optional package's import, and the summary of what was written."""

from __future__ import annotations

import importlib
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from types import ModuleType
from typing import Any

import pandas as pd

from numsweep.analysis.queries import Sweeps, load_curves, load_trials
from numsweep.analysis.selection import metric_columns, parameter_columns
from numsweep.errors import NumsweepError
from numsweep.storage import Storage

FINISHED = ("COMPLETE", "PRUNED", "FAILED")
"""Trial states that are exported; a running or interrupted trial waits for a later call."""
CURVE_QUANTITIES = ("loss", "cost", "acc")


class ExportError(NumsweepError):
    """An export cannot be done: its package is missing, its target cannot be written."""


@dataclass(frozen=True)
class ExportedTrial:
    """One finished trial as the exports write it."""

    trial_id: int
    sweep: str
    stage: str | None
    number: int
    state: str
    seed: int | None
    started_at: datetime | None
    finished_at: datetime | None
    message: str
    params: dict[str, Any]
    metrics: dict[str, float]

    @property
    def run_name(self) -> str:
        return f"trial-{self.trial_id}"

    @property
    def fingerprint(self) -> str:
        """What an export records to know a trial is there and up to date: its state and
        when it finished (a trial that ran again finishes anew)."""
        finished = "" if self.finished_at is None else self.finished_at.isoformat()
        return f"{self.state}@{finished}"


@dataclass(frozen=True)
class ExportSummary:
    """What an export did: the ids of the trials written now, how many were there already,
    and how many are not finished yet (written by a later export)."""

    target: str
    exported: tuple[int, ...]
    already: int
    unfinished: int

    def text(self) -> str:
        parts = [f"{self.already} already there"] if self.already else []
        if self.unfinished:
            parts.append(f"{self.unfinished} not finished yet")
        done = f"exported {len(self.exported)} trial{'s' if len(self.exported) != 1 else ''}"
        return f"{done} to {self.target}" + (f" ({'; '.join(parts)})" if parts else "")


def require(module: str, extra: str) -> ModuleType:
    """Import an optional package; missing, a one-line error naming the extra to install."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise ExportError(f"numsweep export {extra} needs the {extra} package: "
                          f"pip install 'numsweep[{extra}]'") from None


def _plain(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    if hasattr(value, "item"):  # NumPy scalars
        return value.item()
    return value


def finished_trials(db: str | Storage, sweep: Sweeps) -> tuple[list[ExportedTrial], int]:
    """The finished trials of ``sweep`` (one name, several, or None for every sweep) in id
    order, and how many others there are (running, waiting, interrupted)."""
    frame = load_trials(db, sweep)
    if frame.empty:
        return [], 0
    params = parameter_columns(frame)
    metrics = metric_columns(frame)
    done = frame[frame["state"].isin(FINISHED)]
    out = []
    for _, row in done.iterrows():
        out.append(ExportedTrial(
            trial_id=int(row["trial_id"]), sweep=str(row["sweep"]),
            stage=None if pd.isna(row["stage"]) else str(row["stage"]),
            number=int(row["number"]), state=str(row["state"]),
            seed=None if pd.isna(row["seed"]) else int(row["seed"]),
            started_at=_time(row["started_at"]), finished_at=_time(row["finished_at"]),
            message="" if pd.isna(row["message"]) else str(row["message"]),
            params={p: _plain(row[p]) for p in params if not _missing(row[p])},
            metrics={m: float(row[m]) for m in metrics
                     if not _missing(row[m]) and math.isfinite(float(row[m]))}))
    return out, len(frame) - len(done)


def _missing(value: Any) -> bool:
    return not isinstance(value, tuple | list) and bool(pd.isna(value))


def _time(value: Any) -> datetime | None:
    if value is None or pd.isna(value):
        return None
    stamp = pd.Timestamp(value).to_pydatetime()
    return stamp if stamp.tzinfo else stamp.replace(tzinfo=UTC)  # stored as UTC


def seconds(when: datetime | None) -> float:
    """A POSIX timestamp (now, for a trial without one)."""
    return (when or datetime.now(UTC)).timestamp()


def curve_series(db: str | Storage, trial_ids: Sequence[int]
                 ) -> dict[int, list[tuple[str, int, float]]]:
    """Per trial, its curve points as (tag, step, value): ``train/loss``, ``val/acc``, ...
    for every split and quantity, and ``lr`` (the training split's learning rate)."""
    if not trial_ids:
        return {}
    curves = load_curves(db, list(trial_ids))
    out: dict[int, list[tuple[str, int, float]]] = {int(t): [] for t in trial_ids}
    for row in curves.itertuples(index=False):
        points = out[int(row.trial_id)]
        for quantity in CURVE_QUANTITIES:
            value = float(getattr(row, quantity))
            if math.isfinite(value):
                points.append((f"{row.split}/{quantity}", int(row.step), value))
        lr = float(row.lr)
        if row.split != "val" and math.isfinite(lr):
            points.append(("lr" if row.split == "train" else f"{row.split}/lr",
                           int(row.step), lr))
    return out


def last_step(points: Sequence[tuple[str, int, float]]) -> int:
    return max((step for _, step, _ in points), default=0)


def param_text(value: Any) -> str:
    """A parameter as text (MLflow's parameters, TensorBoard's text hyperparameters)."""
    if isinstance(value, list):
        return "[" + ",".join(param_text(v) for v in value) + "]"
    return str(value)
