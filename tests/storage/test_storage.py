from __future__ import annotations

import json
import math
import os
import sqlite3
from pathlib import Path

import pytest

from numsweep.storage import CurveRecord, RunSettings, Storage, StorageError, TrialState
from numsweep.storage.storage import shown_url


def test_trial_round_trip_keeps_params_metrics_curves_and_special_floats(tmp_path: Path) -> None:
    storage = Storage(f"sqlite:///{tmp_path / 'r.db'}")
    sweep = storage.get_or_create_sweep("s", {"name": "s"}, seed=3)
    stage = storage.get_or_create_stage(sweep.id, 0, "coarse", "grid", {"lam": {"grid": 8}})
    tid = storage.start_trial(sweep.id, stage.id, 0, {"lam": 0.01, "hidden": [50, 20],
                                                       "model": "mlp", "n_s": None}, seed=11)
    running = storage.get_trials("s")[0]
    assert running.state is TrialState.RUNNING and running.metrics == {}
    curves = [CurveRecord(tid, 0, "train", 2.3, 2.4, 0.1, 1e-5),
              CurveRecord(tid, 10, "val", math.nan, math.inf, 0.2, 0.1)]
    storage.finish_trial(tid, TrialState.COMPLETE, curves=curves, worker="w:1",
                         metrics={"val_acc": 0.5, "a": math.inf, "b": -math.inf, "c": math.nan},
                         params={"n_s": 40})
    storage.dispose()

    again = Storage(f"sqlite:///{tmp_path / 'r.db'}")
    [trial] = again.get_trials("s", stage="coarse", states=[TrialState.COMPLETE])
    assert trial.params == {"lam": 0.01, "hidden": [50, 20], "model": "mlp", "n_s": 40}
    assert trial.metrics["val_acc"] == 0.5
    assert trial.metrics["a"] == math.inf and trial.metrics["b"] == -math.inf
    assert math.isnan(trial.metrics["c"])
    assert (trial.seed, trial.worker, trial.stage, trial.sweep) == (11, "w:1", "coarse", "s")
    got = again.get_curves([tid])
    assert got[0] == curves[0]
    assert math.isnan(got[1].loss) and got[1].cost == math.inf
    assert again.get_trials("s", states=[TrialState.FAILED]) == []


def test_run_settings_and_stage_plans_are_stored_apart_from_the_spec(tmp_path: Path) -> None:
    storage = Storage(f"sqlite:///{tmp_path / 'r.db'}")
    run = RunSettings("/data/c.npz", 2, "/ckpt", "all")
    sweep = storage.get_or_create_sweep("s", {"name": "s", "seed": 1}, 1, run=run)
    single = storage.get_or_create_sweep("train", {"name": "train", "single": True}, 0)
    plan = {"space": {"lam": {"low": 0.1, "high": 1.0}}, "fixed": {}, "reused": [],
            "configs": [], "study_ready": True}
    storage.get_or_create_stage(sweep.id, 0, "g", "grid", plan)
    assert (storage.get_sweep("s").run, storage.get_sweep("train").run) == (run, None)
    storage.set_sweep_spec(sweep.id, {"name": "s", "seed": 2})  # run settings kept
    assert storage.get_sweep("s").run == run
    storage.set_sweep_spec(sweep.id, {"name": "s", "seed": 2}, run=RunSettings(None, 1))
    assert storage.get_sweep("s").run == RunSettings(None, 1)
    with sqlite3.connect(tmp_path / "r.db") as conn:
        assert json.loads(conn.execute("SELECT spec_json FROM ns_sweeps WHERE id = ?",
                                       (sweep.id,)).fetchone()[0]) == {"name": "s", "seed": 2}
        assert conn.execute("SELECT * FROM ns_sweep_runs").fetchall() == [
            (sweep.id, None, 1, None, None)]
        assert json.loads(conn.execute("SELECT plan_json FROM ns_stages").fetchone()[0]) == plan
    assert storage.delete_sweep(sweep.id) == 0 and storage.delete_sweep(single.id) == 0
    with sqlite3.connect(tmp_path / "r.db") as conn:
        assert conn.execute("SELECT count(*) FROM ns_sweep_runs").fetchone() == (0,)


def test_unknown_sweep_lists_the_known_ones(tmp_path: Path) -> None:
    storage = Storage(f"sqlite:///{tmp_path / 'r.db'}")
    storage.get_or_create_sweep("alpha", {}, 0)
    with pytest.raises(StorageError, match=r"no sweep named 'beta'.*\(sweeps: alpha\)"):
        storage.get_sweep("beta")


def test_missing_folder_and_bad_url_are_one_line_errors(tmp_path: Path) -> None:
    with pytest.raises(StorageError, match="does not exist"):
        Storage(f"sqlite:///{tmp_path / 'nope' / 'r.db'}")
    with pytest.raises(StorageError, match="cannot open"):
        Storage("notadb://x")


def test_a_url_whose_port_is_no_number_is_a_one_line_error_without_its_password() -> None:
    url = "postgresql://me:secret@db-host:notaport/sweeps"
    with pytest.raises(StorageError) as err:  # was: SQLAlchemy's bare ValueError
        Storage(url)
    assert str(err.value) == ("not a database URL: postgresql://me:***@db-host:notaport/sweeps "
                              "(its port is not a number)")
    assert shown_url(url) == "postgresql://me:***@db-host:notaport/sweeps"


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write to read-only folders")
def test_read_only_folder(tmp_path: Path) -> None:
    tmp_path.chmod(0o500)
    try:
        with pytest.raises(StorageError, match="read-only"):
            Storage(f"sqlite:///{tmp_path / 'r.db'}")
    finally:
        tmp_path.chmod(0o700)


def test_a_running_trial_s_points_are_stored_then_replaced_by_its_whole_curve(
        tmp_path: Path) -> None:
    """Curve points stored while a trial runs (each (step, split) once) are readable at
    once; when it ends its whole curve takes their place, in its order, as if none had been
    stored; an ended trial takes no more."""
    storage = Storage(f"sqlite:///{tmp_path / 'live.db'}")
    sweep = storage.get_or_create_sweep("s", {"name": "s"}, seed=3)
    tid = storage.start_trial(sweep.id, None, 0, {"lam": 0.01}, seed=1)
    first = [CurveRecord(tid, 0, "train", 2.3, 2.4, 0.1, 0.01),
             CurveRecord(tid, 0, "val", 2.2, 2.3, 0.2, 0.01)]
    later = [CurveRecord(tid, 5, "train", 1.0, 1.1, 0.5, 0.1),
             CurveRecord(tid, 5, "val", math.nan, math.inf, 0.4, 0.1)]
    assert storage.add_running_curve_points(tid, first)
    assert storage.add_running_curve_points(tid, first + later)  # a resumed run's restored
    got = storage.get_curves([tid])
    assert got[:3] == [*first, later[0]] and len(got) == 4
    assert [t.state for t in storage.get_trials("s")] == [TrialState.RUNNING]

    whole = [*first, *later, CurveRecord(tid, 10, "train", 0.5, 0.6, 0.8, 0.01),
             CurveRecord(tid, 10, "val", 0.6, 0.7, 0.7, 0.01)]
    storage.finish_trial(tid, TrialState.COMPLETE, curves=whole, metrics={"val_acc": 0.7})

    def shown(curves: list[CurveRecord]) -> list[tuple[object, ...]]:
        return [(c.step, c.split, c.acc, c.lr, repr(c.loss), repr(c.cost)) for c in curves]

    assert shown(storage.get_curves([tid])) == shown(whole)
    assert not storage.add_running_curve_points(tid, [CurveRecord(tid, 99, "val", 0, 0, 1, 0)])
    assert len(storage.get_curves([tid])) == len(whole)


def test_slot_groups_are_stored_once_per_group_and_go_with_their_sweep(tmp_path: Path) -> None:
    storage = Storage(f"sqlite:///{tmp_path / 'r.db'}")
    sweep = storage.get_or_create_sweep("s", {"name": "s"}, seed=1)
    other = storage.get_or_create_sweep("t", {"name": "t"}, seed=1)
    coarse = storage.get_or_create_stage(sweep.id, 0, "coarse", "random", {})
    fine = storage.get_or_create_stage(sweep.id, 1, "fine", "random", {})
    kept = storage.get_or_create_stage(other.id, 0, "coarse", "random", {})
    first = storage.start_trial(sweep.id, coarse.id, None, {"lam": 0.1}, seed=1)
    started = storage.get_trials(trial_ids=[first])[0].started_at
    group = storage.record_slot_group(coarse.id, first, "host:1", 4, 100, 360, 7, 80, 320)
    assert (group.stage, group.group_id, group.worker, group.size, group.steps,
            group.slot_updates, group.trials, group.full_steps, group.full_slot_updates) == (
        "coarse", first, "host:1", 4, 100, 360, 7, 80, 320)
    assert group.started_at == started and group.finished_at >= started
    assert group.occupancy == 0.9
    # the group resumed and ended again: its row replaced, not doubled
    again = storage.record_slot_group(coarse.id, first, "host:2", 4, 120, 440, 8, 80, 320)
    storage.record_slot_group(fine.id, first, "host:2", 2, 10, 20, 2, 10, 20)
    storage.record_slot_group(kept.id, 5, "host:3", 2, 10, 15, 3, 5, 10)
    [stored] = storage.slot_groups(coarse.id)
    assert stored == again and (stored.id, stored.worker, stored.steps) == (group.id,
                                                                             "host:2", 120)
    assert [(g.stage, g.size) for g in storage.slot_groups(sweep="s")] == [("coarse", 4),
                                                                          ("fine", 2)]
    with pytest.raises(StorageError, match="no stage with id 999"):
        storage.record_slot_group(999, 1, "host:1", 2, 1, 1, 1, 1, 1)
    assert storage.delete_sweep(sweep.id) == 1
    assert storage.slot_groups(sweep="s") == [] and storage.slot_groups(coarse.id) == []
    assert [g.stage_id for g in storage.slot_groups(sweep="t")] == [kept.id]
    with sqlite3.connect(tmp_path / "r.db") as conn:
        assert conn.execute("SELECT count(*) FROM ns_slot_groups").fetchone() == (1,)


def test_a_pbt_stages_lineage_is_stored_once_read_back_in_order_and_goes_with_its_sweep(
        tmp_path: Path) -> None:
    storage = Storage(f"sqlite:///{tmp_path / 'r.db'}")
    sweep = storage.get_or_create_sweep("s", {"name": "s"}, seed=1)
    other = storage.get_or_create_sweep("t", {"name": "t"}, seed=1)
    pop = storage.get_or_create_stage(sweep.id, 0, "pop", "pbt", {})
    kept = storage.get_or_create_stage(other.id, 0, "pop", "pbt", {})
    a, b = (storage.start_trial(sweep.id, pop.id, None, {"lam": 0.1}, seed=i) for i in (1, 2))
    c, d = (storage.start_trial(other.id, kept.id, None, {"lam": 0.1}, seed=i) for i in (1, 2))
    steps = [(a, 10, b, 0.1, 0.5, {"lam": 0.1}, {"lam": 0.24}),
             (b, 20, a, math.nan, 0.6, {"lam": 0.2}, {"lam": 0.192})]
    assert storage.record_lineage(pop.id, steps) == 2
    # the population resumed and ended again: its history replaced, not doubled
    assert storage.record_lineage(pop.id, steps) == 2
    storage.record_lineage(kept.id, [(c, 5, d, 0.2, 0.3, {"lam": 1.0}, {"lam": 1.2})])
    got = storage.lineage(pop.id)
    assert [(r.stage, r.trial_id, r.update, r.source_trial_id, r.metric_source, dict(r.before),
             dict(r.after)) for r in got] == [
        ("pop", a, 10, b, 0.5, {"lam": 0.1}, {"lam": 0.24}),
        ("pop", b, 20, a, 0.6, {"lam": 0.2}, {"lam": 0.192})]
    assert got[0].metric_member == 0.1 and math.isnan(got[1].metric_member)
    assert storage.lineage(sweep="s") == got
    with pytest.raises(StorageError, match="no stage with id 999"):
        storage.record_lineage(999, steps)
    storage.delete_sweep(sweep.id)
    assert storage.lineage(sweep="s") == [] and storage.lineage(pop.id) == []
    assert [r.trial_id for r in storage.lineage(sweep="t")] == [c]
    with sqlite3.connect(tmp_path / "r.db") as conn:
        assert conn.execute("SELECT count(*) FROM ns_lineage").fetchone() == (1,)
