"""The data of each ``numsweep plot`` chart collected from the database (``plots.py``): the
same as selecting the trials, loading their curves and calling the family's ``*_data``."""

from __future__ import annotations

import pandas as pd
import pytest

from numsweep.analysis import charts, load_curves, load_stages, load_trials
from numsweep.analysis.plots import (
    bars_chart,
    curves_chart,
    importance_chart,
    lambda_chart,
    optimizers_chart,
    pareto_chart,
    range_test_chart,
    selected_trials,
    sweeps_text,
)
from numsweep.analysis.report import sweep_importance_data
from numsweep.analysis.selection import ChartError
from numsweep.pareto import Objective


def test_no_trials_is_an_error_naming_what_was_asked(demo_db: str) -> None:
    with pytest.raises(ChartError, match=r"^no trials in sweep 'lambda' stage 'x': nothing to "
                                         r"draw$"):
        selected_trials(demo_db, ["lambda"], "x")
    with pytest.raises(ChartError, match=r"^no trials in sweeps 'lambda', 'archs' stage 'x': "):
        selected_trials(demo_db, ["lambda", "archs", "lambda"], "x")
    assert sweeps_text(["a", "a"]) == "sweep 'a'"


def test_each_chart_gets_the_data_of_its_family(demo_db: str) -> None:
    lam = load_trials(demo_db, ["lambda"])
    pd.testing.assert_frame_equal(bars_chart(demo_db, ["lambda"], None, "val_acc", top=3),
                                  charts.bar_data(lam, "val_acc", None, top=3))
    pd.testing.assert_frame_equal(lambda_chart(demo_db, ["lambda"], "coarse"),
                                  charts.lambda_data(lam[lam["stage"] == "coarse"]
                                                     .reset_index(drop=True)))
    best = charts.best_trials(lam, "val_acc", 2, per_sweep=True)
    pd.testing.assert_frame_equal(curves_chart(demo_db, ["lambda"], None, best=2),
                                  charts.curve_data(best, load_curves(demo_db, best["trial_id"])))
    chosen = lam[lam["trial_id"].isin(lam["trial_id"].head(2))]
    pd.testing.assert_frame_equal(
        curves_chart(demo_db, ["lambda"], None, trial_ids=chosen["trial_id"].tolist()),
        charts.curve_data(chosen, load_curves(demo_db, chosen["trial_id"])))
    opt = load_trials(demo_db, ["optimizers"])
    pd.testing.assert_frame_equal(
        optimizers_chart(demo_db, ["optimizers"], None, "acc", "val"),
        charts.optimizer_data(opt, load_curves(demo_db, opt["trial_id"]), "acc", "val"))
    tests = load_trials(demo_db, ["range"])
    pd.testing.assert_frame_equal(
        range_test_chart(demo_db, ["range"], None, mode="lr"),
        charts.range_test_data(tests, load_curves(demo_db, tests["trial_id"]), "loss", "lr"))
    pd.testing.assert_frame_equal(
        importance_chart(demo_db, ["lambda"], None),
        sweep_importance_data(lam, load_stages(demo_db, "lambda")[1], "val_acc"))
    archs = load_trials(demo_db, ["archs"])
    pd.testing.assert_frame_equal(pareto_chart(demo_db, ["archs"], None),
                                  charts.pareto_data(archs))
    front = [Objective("val_acc"), Objective("param_count", "minimize")]
    pd.testing.assert_frame_equal(pareto_chart(demo_db, ["archs"], None, objectives=front,
                                               pick="knee"),
                                  charts.objective_front_data(archs, front, "knee"))
