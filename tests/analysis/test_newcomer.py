"""What tripped a newcomer in the analysis package, each guarded."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

from numsweep.analysis import curve_data, draw_curve_panels, load_curves, load_trials
from numsweep.analysis.report import build_report
from numsweep.storage import Storage
from tests.analysis.conftest import _trial


@pytest.fixture(autouse=True)
def _close_figures() -> None:
    yield
    plt.close("all")


@pytest.fixture()
def train_db(tmp_path: Path) -> str:
    """Trials as `numsweep train` stores them: a sweep "train", no stages."""
    path = tmp_path / "train.db"
    storage = Storage(str(path))  # a plain path: sqlite:///train.db
    sweep = storage.get_or_create_sweep("train", {"name": "train", "single": True}, 0)
    rng = np.random.default_rng(0)
    for n, lam in enumerate((0.001, 0.01, 0.1)):
        _trial(storage, sweep.id, None, n, {"lam": lam}, 0.4 + lam, rng)
    _trial(storage, sweep.id, None, 3, {"model": "convnet", "f": 8, "nf": 12, "nh": 40,
                                                "n_s": None}, 0.3,
           rng)
    storage.dispose()
    return str(path)


def test_report_of_trials_without_a_stage(train_db: str, tmp_path: Path) -> None:
    report = build_report(train_db, "train", tmp_path / "report")
    page = report.html.read_text()
    assert "Best trials of the trials without a stage" in page
    assert any("Learning curves" in c.title for c in report.charts)


def test_plain_sqlite_path_is_a_database(train_db: str) -> None:
    assert Storage(train_db).url == f"sqlite:///{train_db}"
    assert len(load_trials(train_db, "train")) == 4


def test_load_trials_types_integers_and_not_applicable_parameters(train_db: str) -> None:
    frame = load_trials(train_db, "train")
    for column in ("trial_id", "number", "seed", "updates", "param_count", "nf", "batch_size",
                   "n_s"):
        assert str(frame[column].dtype) == "Int64", column
    mlp = frame[frame["model"] == "mlp"]
    conv = frame[frame["model"] == "convnet"]
    assert mlp["f"].isna().all() and mlp["nf"].isna().all() and mlp["nh"].isna().all()
    assert conv["hidden"].isna().all() and list(conv["f"]) == [8]
    assert mlp["hidden"].notna().all()
    assert conv["n_s"].isna().all()  # unset: NA, not Python None in an object column
    assert mlp["n_s"].notna().all()


def test_load_curves_of_a_sweep_or_a_stage(demo_db: str) -> None:
    everything = load_curves(demo_db, sweep="lambda")
    coarse = load_curves(demo_db, sweep="lambda", stage="coarse")
    ids = load_trials(demo_db, "lambda", stage="coarse")["trial_id"]
    assert set(coarse["trial_id"]) == set(ids)
    assert set(coarse["trial_id"]) < set(everything["trial_id"])
    assert load_curves(demo_db, ids[:2]).equals(load_curves(demo_db, trial_ids=ids[:2]))
    assert str(coarse["trial_id"].dtype) == "Int64"
    assert pd.api.types.is_float_dtype(coarse["loss"])


def test_stage_table_words_fit_the_sampler() -> None:
    from numsweep.storage import StagePlan, describe_space

    lam = {"lam": {"type": "float", "low": 1e-5, "high": 0.1, "log": True, "grid": 8}}
    assert describe_space(lam, "grid") == "lam: 1e-05 to 0.1 (log, grid of 8)"
    assert describe_space(lam, "random") == "lam: 1e-05 to 0.1 (log)"  # draws, no grid
    best = StagePlan.from_dict({"space": lam, "fixed": {"cycles": 3}}).describe("best")
    assert "lam" not in best and best.startswith("nothing") and "cycles=3" in best


def test_one_trial_is_not_one_trials(demo_db: str) -> None:
    from numsweep.analysis import draw_lambda, lambda_data

    frame = load_trials(demo_db, "lambda", state="complete")
    one_fine = frame[(frame["stage"] == "coarse") | (frame["trial_id"] == frame[
        frame["stage"] == "fine"]["trial_id"].min())]
    ax = draw_lambda(lambda_data(one_fine))
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "fine (1 trial)" in labels and "coarse (5 trials)" in labels


def test_best_of_stage_curves_are_labelled_by_stage_and_values(demo_db: str) -> None:
    frame = load_trials(demo_db, "lambda", state="complete")
    best = frame.loc[frame.groupby("stage")["val_acc"].idxmax()]
    data = curve_data(best, load_curves(demo_db, best["trial_id"]), by_stage=True)
    labels = set(data["label"])
    assert len(labels) == 2 and all(label.split(": ")[0] in ("coarse", "fine") and "lam="
                                    in label for label in labels)


def _texts(fig: plt.Figure) -> list[str]:
    return [t.get_text() for legend in fig.legends for t in legend.get_texts()]


def test_three_curves_share_one_legend_below_the_panels(demo_db: str) -> None:
    frame = load_trials(demo_db, "lambda", state="complete").head(3)
    data = curve_data(frame, load_curves(demo_db, frame["trial_id"]),
                      by=["lam", "eta_max", "batch_size", "n_train"])
    axes = draw_curve_panels(data)
    fig = axes[0].figure
    fig.canvas.draw()
    assert all(ax.get_legend() is None for ax in axes[:3])
    legend_box = fig.legends[0].get_window_extent()
    assert all(not legend_box.overlaps(ax.get_window_extent()) for ax in axes)
    widths = {round(ax.get_position().width, 2) for ax in axes}
    assert len(widths) == 1  # the panels stay the same size
    # keys for training and validation in black, no trial drawn in grey
    keys = [h for h, n in zip(fig.legends[0].legend_handles, _texts(fig), strict=True)
            if n in ("training", "validation")]
    assert keys and all(h.get_color() == "black" for h in keys)


def test_no_trial_curve_is_grey_like_the_key(demo_db: str) -> None:
    frame = load_trials(demo_db, "archs", state="complete")  # 9 trials: C7 would be used
    data = curve_data(frame, load_curves(demo_db, frame["trial_id"]))
    ax = draw_curve_panels(data, ("loss",))[0]
    assert "C7" not in {line.get_color() for line in ax.get_lines()}
    assert "#7f7f7f" not in {line.get_color() for line in ax.get_lines()}


def test_bars_note_names_what_is_hatched() -> None:
    from numsweep.analysis import draw_bars

    data = pd.DataFrame({"config": ["a", "b", "c"], "mean": [10.0, 12.0, 13.0],
                         "std": [0.1, 0.1, 5.0], "count": [3, 3, 3],
                         "best": [True, False, False], "within_noise": [False, False, True]})
    data.attrs.update(configs=3, trials=9, higher_is_better=False)
    ax = draw_bars(data, "train_seconds")
    notes = [t.get_text() for t in ax.texts]
    assert not any("runner-up (" in n for n in notes)  # the runner-up is not hatched
    assert any("1 hatched configuration" in n for n in notes)


def test_pareto_labels_do_not_overlap() -> None:
    from numsweep.analysis import draw_pareto

    data = pd.DataFrame({"trial_id": [1, 2, 3, 4, 5], "label": ["f=4, nf=10, nh=50"] * 5,
                         "train_seconds": [1.0, 1.02, 1.04, 1.06, 3.0],
                         "test_acc": [50.0, 50.2, 50.4, 50.6, 40.0],
                         "on_front": [True] * 4 + [False]})
    data.attrs.update(x="train_seconds", y="test_acc")
    ax = draw_pareto(data)
    ax.figure.canvas.draw()
    boxes = [t.get_window_extent() for t in ax.texts]
    assert len(boxes) == 4
    assert not any(a.overlaps(b) for i, a in enumerate(boxes) for b in boxes[i + 1:])
    frame = ax.get_window_extent()
    assert all(frame.x0 <= b.x0 and b.x1 <= frame.x1 for b in boxes)  # none cut at the edge


def test_report_labels_best_of_stage_curves_by_stage_values_and_id(
        demo_db: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from numsweep.analysis import charts

    seen: list[set[str]] = []
    draw = charts.draw_curve_panels

    def spy(data: pd.DataFrame, *args: object) -> object:
        seen.append(set(data["label"]))
        return draw(data, *args)

    monkeypatch.setattr(charts, "draw_curve_panels", spy)
    build_report(demo_db, "lambda", tmp_path)
    best_of_stage = seen[0]
    assert len(best_of_stage) == 2
    assert all(label.startswith(("coarse: lam=", "fine: lam=")) and "(trial " in label
               for label in best_of_stage)
