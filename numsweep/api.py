"""The Python API for notebooks and scripts: run a sweep, load its trials and curves, draw.

Everything here is importable from ``numsweep`` itself::

    import numsweep
    result = numsweep.sweep("lambda-search", db="runs.db", data="cifar10.npz",
                            overrides={"n_train": "2000", "cycles": "1"})
    trials = result.trials()                      # a DataFrame, one row per trial
    curves = result.curves(stage="fine")          # curve points of a stage
    fig, ax = plt.subplots()
    numsweep.charts.draw_lambda(numsweep.charts.lambda_data(trials), ax=ax)

The CLI runs the same library calls; the database is shared (``numsweep trials --db runs.db``).
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from numsweep.analysis.queries import load_curves, load_trials
from numsweep.storage import DEFAULT_URL, Storage
from numsweep.sweeps import StageSummary, SweepSpec, load_spec, parse_spec, run_sweep

SpecSource = str | Path | Mapping[str, Any] | SweepSpec
"""A spec file, a preset name, the spec as a dict (the TOML's tables), or a parsed spec."""


@dataclass(frozen=True)
class SweepResult:
    """A finished sweep: its name, database and per-stage summaries, with its data a call
    away."""

    name: str
    db: str = field(repr=False)  # may hold a password: not shown
    stages: tuple[StageSummary, ...]
    storage: Storage | None = field(default=None, repr=False, compare=False)
    """The open database when the caller gave one (an in-memory database lives there only)."""

    def _db(self) -> str | Storage:
        return self.storage if self.storage is not None else self.db

    def trials(self, stage: str | None = None, state: str | None = None) -> pd.DataFrame:
        """The sweep's trials as :func:`numsweep.load_trials` returns them."""
        return load_trials(self._db(), self.name, stage=stage, state=state)

    def curves(self, stage: str | None = None) -> pd.DataFrame:
        """The curve points of the sweep's trials (of one stage)."""
        return load_curves(self._db(), sweep=self.name, stage=stage)

    def report(self, out_dir: str | Path, metric: str = "val_acc") -> Path:
        """Write the HTML and Markdown report into ``out_dir``; returns the HTML page."""
        from numsweep.analysis.report import build_report

        return build_report(self._db(), self.name, out_dir, metric=metric).html


def as_spec(spec: SpecSource, overrides: Mapping[str, Any] | None = None) -> SweepSpec:
    """A :class:`SweepSpec` from a file, a preset name, a dict or a spec, with ``overrides``
    (``{"n_train": 2000, "fine.n_trials": 5}``, as ``KEY=VALUE`` on the command line)."""
    texts = {k: _override_text(v) for k, v in (overrides or {}).items()}
    if isinstance(spec, SweepSpec):
        parsed = spec
    elif isinstance(spec, Mapping):
        parsed = parse_spec(spec, "spec")
    else:
        return load_spec(spec, texts or None)
    return parsed.with_overrides(texts) if texts else parsed


def _override_text(value: Any) -> str:
    if isinstance(value, list | tuple):
        return "[" + ",".join(str(v) for v in value) + "]"
    return str(value)


def sweep(spec: SpecSource, *, db: str | Storage = DEFAULT_URL, data: str | Path | None = None,
          overrides: Mapping[str, Any] | None = None, jobs: int | None = None, threads: int = 1,
          progress: bool = True, checkpoint_dir: str | Path | None = None,
          keep_weights: str = "best", force: bool = False,
          grouping: str = "slots") -> SweepResult:
    """Run every stage of ``spec`` and store its trials in ``db`` (a URL or a SQLite path).

    ``data`` is the dataset (an .npz, a folder, ...; default: CIFAR-10 downloaded into the
    cache). ``jobs`` trials run at once (default, as on the command line: the cores here,
    one process on a GPU), each with ``threads`` BLAS threads. ``progress``
    shows a bar per stage: an HTML bar updated in place in Jupyter, lines on stderr
    elsewhere. A spec value or dataset that does not fit is a :class:`numsweep.NumsweepError`
    before any training. ``checkpoint_dir`` and ``keep_weights`` are ``--checkpoint-dir``
    and ``--keep-weights`` (see docs/resume.md, "Checkpoints and kept networks").

    An in-memory SQLite URL (``sqlite://``) is refused: the trials would be gone when the
    call returns. To keep the results in memory only, pass an open
    ``Storage("sqlite://", in_memory=True)``: the returned :class:`SweepResult` reads from
    that object (no other process can see it), and ``checkpoint_dir`` must be a folder of
    its own: the trial ids of an in-memory database come again in the next one. ``force``
    is ``--force``: trials of more than 10,000,000 updates may run. ``grouping`` is
    ``--grouping``: ``slots`` (each worker trains one slot group, refilled as trials end)
    or ``batch``."""
    from numsweep.engine import load_dataset
    from numsweep.sweeps.guards import default_jobs
    from numsweep.sweeps.spec import check_against_images, resolve_data

    parsed = as_spec(spec, overrides)
    if jobs is None:
        jobs = default_jobs(any(parsed.stage_fixed(s).get("device") == "cuda"
                                for s in parsed.stages))
    source = resolve_data(parsed, None if data is None else str(data))
    storage = db if isinstance(db, Storage) else Storage(str(db))
    dataset = load_dataset(source)
    check_against_images(parsed, dataset.image_shape, len(dataset.classes))
    display = progress_display() if progress else None
    summaries = run_sweep(parsed, storage, data_source=source, jobs=jobs, threads=threads,
                          on_event=display, checkpoint_dir=checkpoint_dir,
                          keep_weights=keep_weights, force=force, grouping=grouping)
    if display is not None:
        display.close()
    return SweepResult(parsed.name, storage.url, tuple(summaries),
                       storage=db if isinstance(db, Storage) else None)


def extend(name: str, additions: Mapping[str, Any], *, db: str | Storage = DEFAULT_URL,
           data: str | Path | None = None, jobs: int = 1, threads: int | None = None,
           progress: bool = True, grouping: str | None = None) -> SweepResult:
    """Give sampler stages of the stored sweep ``name`` more trials and run them, as
    ``numsweep sweep extend NAME STAGE.n_trials=+N`` does: ``additions`` maps
    ``"STAGE.n_trials"`` to ``"+N"`` (trials to add) or to the new total. Runs as a resume
    runs (the stored spec; ``data`` defaults to the sweep's and other data is refused);
    ``grouping`` is ``--grouping`` (None: as each stage stored it)."""
    from numsweep.sweeps.extend import extend_sweep

    storage = db if isinstance(db, Storage) else Storage(str(db))
    display = progress_display() if progress else None
    summaries = extend_sweep(name, storage, {k: str(v) for k, v in additions.items()},
                             data_source=None if data is None else str(data), jobs=jobs,
                             threads=threads, on_event=display, grouping=grouping)
    if display is not None:
        display.close()
    return SweepResult(name, storage.url, tuple(summaries))


class StageProgress:
    """Sweep events as one progress bar per stage: ``done/planned``, the best val_acc so far,
    and the latest curve point of a running trial (its update and val_acc).

    In Jupyter (an IPython kernel) the bar is HTML updated in place (no widgets needed);
    elsewhere each stage's bar is a line on stderr rewritten as trials finish. A running
    trial's point redraws it at most every ``point_seconds``."""

    def __init__(self, write: Callable[[str, str], None], point_seconds: float = 10.0) -> None:
        self._write = write
        self.point_seconds = point_seconds
        self.stage = ""
        self.planned = 0
        self.done = 0
        self.best: float | None = None
        self.point: tuple[int | None, str] | None = None  # (trial id, its latest point)
        self.pointed = -math.inf  # when a point last redrew the bar

    def __call__(self, event: Any) -> None:
        if event.kind == "stage":
            self.stage, self.planned = event.stage, int(event.planned)
            self.done, self.best = sum(event.counts.values()) if event.counts else 0, None
            self.point = None
        elif event.kind == "finished":
            self.done += 1
            if event.val_acc is not None and (self.best is None or event.val_acc > self.best):
                self.best = event.val_acc
            if self.point is not None and self.point[0] == event.trial_id:
                self.point = None
        elif event.kind == "point" and event.step is not None:
            of = f"/{event.total}" if event.total else ""
            val = "" if event.val_acc is None else f" val_acc {event.val_acc:.4f}"
            self.point = (event.trial_id, f"trial {event.trial_id} at update "
                                          f"{event.step}{of}{val}")
            if time.monotonic() - self.pointed < self.point_seconds:
                return
            self.pointed = time.monotonic()
        else:
            return
        self._write(self.stage, self.text())

    def text(self) -> str:
        best = "" if self.best is None else f", best val_acc {self.best:.4f}"
        point = "" if self.point is None else f"; {self.point[1]}"
        return f"stage {self.stage}: {self.done}/{self.planned} trials{best}{point}"

    def close(self) -> None:
        self._write("", "")


def progress_display() -> StageProgress:
    """A :class:`StageProgress` drawing in Jupyter or on stderr, whichever this runs in."""
    shell = sys.modules.get("IPython")
    ipython = shell.get_ipython() if shell is not None else None  # type: ignore[attr-defined]
    if ipython is not None and "IPKernelApp" in getattr(ipython, "config", {}):
        return StageProgress(_jupyter_writer())
    return StageProgress(_stderr_writer())


def _jupyter_writer() -> Callable[[str, str], None]:
    import html

    from IPython.display import HTML, display

    handles: dict[str, Any] = {}

    def write(stage: str, text: str) -> None:
        if not stage:
            return
        done, planned = _fraction(text)
        bar = (f"<progress value='{done}' max='{max(planned, 1)}' style='width:12em'>"
               f"</progress> <code>{html.escape(text)}</code>")
        if stage in handles:
            handles[stage].update(HTML(bar))
        else:
            handles[stage] = display(HTML(bar), display_id=True)

    return write


def _fraction(text: str) -> tuple[int, int]:
    import re

    match = re.search(r"(\d+)/(\d+) trials", text)
    return (int(match.group(1)), int(match.group(2))) if match else (0, 1)


def _stderr_writer() -> Callable[[str, str], None]:
    last = [""]

    def write(stage: str, text: str) -> None:
        if not stage:
            if last[0]:
                sys.stderr.write("\n")
            last[0] = ""
            return
        if last[0] and last[0] != stage:
            sys.stderr.write("\n")
        end = "\r" if sys.stderr.isatty() else "\n"
        sys.stderr.write(text + end)
        sys.stderr.flush()
        last[0] = stage

    return write
