"""load_trials / load_curves: one column per parameter and result, in a few bulk queries."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event

from numsweep.analysis import load_curves, load_stages, load_trials
from numsweep.analysis.queries import QueryError, find_trials, parse_where
from numsweep.storage import Storage, StorageError
from tests.analysis.conftest import build_db


def test_one_column_per_parameter_and_result(demo_db: str) -> None:
    frame = load_trials(demo_db, "lambda")
    assert len(frame) == 10
    assert {"trial_id", "stage", "state", "seed", "lam", "hidden", "batch_size", "val_acc",
            "test_acc", "train_seconds"} <= set(frame.columns)
    assert "lam" in frame.attrs["params"] and "val_acc" in frame.attrs["metrics"]
    assert frame["hidden"].iloc[0] == (50,)  # lists become tuples, so they can be grouped
    assert list(frame["stage"].unique()) == ["coarse", "fine"]
    failed = frame[frame["state"] == "FAILED"]
    assert len(failed) == 1 and math.isnan(failed["val_acc"].iloc[0])
    running = frame[frame["state"] == "RUNNING"]
    assert math.isnan(running["val_acc"].iloc[0]) and running["lam"].iloc[0] == 0.05


def test_filters_by_stage_and_state(demo_db: str) -> None:
    assert len(load_trials(demo_db, "lambda", stage="coarse")) == 5
    assert len(load_trials(demo_db, "lambda", state="complete")) == 8
    assert len(load_trials(demo_db, "lambda", state=["failed", "running"])) == 2
    assert len(load_trials(demo_db)) == 10 + 9 + 8 + 3
    empty = load_trials(demo_db, "lambda", stage="nope")
    assert empty.empty and "trial_id" in empty.columns
    with pytest.raises(StorageError, match="unknown trial state"):
        load_trials(demo_db, "lambda", state="sleepy")
    with pytest.raises(StorageError, match="no sweep named 'nope'"):
        load_trials(demo_db, "nope")


def test_curves_and_stages(demo_db: str) -> None:
    ids = load_trials(demo_db, "lambda", stage="coarse")["trial_id"]
    curves = load_curves(demo_db, ids)
    assert list(curves.columns) == ["trial_id", "step", "split", "loss", "cost", "acc", "lr"]
    assert len(curves) == 5 * 11 * 2 and set(curves["split"]) == {"train", "val"}
    assert load_curves(demo_db, []).empty
    missing = max(int(i) for i in load_trials(demo_db)["trial_id"]) + 1
    with pytest.raises(StorageError, match=rf"no trial with id {missing + 1}, {missing + 2} "):
        load_curves(demo_db, [int(ids.iloc[0]), missing + 1, missing + 2])
    record, stages = load_stages(demo_db, "lambda")
    assert record.name == "lambda" and [s.name for s in stages] == ["coarse", "fine"]
    assert stages[0].space["lam"]["grid"] == 5


def test_reads_take_a_fixed_number_of_queries(tmp_path: Path) -> None:
    """No query per trial: the statement count is the same for 30 and for 60 trials."""
    counts = []
    for copies in (1, 2):
        storage = build_db(f"sqlite:///{tmp_path / f'{copies}.db'}")
        if copies == 2:
            build_db_more(storage)
        statements: list[str] = []
        event.listen(storage.engine, "before_cursor_execute",
                     lambda *args, out=statements: out.append(args[2]))
        frame = load_trials(storage)
        load_curves(storage, frame["trial_id"])
        counts.append((len(frame), len(statements)))
    (n1, q1), (n2, q2) = counts
    assert n2 > n1 and q1 == q2 <= 6


def build_db_more(storage: Storage) -> None:
    sweep = storage.get_or_create_sweep("more", {}, seed=0)
    for n in range(30):
        storage.start_trial(sweep.id, None, n, {"lam": 0.1 * n}, seed=n)


@pytest.mark.parametrize(("condition", "expected"), [
    (("trial_id", ">", 2), lambda f: f["trial_id"] > 2),
    (("state", "=", "COMPLETE"), lambda f: f["state"] == "COMPLETE"),
    (("state", "=", "complete"), lambda f: f["state"] == "COMPLETE"),
    (("state", "!=", "COMPLETE"), lambda f: f["state"] != "COMPLETE"),
    (("stage", "=", "coarse"), lambda f: f["stage"] == "coarse"),
    (("sweep", "=", "archs"), lambda f: f["sweep"] == "archs"),
    (("number", "<=", 1.0), lambda f: f["number"] <= 1),
    (("hidden", "=", "[50]"), lambda f: f["hidden"].map(lambda v: v == (50,))),
    (("f", "=", 4.0), lambda f: f["f"] == 4),
    (("optimizer", "=", "adam"), lambda f: f["optimizer"] == "adam"),
    (("val_acc", ">", 0.44), lambda f: f["val_acc"] > 0.44),
])
def test_every_column_trials_shows_can_be_filtered(demo_db: str, condition: tuple[str, str, Any],
                                                   expected: Any) -> None:
    frame = load_trials(demo_db)
    want = frame[expected(frame).fillna(False).astype(bool)]["trial_id"].tolist()
    got = find_trials(demo_db, where=[condition])["trial_id"].tolist()
    assert got == want and got, condition


def test_where_on_text_takes_only_equality(demo_db: str) -> None:
    with pytest.raises(QueryError, match="only = and != compare text"):
        find_trials(demo_db, where=[("stage", "<", "coarse")])


def test_parse_where_reads_each_comparison_and_numbers() -> None:
    assert parse_where(["lam<0.01", " val_acc >= 0.4 ", "optimizer=adam", "f==4",
                        "state!=complete", "hidden=[50]", "lam<=1e-3", "updates>10"]) == [
        ("lam", "<", 0.01), ("val_acc", ">=", 0.4), ("optimizer", "=", "adam"),
        ("f", "=", 4.0), ("state", "!=", "complete"), ("hidden", "=", "[50]"),
        ("lam", "<=", 1e-3), ("updates", ">", 10.0)]
    assert parse_where([]) == []


@pytest.mark.parametrize("text", ["lam~1", "lam", "<0.1", "lam<", "two words=1"])
def test_parse_where_refuses_what_is_no_condition(text: str) -> None:
    with pytest.raises(QueryError, match=r"--where expects NAME<VALUE \(or <=, >, >=, =, !=\), "
                                         f"got '{text}'"):
        parse_where([text])


def test_parsed_conditions_filter_as_trials_where_does(demo_db: str) -> None:
    got = find_trials(demo_db, where=parse_where(["val_acc>0.44", "stage=coarse"]))
    assert got["trial_id"].tolist() == find_trials(
        demo_db, where=[("val_acc", ">", 0.44), ("stage", "=", "coarse")])["trial_id"].tolist()


def test_slot_groups_load_as_a_frame_with_their_occupancy(tmp_path: Path) -> None:
    import numsweep

    storage = Storage(f"sqlite:///{tmp_path / 'r.db'}")
    sweep = storage.get_or_create_sweep("s", {"name": "s"}, seed=1)
    coarse = storage.get_or_create_stage(sweep.id, 0, "coarse", "random", {})
    fine = storage.get_or_create_stage(sweep.id, 1, "fine", "random", {})
    storage.record_slot_group(coarse.id, 1, "host:1", 4, 100, 360, 12, 80, 320)
    storage.record_slot_group(fine.id, 20, "host:2", 2, 10, 20, 3, 10, 20)
    frame = numsweep.load_slot_groups(storage, "s")
    assert list(frame.columns) == ["stage", "group_id", "worker", "size", "steps",
                                   "slot_updates", "trials", "full_steps", "full_slot_updates",
                                   "occupancy", "started_at", "finished_at"]
    assert frame["stage"].tolist() == ["coarse", "fine"]
    assert frame["occupancy"].tolist() == [0.9, 1.0] and frame["size"].dtype == "Int64"
    assert numsweep.load_slot_groups(storage, "s", stage="fine")["group_id"].tolist() == [20]
    empty = numsweep.load_slot_groups(storage, "s", stage="final")
    assert empty.empty and "occupancy" in empty.columns
    with pytest.raises(StorageError, match="no sweep named 'nope'"):
        numsweep.load_slot_groups(storage, "nope")
