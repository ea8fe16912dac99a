"""What each ``numsweep plot`` chart draws, collected from the database: the trials of the
sweeps (and stage) asked for, their curves where the chart needs them, and the chart family's
``*_data`` of them. The CLI draws the result with the family's ``draw_*``.

Trials of several sweeps are drawn together, labelled by sweep; no trials is a
:class:`ChartError` naming what was asked for.
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from numsweep.analysis.bars import bar_data
from numsweep.analysis.curves import curve_data
from numsweep.analysis.lambda_search import lambda_data
from numsweep.analysis.lineage import lineage_points
from numsweep.analysis.optimizers import optimizer_data
from numsweep.analysis.pareto import objective_front_data, pareto_data
from numsweep.analysis.queries import load_curves, load_lineage, load_stages, load_trials
from numsweep.analysis.range_tests import range_test_data
from numsweep.analysis.report import sweep_importance_data
from numsweep.analysis.selection import ChartError, best_trials, select_trials
from numsweep.pareto import Objective
from numsweep.storage import Storage

Database = str | Storage


def sweeps_text(sweeps: Sequence[str]) -> str:
    """``sweep 'a'`` or ``sweeps 'a', 'b'``: the sweeps asked for, each once."""
    names = list(dict.fromkeys(sweeps))
    return (f"sweep {names[0]!r}" if len(names) == 1
            else "sweeps " + ", ".join(repr(n) for n in names))


def selected_trials(db: Database, sweeps: Sequence[str], stage: str | None = None
                    ) -> pd.DataFrame:
    """The trials of ``sweeps`` (of ``stage``); a :class:`ChartError` when there are none."""
    frame = load_trials(db, list(sweeps), stage=stage)
    if frame.empty:
        where = sweeps_text(sweeps) + (f" stage {stage!r}" if stage else "")
        raise ChartError(f"no trials in {where}: nothing to draw")
    return frame


def bars_chart(db: Database, sweeps: Sequence[str], stage: str | None, metric: str,
               by: Sequence[str] | None = None, top: int | None = None) -> pd.DataFrame:
    """``plot bars``: :func:`bar_data` of the selected trials."""
    return bar_data(selected_trials(db, sweeps, stage), metric, by, top=top)


def curves_chart(db: Database, sweeps: Sequence[str], stage: str | None,
                 trial_ids: Sequence[int] = (), best: int = 1, metric: str = "val_acc",
                 by: Sequence[str] | None = None) -> pd.DataFrame:
    """``plot curves``: the curves of ``trial_ids`` (among the selected trials), else of the
    ``best`` trials by ``metric`` of each sweep."""
    frame = selected_trials(db, sweeps, stage)
    chosen = (select_trials(frame, trial_ids, sweeps) if trial_ids
              else best_trials(frame, metric, best, per_sweep=True))
    return curve_data(chosen, load_curves(db, chosen["trial_id"]), by)


def lambda_chart(db: Database, sweeps: Sequence[str], stage: str | None,
                 metric: str = "val_acc", param: str = "lam") -> pd.DataFrame:
    """``plot lambda``: :func:`lambda_data` of the selected trials."""
    return lambda_data(selected_trials(db, sweeps, stage), metric, param)


def optimizers_chart(db: Database, sweeps: Sequence[str], stage: str | None,
                     quantity: str = "loss", split: str = "train") -> pd.DataFrame:
    """``plot optimizers``: :func:`optimizer_data` of the selected trials and their curves."""
    frame = selected_trials(db, sweeps, stage)
    return optimizer_data(frame, load_curves(db, frame["trial_id"]), quantity, split)


def range_test_chart(db: Database, sweeps: Sequence[str], stage: str | None,
                     trial_ids: Sequence[int] = (), quantity: str = "loss",
                     mode: str | None = None, by: Sequence[str] | None = None) -> pd.DataFrame:
    """``plot range-test``: the range tests ``trial_ids`` (default: every selected trial)."""
    frame = selected_trials(db, sweeps, stage)
    if trial_ids:
        frame = select_trials(frame, trial_ids, sweeps)
    return range_test_data(frame, load_curves(db, frame["trial_id"]), quantity, mode, by)


def importance_chart(db: Database, sweeps: Sequence[str], stage: str | None,
                     metric: str = "val_acc", params: Sequence[str] | None = None
                     ) -> pd.DataFrame:
    """``plot importance``: the importance of the parameters the sweeps' stages search."""
    frame = selected_trials(db, sweeps, stage)
    stages = [st for name in dict.fromkeys(sweeps) for st in load_stages(db, name)[1]]
    return sweep_importance_data(frame, stages, metric, params)


def pareto_chart(db: Database, sweeps: Sequence[str], stage: str | None,
                 x: str = "train_seconds", y: str = "test_acc",
                 by: Sequence[str] | None = None, objectives: Sequence[Objective] | None = None,
                 pick: str = "accuracy") -> pd.DataFrame:
    """``plot pareto``: ``y`` against ``x`` with their front, or with ``objectives`` the
    front of those and the point ``pick`` chooses."""
    frame = selected_trials(db, sweeps, stage)
    if objectives is None:
        return pareto_data(frame, x, y, by)
    return objective_front_data(frame, objectives, pick, by)


def lineage_data(db: Database, sweep: str, stage: str | None = None,
                 color: str | None = None, metric: str | None = None) -> pd.DataFrame:
    """``plot lineage``: :func:`lineage_points` of the members of the sweep's pbt stage
    (``stage``, needed when it has several), their validation curves and lineage; ``metric``
    defaults to the stage's own (val_acc or val_loss)."""
    record, stages = load_stages(db, sweep)
    pbt = [s for s in stages if s.sampler == "pbt" and (stage is None or s.name == stage)]
    if not pbt:
        where = f"stage {stage!r} of sweep {sweep!r}" if stage else f"sweep {sweep!r}"
        raise ChartError(f"{where} has no pbt stage: no population to draw")
    if len(pbt) > 1:
        raise ChartError(f"sweep {sweep!r} has {len(pbt)} pbt stages "
                         f"({', '.join(s.name for s in pbt)}): choose one with --stage")
    name = pbt[0].name
    if metric is None:
        raw = next((s for s in record.spec.get("stages", []) if s.get("name") == name), {})
        metric = str(raw.get("metric", "val_acc"))
    trials = selected_trials(db, [sweep], name)
    trials = trials[trials["state"].isin(["COMPLETE", "FAILED"])]
    curves = load_curves(db, trials["trial_id"].tolist())
    return lineage_points(trials, curves, load_lineage(db, sweep, stage=name), metric, color)
