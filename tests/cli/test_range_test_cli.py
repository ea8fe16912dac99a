"""``numsweep range-test``: stored as a trial with its loss curve."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from numsweep.cli import cli
from numsweep.storage import Storage


def test_lr_and_batch_range_tests_are_stored(tmp_path: Path, tiny_npz: Path) -> None:
    db = f"sqlite:///{tmp_path / 't.db'}"
    runner = CliRunner()
    common = ["n_train=300", "n_val=100", "hidden=16", "--data", str(tiny_npz), "--db", db]
    result = runner.invoke(cli, ["range-test", "lr", "eta_min=1e-4", "eta_max=1",
                                 "n_updates=40", "--json", *common])
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout)
    assert record["mode"] == "lr" and record["updates"] == len(record["losses"]) == 40
    assert record["schedule"] == "exponential" and record["values"][0] == 1e-4

    result = runner.invoke(cli, ["range-test", "batch", "b_min=4", "b_max=256", "n_updates=7",
                                 "eta_max=0.02", *common])
    assert result.exit_code == 0, result.output
    assert "batch range test, 7 updates; lowest smoothed loss at batch size" in result.output

    storage = Storage(db)
    trials = storage.get_trials("range-test")
    assert [t.state.value for t in trials] == ["COMPLETE", "COMPLETE"]
    assert trials[0].params["schedule"] == "exponential" and "best_lr" in trials[0].metrics
    assert trials[1].params["batch_schedule"] == "exponential"
    lr_curve = storage.get_curves([trials[0].id])
    assert [c.split for c in lr_curve] == ["lr_range"] * 40
    assert [c.step for c in lr_curve] == list(range(40))
    assert lr_curve[0].lr == 1e-4 and lr_curve[-1].lr == 1.0
    batch_curve = storage.get_curves([trials[1].id])
    assert [c.step for c in batch_curve] == [4, 8, 16, 32, 64, 128, 256]  # the batch sizes
    assert {c.lr for c in batch_curve} == {0.02}


def test_range_test_errors_are_one_line(tmp_path: Path, tiny_npz: Path) -> None:
    db = f"sqlite:///{tmp_path / 't.db'}"
    result = CliRunner().invoke(cli, ["range-test", "lr", "schedule=cyclic", "--data",
                                      str(tiny_npz), "--db", db])
    assert result.exit_code == 1
    assert result.output.strip() == ("Error: schedule='cyclic' is invalid: the lr range test "
                                     "runs schedule=exponential")
    result = CliRunner().invoke(cli, ["range-test", "size", "--db", db])
    assert result.exit_code == 1
