"""A pbt stage's lineage read back (``load_lineage``) and charted (``lineage_data`` then
``draw_lineage``), on a database written straight through Storage (no training)."""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib
import pytest

from numsweep.analysis import charts
from numsweep.analysis.plots import lineage_data
from numsweep.analysis.selection import ChartError
from numsweep.storage import CurveRecord, StagePlan, Storage, StorageError, TrialState

matplotlib.use("Agg")

PBT_STAGE = {"name": "pop", "sampler": "pbt", "population": 3, "interval": 10,
             "metric": "val_acc"}


def pbt_db(path: Path) -> tuple[Storage, list[int]]:
    """Sweep ``p``: a pbt stage of three members (lam 1e-4, 1e-3, 1e-2), curve points at
    updates 0, 10, 20; at update 10 member 2 copied member 0, at 20 member 1 copied member 2."""
    storage = Storage(f"sqlite:///{path}")
    sweep = storage.get_or_create_sweep("p", {"name": "p", "stages": [PBT_STAGE]}, seed=0)
    initial = ({"lam": 1e-4}, {"lam": 1e-3}, {"lam": 1e-2})
    plan = StagePlan(space={"lam": {"type": "float", "low": 1e-5, "high": 1e-1, "log": True}},
                     configs=initial, n_configs=3, planned=3)
    stage = storage.get_or_create_stage(sweep.id, 0, "pop", "pbt", plan.to_dict())
    ids = []
    for slot, (lam, acc) in enumerate([(1e-4, 0.5), (1e-3, 0.3), (1e-2, 0.4)]):
        [(tid, _)] = storage.claim_slots(sweep.id, stage.id, [(slot, {"lam": lam}, slot)],
                                         study_trial=None, worker="host:1")
        curves = [CurveRecord(tid, step, split, 1.0, 1.0, acc + step / 100, 0.1)
                  for step in (0, 10, 20) for split in ("train", "val")]
        storage.finish_trial(tid, TrialState.COMPLETE, curves=curves,
                             metrics={"val_acc": acc + 0.2})
        ids.append(tid)
    storage.record_lineage(stage.id, [
        (ids[2], 10, ids[0], 0.5, 0.6, {"lam": 1e-2}, {"lam": 1.2e-4}),
        (ids[1], 20, ids[2], math.nan, 0.7, {"lam": 1e-3}, {"lam": 0.96e-4})])
    return storage, ids


def test_the_lineage_loads_as_a_frame_with_before_and_after_per_parameter(
        tmp_path: Path) -> None:
    import numsweep

    storage, ids = pbt_db(tmp_path / "p.db")
    frame = numsweep.load_lineage(storage, "p")
    assert list(frame.columns) == ["stage", "trial_id", "update", "source_trial_id",
                                   "metric_member", "metric_source", "before_lam", "after_lam"]
    assert frame["trial_id"].tolist() == [ids[2], ids[1]]
    assert frame["source_trial_id"].tolist() == [ids[0], ids[2]]
    assert frame["update"].tolist() == [10, 20]
    assert frame["after_lam"].tolist() == [1.2e-4, 0.96e-4]
    assert frame["metric_member"].iloc[0] == 0.5 and math.isnan(frame["metric_member"].iloc[1])
    assert numsweep.load_lineage(storage, "p", stage="other").empty
    with pytest.raises(StorageError, match="no sweep named 'nope'"):
        numsweep.load_lineage(storage, "nope")


def test_lineage_data_has_each_members_points_and_the_exploit_links(tmp_path: Path) -> None:
    storage, ids = pbt_db(tmp_path / "p.db")
    data = lineage_data(storage, "p", color="lam")
    assert sorted(set(data["trial_id"])) == ids and len(data) == 9  # val points only
    first = data[data["trial_id"] == ids[0]]
    assert first["step"].tolist() == [0, 10, 20]
    assert first["val_acc"].tolist() == pytest.approx([50.0, 60.0, 70.0])  # percent
    assert set(data.loc[data["trial_id"] == ids[2], "color"]) == {1e-2}
    links = data.attrs["links"]
    assert links[["source_trial_id", "trial_id", "update"]].values.tolist() == [
        [ids[0], ids[2], 10], [ids[2], ids[1], 20]]
    assert links["source_value"].tolist() == pytest.approx([60.0, 70.0])
    ax = charts.draw_lineage(data)
    assert len(ax.lines) == 3
    # each exploit step an arrow at its update, from the member copied to the one replaced
    arrows = [(*a.xyann, *a.xy) for a in ax.texts]
    assert arrows[0] == pytest.approx((10, 60.0, 10, 50.0))
    assert arrows[1] == pytest.approx((20, 70.0, 20, 70.0))  # a NaN metric: at the source
    out = charts.save(ax, tmp_path / "lineage.png")
    assert out.stat().st_size > 0 and out.read_bytes()[:4] == b"\x89PNG"


def test_lineage_data_of_a_sweep_without_a_pbt_stage_or_an_unknown_colour_is_an_error(
        tmp_path: Path) -> None:
    storage, _ = pbt_db(tmp_path / "p.db")
    other = storage.get_or_create_sweep("g", {"name": "g"}, seed=0)
    storage.get_or_create_stage(other.id, 0, "coarse", "grid", {})
    with pytest.raises(ChartError, match="sweep 'g' has no pbt stage"):
        lineage_data(storage, "g")
    with pytest.raises(ChartError, match="unknown parameter 'nope'"):
        lineage_data(storage, "p", color="nope")
    with pytest.raises(StorageError, match="no sweep named 'nope'"):
        lineage_data(storage, "nope")
