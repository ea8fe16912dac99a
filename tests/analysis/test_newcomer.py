"""Issue 17: what tripped a newcomer in the analysis package, each guarded."""

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
    from numsweep.analysis.report import describe_space

    lam = {"lam": {"type": "float", "low": 1e-5, "high": 0.1, "log": True, "grid": 8}}
    assert describe_space(lam, "grid") == "lam: 1e-05 to 0.1 (log, grid of 8)"
    assert describe_space(lam, "random") == "lam: 1e-05 to 0.1 (log)"  # draws, no grid
    best = describe_space({"space": lam, "fixed": {"cycles": 3}}, "best")
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
