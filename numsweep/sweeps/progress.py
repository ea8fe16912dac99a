"""The live progress display of a sweep (rich): per stage the trials done, running, pruned and
failed, the best val_acc so far and how full its slot groups ran (the occupancy of those that
ended, see :mod:`.occupancy`); under it each running trial's update count and latest
val_acc (from its curve points, as they are measured); elapsed time, time left, and the
planner's estimate against the measured time of the finished trials (both train+eval seconds
per trial, a grouped trial's its share of the group's, summed over the stage:
docs/numbers.md). Trials are named by their database id (what ``numsweep trials``,
``--trial`` and ``trial rerun`` take); the table leaves out its least needed columns rather
than cut them when the terminal is narrow.

Without a terminal (output to a file or a pipe) nothing is redrawn: a line per finished trial,
and a line per curve point of a running trial, at most one per trial every
:data:`LINE_SECONDS`."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from numsweep.storage import TrialState
from numsweep.sweeps.events import TrialEvent
from numsweep.terminal import fit_columns

COLUMNS = ("stage", "done", "running", "pruned", "failed", "reused", "groups of", "slots",
           "best val_acc", "estimated s", "measured s")
PRIORITY = ("stage", "done", "best val_acc", "running", "failed", "pruned", "measured s",
            "estimated s", "slots", "groups of", "reused")
"""The progress table's columns in the order they are kept when the terminal is narrow;
a column whose every cell is 0 or empty is left out before any other."""
RUNNING_ROWS = 12
"""Running trials shown at most (the others are counted on one more line)."""
LINE_SECONDS = 10.0
"""Without a terminal, a running trial's curve point is printed when its last such line is
at least this old (the later points show at the next line, its end's line says how it ended)."""


@dataclass
class _Trial:
    """A running trial as its curve points show it."""

    stage: str
    trial_id: int | None
    step: int | None = None
    total: int | None = None
    val_acc: float | None = None
    first: tuple[float, int] | None = None  # (time, update) of its first point seen
    at: float = 0.0  # time of its latest point
    printed: float = -math.inf  # time of its latest line (without a terminal)

    def projected(self) -> float | None:
        """Seconds its whole run takes at the rate its points came so far."""
        if self.first is None or self.step is None or not self.total:
            return None
        t0, s0 = self.first
        if self.step <= s0 or self.at <= t0:
            return None
        return self.total * (self.at - t0) / (self.step - s0)


@dataclass
class _Stage:
    name: str
    planned: int = 0
    reused: int = 0
    running: int = 0
    counts: dict[str, int] = field(default_factory=dict)
    best: float = math.nan
    measured: list[float] = field(default_factory=list)
    estimated: list[float] = field(default_factory=list)
    group_size: int = 1
    group_auto: bool = False
    occupancy: float | None = None  # of its slot groups that ended so far

    @property
    def finished(self) -> int:
        return sum(self.counts.values())


def _duration(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    seconds = max(0, round(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


class SweepProgress:
    """Receives :class:`TrialEvent` objects and redraws a live table; also prints one line per
    finished trial above it. Use as a context manager around ``run_sweep``."""

    def __init__(self, console: Console, jobs: int, *, lines: bool = True,
                 line_seconds: float = LINE_SECONDS) -> None:
        self.console = console
        self.jobs = jobs
        self.lines = lines
        self.line_seconds = line_seconds
        self.stages: dict[str, _Stage] = {}
        self.running: dict[int | str, _Trial] = {}  # by trial id (its number when none)
        self.order: list[str] = []
        self.start = time.monotonic()
        self.started = False  # shown from the first event: an error before it is one line
        self.live = Live(self.render(), console=console, refresh_per_second=4, transient=False)

    def __enter__(self) -> SweepProgress:
        self.start = time.monotonic()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.started:
            self.live.update(self.render())
            self.live.__exit__(*exc)
            if not self.console.is_terminal:
                self.console.line()  # what follows starts on its own line in a log file

    def __call__(self, event: TrialEvent) -> None:
        if not self.started:
            self.started = True
            self.live.__enter__()
        stage = self.stages.get(event.stage)
        if stage is None:
            stage = self.stages[event.stage] = _Stage(event.stage)
            self.order.append(event.stage)
        if event.kind == "stage":
            if event.jobs is not None:  # as many as the runner found (a Dask cluster's slots)
                self.jobs = event.jobs
            stage.planned, stage.reused = event.planned, event.reused
            stage.counts = dict(event.counts)  # finished before this process started
            stage.group_size, stage.group_auto = event.group_size, event.group_auto
            if event.message and self.lines:
                self.live.console.print(f"[bold]{event.stage}[/]: {event.message}")
        elif event.kind == "started":
            stage.running += 1
            self.running[_key(event)] = _Trial(event.stage, event.trial_id)
        elif event.kind == "point":
            self._point(event)
        elif event.kind == "group":
            if event.occupancy is not None:
                stage.occupancy = event.occupancy
                if self.lines and not self.console.is_terminal:
                    self.live.console.print(f"{event.stage}: a slot group of "
                                            f"{event.group_size} ended; slots "
                                            f"{_share(event.occupancy)} full so far",
                                            highlight=False)
        elif event.kind == "finished":
            stage.running = max(0, stage.running - 1)
            self.running.pop(_key(event), None)
            state = event.state.value if event.state else "FAILED"
            stage.counts[state] = stage.counts.get(state, 0) + 1
            if event.state is TrialState.COMPLETE and event.val_acc is not None \
                    and math.isfinite(event.val_acc):
                stage.best = event.val_acc if math.isnan(stage.best) else max(stage.best,
                                                                              event.val_acc)
            if event.seconds is not None:
                stage.measured.append(event.seconds)
                if event.estimate is not None:
                    stage.estimated.append(event.estimate)
            if self.lines:
                if event.state is TrialState.INTERRUPTED:
                    self.live.console.print(f"{event.stage} {_trial(event)} interrupted "
                                            f"({event.message})")
                    self.live.update(self.render())
                    return
                val = ("" if event.val_acc is None or math.isnan(event.val_acc)
                       else f" val_acc {event.val_acc:.4f}")
                timing = _timing(event)
                note = f" ({event.message})" if event.message else ""
                self.live.console.print(f"{event.stage} {_trial(event)} "
                                        f"{state.lower()}{val}{timing}{note}")
        self.live.update(self.render())

    def _point(self, event: TrialEvent) -> None:
        trial = self.running.setdefault(_key(event), _Trial(event.stage, event.trial_id))
        now = time.monotonic()
        if event.step is not None:
            if trial.first is None:
                trial.first = (now, event.step)
            trial.step = event.step
        trial.total = event.total if event.total is not None else trial.total
        trial.val_acc = event.val_acc if event.val_acc is not None else trial.val_acc
        trial.at = now
        if self.lines and not self.console.is_terminal \
                and now - trial.printed >= self.line_seconds:
            trial.printed = now
            self.live.console.print(f"{event.stage} {_trial(event)} {_updates(trial)}"
                                    + _val(trial.val_acc), highlight=False)

    def eta(self) -> float:
        """Seconds left: remaining trials x mean measured seconds per trial / jobs (a grouped
        trial measures its share of its group's time, so K trials in a group take K shares
        of one job's time, as K lone trials would take K times theirs). Before any trial
        ended, the seconds per trial are those the running trials' curve points foretell
        (a grouped trial's as its share: the group's time over the stage's group size)."""
        measured = [s for st in self.stages.values() for s in st.measured]
        left = sum(max(0, st.planned - st.finished) for st in self.stages.values())
        if not left:
            return 0.0  # such as a resumed sweep that had finished
        if not measured:
            measured = [p / max(1, self.stages[t.stage].group_size) if t.stage in self.stages
                        else p for t in self.running.values() if (p := t.projected()) is not None]
        if not measured:
            return math.nan
        return left * (sum(measured) / len(measured)) / self.jobs

    def rows(self) -> list[dict[str, str]]:
        """The table's cells, one mapping of column to text per stage."""
        out = []
        for name in self.order:
            st = self.stages[name]
            complete = st.counts.get("COMPLETE", 0)
            out.append({
                "stage": name,
                "done": f"{complete}/{st.planned}" if st.planned else str(complete),
                "running": str(st.running), "pruned": str(st.counts.get("PRUNED", 0)),
                "failed": str(st.counts.get("FAILED", 0)), "reused": str(st.reused),
                "groups of": f"{st.group_size}" + (" (auto)" if st.group_auto else ""),
                "slots": "" if st.occupancy is None else _share(st.occupancy),
                "best val_acc": "" if math.isnan(st.best) else f"{st.best:.4f}",
                "estimated s": f"{sum(st.estimated):.1f}" if st.estimated else "",
                "measured s": f"{sum(st.measured):.1f}" if st.measured else ""})
        return out

    def running_rows(self) -> list[dict[str, str]]:
        """The running trials' cells: trial, stage, update (of planned), latest val_acc."""
        return [{"trial": str(t.trial_id) if t.trial_id is not None else str(key),
                 "stage": t.stage, "update": _updates(t, bare=True),
                 "val_acc": "" if t.val_acc is None or math.isnan(t.val_acc)
                 else f"{t.val_acc:.4f}"}
                for key, t in self.running.items()]

    def _running_table(self) -> Table | None:
        rows = self.running_rows()
        if not any(r["update"] for r in rows):
            return None  # no curve point yet: the table above says how many run
        shown = rows[:RUNNING_ROWS]
        table = Table("running trial", "stage", "update", "val_acc", title=None)
        for row in shown:
            table.add_row(row["trial"], row["stage"], row["update"], row["val_acc"])
        if len(rows) > len(shown):
            table.add_row(f"+{len(rows) - len(shown)} more", "", "", "")
        return table

    def render(self) -> Group:
        rows = self.rows()
        sizes = {c: max([len(c), *(len(r[c]) for r in rows)]) for c in COLUMNS}
        empty = [c for c in PRIORITY if rows and all(r[c] in ("", "0") for r in rows)]
        priority = [c for c in PRIORITY if c not in empty] + empty
        kept = fit_columns(sizes, priority, self.console.width)
        table = Table(*kept, title=None)
        for row in rows:
            table.add_row(*(row[c] for c in kept))
        elapsed = time.monotonic() - self.start
        footer = Text(f"elapsed {_duration(elapsed)}   time left ~{_duration(self.eta())}   "
                      f"jobs {self.jobs}")
        running = self._running_table()
        return Group(table, running, footer) if running is not None else Group(table, footer)


def _share(occupancy: float) -> str:
    """``97%``; a share that is not all of it never shows as 100%."""
    percent = min(round(occupancy * 100), 99) if occupancy < 1 else 100
    return f"{percent}%"


def _key(event: TrialEvent) -> int | str:
    return event.trial_id if event.trial_id is not None else f"#{event.number}"


def _updates(trial: _Trial, *, bare: bool = False) -> str:
    """``update 320/960`` (``320/960`` when ``bare``); empty before its first point."""
    if trial.step is None:
        return ""
    text = f"{trial.step}/{trial.total}" if trial.total else str(trial.step)
    return text if bare else f"update {text}"


def _val(val_acc: float | None) -> str:
    return "" if val_acc is None or math.isnan(val_acc) else f" val_acc {val_acc:.4f}"


def _timing(event: TrialEvent) -> str:
    """`` in 21.3 s train+eval (estimated 17.4 s; shared by a group of 8)``: the trial's
    measured seconds beside the estimate of the same quantity."""
    if event.seconds is None:
        return ""
    notes = [f"estimated {event.estimate:.1f} s"] if event.estimate is not None else []
    if event.group_size > 1:
        notes.append(f"shared by a group of {event.group_size}")
    return f" in {event.seconds:.1f} s train+eval" + (f" ({'; '.join(notes)})" if notes else "")


def _trial(event: TrialEvent) -> str:
    """``trial 58``: the database id; ``number`` (its place in the sweep) when there is none."""
    return (f"trial {event.trial_id}" if event.trial_id is not None
            else f"trial number {event.number}")
