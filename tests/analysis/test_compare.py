"""Several sweeps at once: trials and curves of a list of sweeps, configurations labelled by
sweep, curves overlaid, the comparison report."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from numsweep.analysis import charts
from numsweep.analysis.queries import find_trials, load_curves, load_trials
from numsweep.analysis.report import build_report
from numsweep.storage import StorageError
from tests.analysis.conftest import _trial, build_db


def test_trials_and_curves_of_several_sweeps(demo_db: str) -> None:
    both = load_trials(demo_db, ["archs", "lambda"])
    assert set(both["sweep"]) == {"archs", "lambda"}
    assert len(both) == len(load_trials(demo_db, "archs")) + len(load_trials(demo_db, "lambda"))
    assert len(load_trials(demo_db, ["archs", "archs"])) == 9  # a name given twice: once
    curves = load_curves(demo_db, sweep=["archs", "lambda"])
    assert set(curves["trial_id"]) <= set(both["trial_id"])
    assert set(curves["trial_id"]) & set(load_trials(demo_db, "archs")["trial_id"])
    found = find_trials(demo_db, ["archs", "lambda"], where=[("val_acc", ">", 0.55)])
    assert set(found["sweep"]) == {"archs"} and len(found) == 6
    with pytest.raises(StorageError, match="no sweep named 'nope'"):
        load_trials(demo_db, ["archs", "nope"])


def test_bars_of_several_sweeps_are_labelled_by_sweep(demo_db: str) -> None:
    trials = load_trials(demo_db, ["archs", "optimizers"])
    data = charts.bar_data(trials, "val_acc")
    assert "archs: f=4, nf=10" in set(data["config"])  # what varies within each sweep
    assert "optimizers: optimizer=sgd, dropout=0.5" in set(data["config"])
    assert data.attrs["trials"] == 17  # both sweeps' complete trials, none merged away
    # --by names the same parameters in every sweep, still prefixed by the sweep
    by = charts.bar_data(trials, "val_acc", ["lam"])
    assert set(by["config"]) == {"archs: lam=0", "optimizers: lam=0"}


def test_a_sweep_of_one_configuration_is_named_by_the_sweep_alone(demo_db: str) -> None:
    trials = load_trials(demo_db, ["archs", "optimizers"])
    one = trials[(trials["sweep"] == "archs") | (trials["trial_id"] == trials.loc[
        trials["sweep"] == "optimizers", "trial_id"].min())]
    labels = set(charts.config_labels(one))
    assert "optimizers" in labels and "archs: f=2, nf=20" in labels


def test_curves_of_several_sweeps_are_overlaid(demo_db: str) -> None:
    trials = load_trials(demo_db, ["archs", "lambda"])
    best = charts.best_trials(trials, "val_acc", 2, per_sweep=True)
    assert list(best["sweep"]) == ["lambda", "lambda", "archs", "archs"]
    data = charts.curve_data(best, load_curves(demo_db, best["trial_id"]))
    labels = list(dict.fromkeys(data["label"]))
    assert len(labels) == 4
    assert sum(label.startswith("lambda: ") for label in labels) == 2
    assert sum(label.startswith("archs: ") for label in labels) == 2
    axes = charts.draw_curve_panels(data, ("acc",))
    assert len(axes[0].get_lines()) == 8  # 4 trials x (training, validation)


@pytest.fixture(scope="module")
def twin_db(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The demo database and ``optimizers-b``: the configurations of ``optimizers`` again."""
    url = f"sqlite:///{tmp_path_factory.mktemp('twins') / 'twins.db'}"
    storage = build_db(url)
    rng = np.random.default_rng(1)
    sweep = storage.get_or_create_sweep("optimizers-b", {"name": "optimizers-b"}, seed=4)
    stage = storage.get_or_create_stage(sweep.id, 0, "grid", "grid", {})
    for n, (opt, dropout) in enumerate([("sgd", 0.0), ("sgd", 0.5), ("adam", 0.0),
                                        ("adam", 0.5)]):
        _trial(storage, sweep.id, stage.id, n, {"optimizer": opt, "dropout": dropout},
               0.40 + dropout / 10, rng)
    storage.dispose()
    return url


def test_a_configuration_in_two_sweeps_is_two_bars(twin_db: str) -> None:
    trials = load_trials(twin_db, ["optimizers", "optimizers-b"])
    data = charts.bar_data(trials, "val_acc")
    assert len(data) == 8 and data["count"].sum() == 12
    assert {c.split(": ")[0] for c in data["config"]} == {"optimizers", "optimizers-b"}


def test_lambda_and_optimizer_charts_keep_sweeps_apart(demo_db: str, twin_db: str) -> None:
    data = charts.lambda_data(load_trials(demo_db, ["lambda", "optimizers"]))
    assert set(data["stage"]) == {"lambda: coarse", "lambda: fine"}
    trials = load_trials(twin_db, ["optimizers", "optimizers-b"])
    opt = charts.optimizer_data(trials, load_curves(twin_db, trials["trial_id"]))
    assert set(opt["sweep"]) == {"optimizers", "optimizers-b"}
    assert set(opt.loc[opt["sweep"] == "optimizers-b", "n"]) == {1}  # not pooled with the other
    ax = charts.draw_optimizers(opt)
    names = [t.get_text() for t in ax.get_legend().get_texts()]
    assert len(names) == 8
    assert "optimizers-b: adam, dropout=0.5" in names
    assert "optimizers: adam, dropout=0.5 (mean of 2)" in names


@pytest.fixture(scope="module")
def comparison(demo_db: str, tmp_path_factory: pytest.TempPathFactory):
    return build_report(demo_db, ["lambda", "archs"], tmp_path_factory.mktemp("compare"))


def test_comparison_report_shows_bests_side_by_side(comparison) -> None:
    text = comparison.markdown.read_text()
    assert text.startswith("# Sweeps lambda, archs compared")
    section = text.split("## Best trial of each sweep")[1].split("\n## ")[0]
    lines = [line for line in section.splitlines() if line.startswith("|")]
    assert lines[0] == "|   | lambda | archs |"
    rows = {line.split(" | ")[0].lstrip("| "): line for line in lines[2:]}
    # only the parameters that differ between the two bests
    assert {"model", "lam", "f", "nf", "nh", "hidden"} <= set(rows)
    for same in ("batch_size", "eta_max", "n_train", "optimizer", "cycles"):
        assert same not in rows
    assert rows["trial id"] == "| trial id | 7 | 13 |"
    assert "| validation accuracy (%) | 45.08 | 61.00 |" in section
    assert "## Settings that differ between the sweeps" in text
    assert "Best trials of sweep lambda" in text and "Best trials of sweep archs" in text
    files = {c.file for c in comparison.charts}
    assert {"bars-val_acc.png", "curves.png", "pareto.png"} <= files
    page = comparison.html.read_text()
    assert "<h1>Sweeps lambda, archs compared</h1>" in page


def test_one_name_in_a_list_is_the_sweep_report(demo_db: str, tmp_path: Path) -> None:
    written = build_report(demo_db, ["archs"], tmp_path)
    assert written.markdown.read_text().startswith("# Sweep archs")
