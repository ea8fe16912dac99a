"""Bulk reads for analysis: the same content as get_trials/get_curves, as plain tuples."""

from __future__ import annotations

import math
from pathlib import Path

from numsweep.storage import CurveRecord, Storage, TrialState


def _fill(storage: Storage) -> list[int]:
    sweep = storage.get_or_create_sweep("s", {}, seed=0)
    other = storage.get_or_create_sweep("t", {}, seed=0)
    coarse = storage.get_or_create_stage(sweep.id, 0, "coarse", "grid", {})
    fine = storage.get_or_create_stage(sweep.id, 1, "fine", "tpe", {})
    ids = []
    for n, (stage, lam) in enumerate([(coarse, 0.1), (coarse, 0.01), (fine, 0.02)]):
        tid = storage.start_trial(sweep.id, stage.id, n, {"lam": lam, "hidden": [50]}, seed=n)
        ids.append(tid)
        if n < 2:
            storage.finish_trial(tid, TrialState.COMPLETE, metrics={"val_acc": 0.4 + n,
                                                                   "x": math.inf},
                                 curves=[CurveRecord(tid, 0, "train", 2.0, 2.1, 0.1, 0.01),
                                         CurveRecord(tid, 5, "val", math.nan, 1.0, 0.3, 0.02)])
    storage.start_trial(other.id, None, 0, {"lam": 1.0}, seed=0)
    return ids


def test_trial_rows_match_get_trials(tmp_path: Path) -> None:
    storage = Storage(f"sqlite:///{tmp_path / 'q.db'}")
    ids = _fill(storage)
    rows = storage.get_trial_rows("s")
    assert [t[0] for t in rows.trials] == ids
    assert [t[2] for t in rows.trials] == ["coarse", "coarse", "fine"]
    assert rows.trials[2][4] is TrialState.RUNNING
    assert sorted(p for p in rows.params if p[0] == ids[0]) == [(ids[0], "hidden", [50]),
                                                                 (ids[0], "lam", 0.1)]
    metrics = {(t, n): v for t, n, v in rows.metrics}
    assert metrics[(ids[1], "val_acc")] == 1.4 and metrics[(ids[0], "x")] == math.inf
    for record in storage.get_trials("s"):
        assert record.params == {n: v for t, n, v in rows.params if t == record.id}

    complete = storage.get_trial_rows("s", stage="coarse", states=[TrialState.COMPLETE])
    assert [t[0] for t in complete.trials] == ids[:2]
    assert {p[0] for p in complete.params} == set(ids[:2])
    assert len(storage.get_trial_rows().trials) == 4
    assert storage.get_trial_rows("s", stage="nope").trials == []


def test_curve_rows_match_get_curves(tmp_path: Path) -> None:
    storage = Storage(f"sqlite:///{tmp_path / 'q.db'}")
    ids = _fill(storage)
    rows = storage.get_curve_rows(ids)
    records = storage.get_curves(ids)
    assert len(rows) == len(records) == 4
    for row, record in zip(rows, records, strict=True):
        assert row[:3] == (record.trial_id, record.step, record.split)
        assert math.isnan(row[3]) == math.isnan(record.loss)
    assert storage.get_curve_rows([]) == []
    assert [r[0] for r in storage.get_curve_rows([ids[1]])] == [ids[1], ids[1]]
