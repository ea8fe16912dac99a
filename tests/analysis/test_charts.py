"""Every chart from the generated database: what it draws, its labels and scales, its files."""

from __future__ import annotations

from itertools import pairwise
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from matplotlib.container import BarContainer

from numsweep.analysis import (
    ChartError,
    bar_data,
    curve_data,
    draw_bars,
    draw_curve_panels,
    draw_curves,
    draw_importance,
    draw_lambda,
    draw_optimizers,
    draw_pareto,
    draw_range_test,
    filters,
    importance_data,
    lambda_data,
    load_curves,
    load_trials,
    optimizer_data,
    pareto_data,
    range_test_data,
    save,
)
from numsweep.analysis.formatting import format_cell, metric_label
from numsweep.analysis.selection import config_labels, parameter_columns


@pytest.fixture(autouse=True)
def _close_figures() -> None:
    yield
    plt.close("all")


def _bars(ax: plt.Axes) -> BarContainer:
    return next(c for c in ax.containers if isinstance(c, BarContainer))


def _legend(ax: plt.Axes) -> list[str]:
    legend = ax.get_legend()
    return [t.get_text() for t in legend.get_texts()] if legend else []


def test_bars_group_seeds_and_mark_a_lead_within_noise(demo_db: str) -> None:
    trials = load_trials(demo_db, "archs")
    data = bar_data(trials, "test_acc")
    # f and nf are numbers: the bars follow them, not the values
    assert list(data["config"]) == ["f=2, nf=20", "f=4, nf=10", "f=8, nf=10"]
    assert data.attrs["order"] == "parameter"
    assert list(data["count"]) == [3, 3, 3]
    assert data["mean"].iloc[1] == pytest.approx(59.0) and data["std"].iloc[1] == \
        pytest.approx(1.0)
    # 59 vs 58 with std 1 each: within noise; 49 is not
    assert list(data["within_noise"]) == [True, False, False]
    assert list(data["best"]) == [False, True, False]
    ax = draw_bars(data, "test_acc")
    bars = _bars(ax)
    assert len(bars) == 3
    assert [t.get_text() for t in ax.get_xticklabels()] == list(data["config"])
    assert ax.get_ylabel() == "test accuracy (%)"
    assert [b.get_hatch() for b in bars] == ["//", None, None]
    assert any("within noise" in t for t in _legend(ax))
    assert any("within the seed noise" in t.get_text() for t in ax.texts)
    assert any("±1 std" in t for t in _legend(ax))


def test_bars_time_is_lower_is_better_and_top_limits(demo_db: str) -> None:
    trials = load_trials(demo_db, "archs")
    data = bar_data(trials, "train_seconds", top=2)
    assert len(data) == 2 and data.attrs["configs"] == 3
    assert list(data["config"]) == ["f=4, nf=10", "f=8, nf=10"]  # the fastest two, by f
    assert data.loc[data["best"], "config"].item() == "f=8, nf=10"
    ax = draw_bars(data, "train_seconds")
    assert ax.get_ylabel() == "training time (s)" and "2 of 3" in ax.get_title()
    assert "best (lowest)" in _legend(ax)
    by_f = bar_data(trials, "test_acc", by=["f"])
    assert list(by_f["config"]) == ["f=2", "f=4", "f=8"]


def _grouped_trials() -> pd.DataFrame:
    """Eight lam values: trials 1-4 one fused group, 5-7 another, 8 alone; the shares of a
    group differ only in the last digits (the noise the charts must not rank)."""
    frame = pd.DataFrame({
        "trial_id": pd.array(range(1, 9), dtype="Int64"), "stage": "coarse",
        "state": "COMPLETE", "lam": [10.0 ** -k for k in range(1, 9)],
        "train_seconds": [21.27, 21.31, 21.45, 21.30, 30.0, 30.02, 30.01, 12.0],
        "test_acc": [0.40, 0.45, 0.50, 0.42, 0.30, 0.52, 0.31, 0.20],
        "group_id": pd.array([1, 1, 1, 1, 5, 5, 5, None], dtype="Int64"),
        "group_size": pd.array([4, 4, 4, 4, 3, 3, 3, None], dtype="Int64")})
    frame.attrs.update(params=["lam"], metrics=["train_seconds", "test_acc"])
    return frame


def test_a_time_chart_takes_the_trials_of_one_group_as_one_measurement() -> None:
    data = bar_data(_grouped_trials(), "train_seconds")
    assert list(data["count"]) == [1, 1, 1]  # two groups and a lone trial: three bars
    assert list(data["shared_by"]) == [1, 4, 3]  # fastest first
    assert data["config"].iloc[2].endswith("(3 configurations) (shared by a group of 3)")
    assert data["mean"].iloc[1] == pytest.approx(np.mean([21.27, 21.31, 21.45, 21.30]))
    ax = draw_bars(data, "train_seconds")
    assert "shared evenly" in ax.get_title()
    # one group alone: one measurement, so no "best" among its equal shares
    one = bar_data(_grouped_trials().iloc[:4], "train_seconds")
    assert len(one) == 1 and not one["best"].any()
    # accuracy stays one bar per configuration
    assert len(bar_data(_grouped_trials(), "test_acc")) == 8


def test_the_pareto_front_has_one_point_per_group_time() -> None:
    data = pareto_data(_grouped_trials())
    front = data[data["on_front"]]
    # the lone fast trial, then the best of group 1 (21.33 s, 50%), then of group 5 (52%)
    assert list(front["trial_id"]) == [8, 3, 6]
    shares = data[data["trial_id"].isin([1, 2, 3, 4])]["train_seconds"]
    assert shares.nunique() == 1
    assert front["label"].iloc[1].endswith("(group of 4)")
    ax = draw_pareto(data)
    assert "share its time evenly" in ax.get_xlabel()


def test_labels_read_like_the_course() -> None:
    frame = pd.DataFrame({"f": [4], "nf": [10], "nh": [50], "lam": [0.00123], "number": [0]})
    assert config_labels(frame, ["f", "nf", "nh"]).iloc[0] == "f=4, nf=10, nh=50"
    assert config_labels(frame, ["lam"]).iloc[0] == "lam=0.00123"


def test_engine_results_are_metrics_with_readable_labels() -> None:
    frame = pd.DataFrame({"lam": [0.01], "epochs": [2.0], "best_lr": [0.1], "steepest_lr": [0.01],
                          "best_batch": [256.0], "steepest_batch": [64.0]})
    assert parameter_columns(frame) == ["lam"]  # results are never taken for parameters
    assert metric_label("epochs") == "epochs"
    assert metric_label("best_lr") == "learning rate at the lowest loss"
    assert metric_label("steepest_batch") == "batch size of steepest descent"


def test_labels_name_the_stage_for_what_each_stage_fixes() -> None:
    frame = pd.DataFrame({"stage": ["lr", "bs", "bs"], "batch_size": [64, 64, 512],
                          "schedule": ["exp_range", "constant", "constant"],
                          "n_updates": [float("nan"), 1000.0, 1000.0], "number": [0, 1, 2]})
    frame.attrs.update(params=["batch_size", "schedule", "n_updates"])
    assert list(config_labels(frame)) == ["lr: batch_size=64", "bs: batch_size=64",
                                          "bs: batch_size=512"]
    assert list(config_labels(frame.iloc[1:])) == ["batch_size=64", "batch_size=512"]
    assert config_labels(frame, ["n_updates"]).iloc[0] == "n_updates=none"
    assert config_labels(frame.assign(g=0.99983), ["g"]).iloc[0] == "g=0.9998"


def test_table_cells_show_counts_in_full() -> None:
    assert format_cell(11200.0) == "11200"  # updates are stored as floats
    assert format_cell(0.56789) == "0.5679"
    assert format_cell(3.2e-4) == "0.00032"
    assert format_cell(float("nan")) == "" and format_cell(None) == ""
    assert format_cell([4, 8]) == "[4,8]"


def test_errors_unknown_metric_and_empty_selection(demo_db: str) -> None:
    trials = load_trials(demo_db, "archs")
    with pytest.raises(ChartError, match=r"unknown metric 'nope'.*val_acc"):
        bar_data(trials, "nope")
    with pytest.raises(ChartError, match="unknown metric 'lam'"):
        bar_data(trials, "lam")  # a parameter, not a result
    with pytest.raises(ChartError, match="no trials selected"):
        bar_data(trials.iloc[0:0], "val_acc")
    with pytest.raises(ChartError, match="unknown parameter 'bogus'"):
        bar_data(trials, "val_acc", by=["bogus"])
    only_failed = load_trials(demo_db, "lambda", state="failed")
    with pytest.raises(ChartError, match="no complete trials"):
        bar_data(only_failed, "val_acc")


def test_curves_overlay_trials_with_train_and_val_and_the_schedule(demo_db: str) -> None:
    trials = load_trials(demo_db, "optimizers")
    chosen = trials[trials["dropout"] == 0].drop_duplicates("optimizer")
    data = curve_data(chosen, load_curves(demo_db, chosen["trial_id"]))
    assert set(data["label"]) == {"optimizer=sgd", "optimizer=adam"}
    assert data["acc"].max() > 1  # percent
    axes = draw_curve_panels(data)
    assert len(axes) == 4
    loss, cost, acc, lr = axes
    assert len(loss.get_lines()) == 4  # 2 trials x (training, validation)
    assert {line.get_linestyle() for line in loss.get_lines()} == {"-", "--"}
    legend = loss.figure.legends[0]  # one legend below the panels serves all
    assert {"optimizer=sgd", "optimizer=adam", "training", "validation"} <= {
        t.get_text() for t in legend.get_texts()}
    assert _legend(loss) == []
    assert loss.get_xlabel() == "update step" and "cross-entropy" in loss.get_ylabel()
    assert _legend(cost) == _legend(acc) == []  # the first panel's legend serves all
    assert "lam" in cost.get_ylabel() and acc.get_ylabel() == "accuracy (%)"
    # both trials share the schedule: one line says so instead of two on top of each other
    assert len(lr.get_lines()) == 1 and lr.get_title() == "learning-rate schedule"
    assert _legend(lr) == ["every trial (2)"]
    assert max(lr.get_lines()[0].get_ydata()) == pytest.approx(0.1)
    assert lr.get_lines()[0].get_drawstyle() == "default"  # cyclic: straight between points
    stepped = curve_data(chosen.assign(schedule="step"), load_curves(demo_db, chosen["trial_id"]))
    assert draw_curves(stepped, "lr").get_lines()[0].get_drawstyle() == "steps-post"
    one = curve_data(chosen.iloc[:1], load_curves(demo_db, chosen["trial_id"]))
    # the database id, the one `--trial` and `trial rerun` take, not the number in the sweep
    assert set(one["label"]) == {f"trial {chosen['trial_id'].iloc[0]}"}
    assert chosen["trial_id"].iloc[0] != chosen["number"].iloc[0]
    with pytest.raises(ChartError, match="unknown curve quantity"):
        draw_curves(data, "bogus")


def test_lambda_on_a_log_axis_with_stages_and_the_choice(demo_db: str) -> None:
    data = lambda_data(load_trials(demo_db, "lambda"))
    assert len(data) == 8  # the failed and the running trial are left out
    assert data.loc[data["chosen"], "lam"].item() == pytest.approx(4e-3)
    ax = draw_lambda(data)
    assert ax.get_xscale() == "log" and ax.get_xlabel() == "lam (log scale)"
    assert ax.get_ylabel() == "validation accuracy (%)"
    lines = ax.get_lines()
    coarse, fine, star = lines[0], lines[1], lines[2]
    assert coarse.get_marker() != fine.get_marker() and star.get_marker() == "*"
    assert len(coarse.get_xdata()) == 5 and len(fine.get_xdata()) == 3
    assert _legend(ax) == ["coarse (5 trials)", "fine (3 trials)", "chosen lam=0.004"]
    with pytest.raises(ChartError, match="unknown parameter 'mu'"):
        lambda_data(load_trials(demo_db, "lambda"), param="mu")


def test_optimizers_per_epoch_with_and_without_dropout(demo_db: str) -> None:
    trials = load_trials(demo_db, "optimizers")
    data = optimizer_data(trials, load_curves(demo_db, trials["trial_id"]))
    assert data["epoch"].max() == pytest.approx(200 * 100 / 5000)
    assert set(data["n"]) == {2}
    ax = draw_optimizers(data)
    lines = ax.get_lines()
    assert len(lines) == 4
    assert sorted(_legend(ax)) == ["adam, dropout=0 (mean of 2)", "adam, dropout=0.5 (mean of 2)",
                                   "sgd, dropout=0 (mean of 2)", "sgd, dropout=0.5 (mean of 2)"]
    styles = {label: line.get_linestyle() for label, line in zip(_legend(ax), lines,
                                                                  strict=True)}
    assert styles["sgd, dropout=0 (mean of 2)"] == "-"
    assert styles["sgd, dropout=0.5 (mean of 2)"] == "--"
    assert ax.get_xlabel() == "epoch" and "training loss" in ax.get_ylabel()
    # ten lines' legend inside the plot covered the curves: it sits right of the axes
    ax.figure.canvas.draw()
    assert ax.get_legend().get_window_extent().x0 >= ax.get_window_extent().x1
    with_input = trials.assign(dropout_input=trials["dropout"].map({0.0: 0.0, 0.5: 0.2}))
    ax = draw_optimizers(optimizer_data(with_input, load_curves(demo_db, trials["trial_id"])))
    assert "sgd, dropout=0.5, dropout_input=0.2 (mean of 2)" in _legend(ax)
    assert "sgd, dropout=0 (mean of 2)" in _legend(ax)
    assert ax.get_title().endswith("per epoch with and without dropout")
    # fc-wide-augmented's shape: every run with dropout, so nothing is "without"
    all_dropout = trials[trials["dropout"] > 0]
    ax = draw_optimizers(optimizer_data(all_dropout, load_curves(demo_db, trials["trial_id"])))
    assert ax.get_title() == "optimizers: training loss per epoch"
    with pytest.raises(ChartError, match="lack the parameter 'optimizer'"):
        optimizer_data(trials.drop(columns="optimizer"), load_curves(demo_db, []))


def test_range_tests_against_lr_and_batch_size_on_log_axes(demo_db: str) -> None:
    trials = load_trials(demo_db, "range")
    curves = load_curves(demo_db, trials["trial_id"])
    with pytest.raises(ChartError, match="both lr and batch"):
        range_test_data(trials, curves)
    lr_tests = trials[trials["number"] < 2]
    data = range_test_data(lr_tests, curves)
    assert data.attrs["mode"] == "lr" and set(data["label"]) == {"batch_size=50",
                                                                 "batch_size=200"}
    assert data.attrs["marks"]["batch_size=50"] == {"best": 0.05, "steepest": 0.005}
    ax = draw_range_test(data)
    assert ax.get_xscale() == "log" and ax.get_xlabel() == "learning rate (log scale)"
    smoothed = [line for line in ax.get_lines() if line.get_label().endswith("(smoothed)")]
    assert len(smoothed) == 2
    assert ax.get_ylim()[1] < data["value"].max()  # the blow-up is cut off
    assert {"lowest smoothed loss", "steepest descent"} <= set(_legend(ax))
    batch = draw_range_test(range_test_data(trials, curves, mode="batch"))
    assert batch.get_xscale() == "log" and batch.get_xlabel() == "batch size (log scale)"
    with pytest.raises(ChartError, match="no range-test curves"):
        range_test_data(load_trials(demo_db, "archs"), load_curves(demo_db, []))


def test_importance_from_a_rebuilt_optuna_study(demo_db: str) -> None:
    trials = load_trials(demo_db, "optimizers")
    data = importance_data(trials, "val_acc")
    assert set(data["param"]) == {"optimizer", "dropout"}
    assert data["importance"].sum() == pytest.approx(1.0)
    assert data["param"].iloc[0] == "dropout"  # val_acc depends on dropout only
    assert data["importance"].iloc[0] > 0.9 and data.attrs["method"] == "fANOVA"
    ax = draw_importance(data)
    assert len(_bars(ax)) == 2
    assert [t.get_text() for t in ax.get_yticklabels()] == list(data["param"])
    assert "importance" in ax.get_xlabel()
    with pytest.raises(ChartError, match="at least 2 complete trials"):
        importance_data(trials.iloc[:1], "val_acc")


def test_importance_scores_a_tied_space_entry_once(demo_db: str) -> None:
    # optimizers' "optimizer,eta_max": each optimizer has its own rate, and fANOVA split
    # their joint share between the two at random
    trials = load_trials(demo_db, "optimizers")
    trials = trials.assign(eta_max=trials["optimizer"].map({"sgd": 0.01, "adam": 0.001}))
    apart = importance_data(trials, "val_acc")
    assert set(apart["param"]) == {"optimizer", "eta_max", "dropout"}
    data = importance_data(trials, "val_acc", tied=[["optimizer", "eta_max"], ["f", "nf"]])
    assert set(data["param"]) == {"optimizer,eta_max", "dropout"}
    assert data["importance"].sum() == pytest.approx(1.0)
    assert data["param"].iloc[0] == "dropout"
    assert [t.get_text() for t in draw_importance(data).get_yticklabels()] == \
        list(data["param"])


def test_importance_samples_large_studies(demo_db: str,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("numsweep.analysis.importance.IMPORTANCE_TRIALS", 6)
    data = importance_data(load_trials(demo_db, "optimizers"), "val_acc")
    assert (data.attrs["trials"], data.attrs["of"]) == (6, 8)
    assert "a random 6 of 8 trials" in draw_importance(data).get_title()


def test_pareto_front() -> None:
    frame = pd.DataFrame({
        "trial_id": [1, 2, 3, 4], "number": [0, 1, 2, 3], "seed": [0] * 4,
        "state": ["COMPLETE"] * 4,
        "f": [2, 4, 8, 16], "train_seconds": [10.0, 5.0, 6.0, 1.0],
        "test_acc": [0.6, 0.55, 0.5, 0.3]})
    frame.attrs.update(params=["f"], metrics=["train_seconds", "test_acc"])
    data = pareto_data(frame)
    front = set(data.loc[data["on_front"], "label"])
    assert front == {"f=2", "f=4", "f=16"}  # f=8 is slower and worse than f=4
    ax = draw_pareto(data)
    assert ax.get_xlabel() == "training time (s)" and ax.get_xscale() == "linear"
    assert ax.get_ylabel() == "test accuracy (%)"
    assert _legend(ax) == ["trials (4)", "Pareto front (3)"]
    assert len(ax.get_lines()[0].get_xdata()) == 3


@pytest.mark.parametrize(("suffix", "magic"), [("png", b"\x89PNG"), ("svg", b"<?xml"),
                                               ("pdf", b"%PDF")])
def test_save_by_extension(demo_db: str, tmp_path: Path, suffix: str, magic: bytes) -> None:
    data = pareto_data(load_trials(demo_db, "archs"))
    path = save(draw_pareto(data), tmp_path / "sub" / f"chart.{suffix.upper()}")
    assert path.read_bytes().startswith(magic)


def test_save_rejects_other_formats(demo_db: str, tmp_path: Path) -> None:
    with pytest.raises(ChartError, match="unsupported chart format"):
        save(draw_pareto(pareto_data(load_trials(demo_db, "archs"))), tmp_path / "c.gif")


def _trials(rows: list[dict], sweep: str = "lambda-search") -> pd.DataFrame:
    """A frame shaped like ``load_trials``' for the rows' parameters and results."""
    frame = pd.DataFrame([{"trial_id": i + 1, "sweep": sweep, "number": i, "state": "COMPLETE",
                           "seed": i, **row} for i, row in enumerate(rows)])
    metrics = [c for c in ("val_acc", "test_acc", "train_seconds") if c in frame]
    frame.attrs.update(params=[c for c in frame if c not in
                               {"trial_id", "sweep", "number", "state", "seed", "stage",
                                *metrics}], metrics=metrics)
    return frame


LAMS = [1e-5, 1.4e-4, 5.2e-4, 1.9e-3, 7e-3, 2.7e-2, 1e-1]
VALS = [0.370, 0.375, 0.386, 0.371, 0.384, 0.384, 0.376]


def _lambda_trials() -> pd.DataFrame:
    """A coarse grid, one fine trial, and the final retraining: the best test accuracy
    (lam=1e-5) is not the one validation chooses (lam=5.2e-4)."""
    rows = [{"stage": "coarse", "lam": lam, "cycles": 1, "val_acc": v,
             "test_acc": 0.38 if lam == 1e-5 else v - 0.01, "train_seconds": 0.12}
            for lam, v in zip(LAMS, VALS, strict=True)]
    rows.append({"stage": "fine", "lam": 3.1e-4, "cycles": 1, "val_acc": 0.372,
                 "test_acc": 0.366, "train_seconds": 0.12})
    rows.append({"stage": "final", "lam": 5.2e-4, "cycles": 3, "val_acc": 0.379,
                 "test_acc": 0.375, "train_seconds": 0.46})
    return _trials(rows)


def test_bars_of_one_numeric_parameter_follow_its_order() -> None:
    data = bar_data(_lambda_trials(), "val_acc")
    ax = draw_bars(data, "val_acc")
    ticks = [t.get_text() for t in ax.get_xticklabels()]
    assert ticks[:3] == ["coarse: lam=1e-05", "coarse: lam=0.00014", "fine: lam=0.00031"]
    lams = [float(t.split("=")[1]) for t in ticks]
    assert lams == sorted(lams)  # 1e-5, 1.4e-4, 3.1e-4, 5.2e-4 (coarse, final), 1.9e-3, ...
    assert ticks[3:5] == ["coarse: lam=0.00052", "final: lam=0.00052"]
    assert "by lam" in ax.get_xlabel()
    # equal lam: in the trials' order, whichever has the better test accuracy
    trials = _lambda_trials()
    trials.loc[trials["stage"] == "final", "test_acc"] = 0.379
    tests = list(bar_data(trials, "test_acc")["config"])
    assert tests[3:5] == ["coarse: lam=0.00052", "final: lam=0.00052"]
    # text parameters: the best first
    words = _trials([{"optimizer": o, "val_acc": v} for o, v in
                     (("sgd", 0.40), ("adam", 0.45), ("rmsprop", 0.42))])
    assert list(bar_data(words, "val_acc")["config"]) == [
        "optimizer=adam", "optimizer=rmsprop", "optimizer=sgd"]


def test_bar_values_axis_shows_a_one_point_gap() -> None:
    data = bar_data(_lambda_trials(), "val_acc")
    ax = draw_bars(data, "val_acc")
    bottom, top = ax.get_ylim()
    assert 30 < bottom < 37 and top > 38.6
    # lam=1e-5 (37.0) against lam=5.2e-4 (38.6): more than a tenth of the axis apart
    assert (38.6 - 37.0) / (top - bottom) > 0.25
    # times spread from 0.12 to 0.46 s: from 0
    assert draw_bars(bar_data(_lambda_trials(), "train_seconds"),
                     "train_seconds").get_ylim()[0] == 0


def test_test_accuracy_marks_the_trial_chosen_by_validation() -> None:
    trials = _lambda_trials()
    data = bar_data(trials, "test_acc")
    assert data.loc[data["best"], "config"].item() == "coarse: lam=0.00052"  # best val_acc
    assert data["mean"].max() == pytest.approx(38.0)  # lam=1e-5 has the best test accuracy
    ax = draw_bars(data, "test_acc")
    assert _legend(ax)[0] == "chosen by\nvalidation accuracy"
    assert [b.get_facecolor() for b in _bars(ax)][data.index[data["best"]][0]] == \
        pytest.approx((0.12156862745098039, 0.4666666666666667, 0.7058823529411765, 1.0))
    # kept among the top 3 by test accuracy although it is not one of them
    top = bar_data(trials, "test_acc", top=3)
    assert len(top) == 3 and top["best"].sum() == 1
    assert top.loc[top["best"], "config"].item() == "coarse: lam=0.00052"
    # the lambda chart of the test accuracy stars the same trial
    lam = lambda_data(trials, "test_acc")
    assert lam.loc[lam["chosen"], "lam"].item() == pytest.approx(5.2e-4)
    assert lam.loc[lam["chosen"], "stage"].item() == "coarse"
    assert "chosen by validation accuracy: lam=0.00052" in _legend(draw_lambda(lam))
    # without validation accuracies nothing is chosen on the test set
    untested = bar_data(trials.drop(columns="val_acc"), "test_acc")
    assert not untested["best"].any()


def test_equal_time_shares_mark_no_fastest() -> None:
    """Fused trials share their training time evenly: none of them is the fastest."""
    trials = _lambda_trials()
    data = bar_data(trials, "train_seconds")
    assert not data["best"].any() and data.attrs["tied"] == 8
    ax = draw_bars(data, "train_seconds")
    assert "best (lowest)" not in _legend(ax)
    assert any("8 configurations share the lowest" in t.get_text() for t in ax.texts)
    one_faster = trials.assign(train_seconds=[0.1] + [0.12] * 7 + [0.46])
    assert bar_data(one_faster, "train_seconds")["best"].sum() == 1
    # every share the same, even 0 s: drawn, none marked
    zero = bar_data(trials.assign(train_seconds=0.0), "train_seconds")
    ax = draw_bars(zero, "train_seconds")
    assert not zero["best"].any() and ax.get_ylim()[1] > 0 and ax.get_legend() is None


def test_lambda_star_leaves_the_chosen_marker_visible_and_its_text_off_the_legend() -> None:
    """The notebook's layout: the lambda chart beside the bars; the final retraining is the
    chosen trial, at the largest lam."""
    rows = [{"stage": "coarse", "lam": lam, "val_acc": v} for lam, v in
            ((1e-5, 0.49), (1e-4, 0.52), (1e-3, 0.54), (1e-2, 0.53), (1e-1, 0.57))]
    rows += [{"stage": "fine", "lam": 4e-4, "val_acc": 0.49},
             {"stage": "fine", "lam": 0.08, "val_acc": 0.59},
             {"stage": "final", "lam": 0.08, "val_acc": 0.80}]
    data = lambda_data(_trials(rows, "lambda-notebook"))
    assert data.loc[data["chosen"], "stage"].item() == "final"
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5), layout="constrained")
    draw_lambda(data, ax=left)
    draw_bars(bar_data(_trials(rows, "lambda-notebook"), "val_acc"), "val_acc", ax=right)
    star = next(line for line in left.get_lines() if line.get_marker() == "*")
    final = next(line for line in left.get_lines() if line.get_label().startswith("final"))
    assert star.get_zorder() < final.get_zorder()  # the final square drawn over the star
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    note = next(t for t in left.texts if "lam=0.08" in t.get_text())
    box, inside = note.get_window_extent(renderer), left.get_window_extent(renderer)
    assert inside.x0 <= box.x0 and box.x1 <= inside.x1  # not over the legend beside the axes
    assert not box.overlaps(left.get_legend().get_window_extent(renderer))
    assert left.get_legend().get_texts()[0].get_fontsize() >= 10


def test_curves_of_one_trial_per_stage_name_what_differs(demo_db: str) -> None:
    trials = load_trials(demo_db, "lambda")
    done = trials[trials["state"] == "COMPLETE"]
    best = done.sort_values("val_acc", ascending=False).drop_duplicates("stage")
    data = curve_data(best, load_curves(demo_db, best["trial_id"]))
    labels = list(dict.fromkeys(data["label"]))
    assert labels == ["fine: lam=0.004", "coarse: lam=0.01"]
    axes = draw_curve_panels(data)
    names = [t.get_text() for t in axes[0].figure.legends[0].get_texts()]
    assert "fine: lam=0.004" in names and "coarse: lam=0.01" in names


def test_legends_are_readable_in_the_report(demo_db: str) -> None:
    trials = load_trials(demo_db, "archs")
    bars = draw_bars(bar_data(trials, "test_acc"), "test_acc")
    lam = draw_lambda(lambda_data(load_trials(demo_db, "lambda")))
    pareto = draw_pareto(pareto_data(trials))
    chosen = trials.drop_duplicates("f")
    panels = draw_curve_panels(curve_data(chosen, load_curves(demo_db, chosen["trial_id"])))
    one = draw_curves(curve_data(chosen, load_curves(demo_db, chosen["trial_id"])), "loss")
    for legend in (bars.get_legend(), lam.get_legend(), pareto.get_legend(),
                   panels[0].figure.legends[0], one.get_legend()):
        assert min(t.get_fontsize() for t in legend.get_texts()) >= 10
    assert pareto.texts and min(t.get_fontsize() for t in pareto.texts) >= 9  # the point names


def test_fifteen_bars_have_labels_that_do_not_overlap() -> None:
    rows = [{"stage": "coarse" if k % 2 else "fine", "lam": 10 ** (-5 + k / 4),
             "val_acc": 0.37 + 0.001 * ((k * 7) % 15)} for k in range(15)]
    data = bar_data(_trials(rows), "val_acc")
    ax = draw_bars(data, "val_acc")
    ax.figure.canvas.draw()
    renderer = ax.figure.canvas.get_renderer()
    ticks = next(labels for labels in (ax.get_xticklabels(), ax.get_yticklabels())
                 if [t.get_text() for t in labels] == list(data["config"]))
    boxes = [t.get_window_extent(renderer) for t in ticks]
    assert not any(a.overlaps(b) for i, a in enumerate(boxes) for b in boxes[i + 1:])
    assert min(t.get_fontsize() for t in ticks) >= 9


def test_every_chart_names_its_sweep(demo_db: str) -> None:
    archs = load_trials(demo_db, "archs")
    assert draw_bars(bar_data(archs, "val_acc"), "val_acc").get_title().startswith("archs: ")
    assert draw_lambda(lambda_data(load_trials(demo_db, "lambda"))).get_title().startswith(
        "lambda: ")
    assert draw_pareto(pareto_data(archs)).get_title().startswith("archs: ")
    chosen = archs.drop_duplicates("f")
    data = curve_data(chosen, load_curves(demo_db, chosen["trial_id"]))
    assert draw_curves(data, "acc").get_title().startswith("archs: ")
    panels = draw_curve_panels(data)
    assert "archs" in panels[0].figure.get_suptitle()
    assert not panels[0].get_title().startswith("archs")  # named once, above the panels
    optimizers = load_trials(demo_db, "optimizers")
    curves = load_curves(demo_db, optimizers["trial_id"])
    assert draw_optimizers(optimizer_data(optimizers, curves)).get_title().startswith(
        "optimizers: ")
    assert draw_importance(importance_data(optimizers, "val_acc")).get_title().startswith(
        "optimizers: ")
    ranges = load_trials(demo_db, "range")
    assert draw_range_test(range_test_data(ranges, load_curves(demo_db, ranges["trial_id"]),
                                           mode="lr")).get_title().startswith("range: ")


def test_filter_titles_give_the_shapes_trial_weights_prints() -> None:
    rng = np.random.default_rng(0)
    mlp = {"W1": rng.normal(size=(3072, 50)), "b1": np.zeros(50)}
    (title, images), = filters.filter_data({"model": "mlp"}, mlp)
    assert title == "W1 3072x50: 50 rows as 32x32x3 images" and images.shape == (50, 32, 32, 3)
    conv = {"F": rng.normal(size=(768, 160)), "bF": np.zeros(160)}
    (title, images), = filters.filter_data({"model": "convnet"}, conv)
    assert title == "F 768x160: the first 100 of 160 filters 16x16x3"
    assert images.shape == (100, 16, 16, 3)
    assert filters.filter_title("mlp", trial_id=15, sweep="lambda-search") == \
        "sweep lambda-search, trial 15: mlp"
    assert filters.filter_title("mlp", source="model.npz") == "model.npz: mlp"
    axes = filters.draw_filters(filters.filter_data({"model": "mlp"}, mlp),
                                filters.filter_title("mlp", trial_id=15, sweep="lambda-search"))
    assert axes[0].figure.get_suptitle() == "sweep lambda-search, trial 15: mlp"
    assert axes[0].get_title(loc="left") == "W1 3072x50: 50 rows as 32x32x3 images"


def test_one_trial_per_stage_is_named_by_what_differs() -> None:
    """label-smoothing's two stages of one trial each: the bars say eps, not only the stage."""
    trials = _trials([{"stage": "plain", "eps": 0.0, "data_seed": 11, "val_acc": 0.442},
                      {"stage": "smoothed", "eps": 0.1, "data_seed": 12, "val_acc": 0.424}],
                     "label-smoothing")
    assert list(config_labels(trials)) == ["plain: eps=0", "smoothed: eps=0.1"]
    assert list(bar_data(trials, "val_acc")["config"]) == ["plain: eps=0", "smoothed: eps=0.1"]


def test_pareto_names_stay_off_the_front_line() -> None:
    """lambda-search's front: a long flat step into the last point, near the top right."""
    rows = [{"stage": "fine", "lam": 0.0165, "test_acc": 0.3796, "train_seconds": 0.097},
            {"stage": "coarse", "lam": 1e-5, "test_acc": 0.3799, "train_seconds": 0.116},
            {"stage": "final", "lam": 5.2e-4, "test_acc": 0.3804, "train_seconds": 0.464}]
    rows += [{"stage": "coarse", "lam": 10 ** -k, "test_acc": 0.368 + 0.001 * k,
              "train_seconds": 0.116} for k in range(2, 5)]
    data = pareto_data(_trials(rows))
    ax = draw_pareto(data)
    ax.figure.canvas.draw()
    renderer = ax.figure.canvas.get_renderer()
    front = data[data["on_front"]]
    pts = ax.transData.transform(front[["train_seconds", "test_acc"]].to_numpy())
    names = [t for t in ax.texts if t.get_text() in set(front["label"])]
    assert len(names) == 3
    for text in names:
        box = text.get_window_extent(renderer)
        for (x0, y0), (x1, _) in pairwise(pts):
            crosses = box.x0 < max(x0, x1) and box.x1 > min(x0, x1) and box.y0 < y0 < box.y1
            assert not crosses, text.get_text()


def test_a_saved_chart_keeps_labels_longer_than_its_figure(tmp_path: Path) -> None:
    """Two bars with long labels and a two-line title in a narrow figure: the layout cannot
    fit them, and the saved file still holds all of them (nothing cut at its edges)."""
    from matplotlib.image import imread

    from numsweep.analysis.figures import new_axes, save

    ax = new_axes(4.0, 3.0)
    ax.bar([0, 1], [3.87, 3.97])
    ax.set_xticks([0, 1], ["lam=1e-05, ... (4 configurations) (shared by a group of 4)"] * 2,
                  rotation=35, ha="right")
    ax.set_title("lambda-coarse: training time (s) per configuration\n(a fused group's time "
                 "is shared evenly by its trials: one measurement)")
    fig = ax.figure
    needed = fig.get_tightbbox(fig.canvas.get_renderer())  # inches, every artist
    height, width = imread(save(ax, tmp_path / "long.png")).shape[:2]
    assert width >= 0.98 * needed.width * 150 and height >= 0.98 * needed.height * 150
