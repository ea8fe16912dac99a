"""Extending a finished sweep: more trials for a sampler stage, run as a resume runs, and
refused (before anything changes) where a resume would refuse or the result would mislead."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import optuna
import pytest
from click.testing import CliRunner

import numsweep
from numsweep.cli import cli
from numsweep.storage import Storage, TrialState
from numsweep.sweeps import SweepSpecError, parse_spec, run_sweep
from numsweep.sweeps.extend import extend_sweep
from numsweep.sweeps.guards import DataMismatch
from tests.conftest import write_images_npz

FIXED = {"hidden": [8], "n_train": 200, "n_val": 100, "batch_size": 50, "cycles": 1,
         "eval_train": 100, "curve_points": 2}
SPACE = {"lam": {"low": 1e-4, "high": 1e-1, "log": True, "grid": 2}}


def run(tmp_path: Path, tiny_npz: Path, stages: list[dict[str, Any]]) -> Storage:
    storage = Storage(f"sqlite:///{tmp_path / 'e.db'}")
    spec = parse_spec({"name": "e", "seed": 4, "fixed": FIXED, "space": SPACE,
                       "stages": stages}, "e.toml")
    run_sweep(spec, storage, data_source=str(tiny_npz), jobs=1)
    return storage


def test_a_finished_stage_takes_more_trials(tmp_path: Path, tiny_npz: Path) -> None:
    storage = run(tmp_path, tiny_npz, [{"name": "s", "sampler": "tpe", "n_trials": 3}])
    before = storage.get_trials("e")
    result = numsweep.extend("e", {"s.n_trials": "+2"}, db=storage.url, progress=False)
    after = storage.get_trials("e")
    assert len(after) == 5 and all(t.state is TrialState.COMPLETE for t in after)
    assert [(t.id, t.params["lam"]) for t in after[:3]] == [(t.id, t.params["lam"])
                                                            for t in before]  # kept
    assert storage.get_sweep("e").spec["stages"][0]["n_trials"] == 5
    study = optuna.load_study(study_name="e/s", storage=storage.url)
    assert sum(t.state is optuna.trial.TrialState.COMPLETE for t in study.trials) == 5
    assert result.stages[0].planned == 5
    stage = storage.get_stage(storage.get_sweep("e").id, 0)
    assert stage is not None and "extended by 2 trials (sweep extend)" in stage.note
    # a new total from the command line
    out = CliRunner().invoke(cli, ["sweep", "extend", "e", "s.n_trials=6", "--jobs", "1",
                                   "--db", storage.url])
    assert out.exit_code == 0, out.output
    assert len(storage.get_trials("e")) == 6


def test_what_extend_refuses_changes_nothing(tmp_path: Path, tiny_npz: Path) -> None:
    storage = run(tmp_path, tiny_npz, [{"name": "g", "sampler": "grid"},
                                       {"name": "s", "sampler": "random", "n_trials": 2},
                                       {"name": "final", "sampler": "best"}])
    spec = storage.get_sweep("e").spec
    count = len(storage.get_trials("e"))
    other = write_images_npz(tmp_path / "other.npz", seed=7)
    for additions, data, error, message in (
            ({"g.n_trials": "+2"}, None, SweepSpecError, "stage g is a grid stage"),
            ({"s.lam": "0.1"}, None, SweepSpecError, "only STAGE.n_trials can be extended"),
            ({"x.n_trials": "+1"}, None, SweepSpecError, "no stage named 'x'"),
            ({"s.n_trials": "2"}, None, SweepSpecError, "plans 2 trials already"),
            ({"s.n_trials": "+1"}, None, SweepSpecError,
             "stage final was already planned from the results of s"),
            ({"final.n_trials": "+1"}, None, SweepSpecError, "stage final is a best stage"),
            ({"s.n_trials": "+1"}, other, DataMismatch, "was created with other data")):
        with pytest.raises(error) as info:
            extend_sweep("e", storage, additions, data_source=str(data) if data else None,
                         jobs=1)
        assert message in str(info.value) and "\n" not in str(info.value)
    assert storage.get_sweep("e").spec == spec and len(storage.get_trials("e")) == count
    out = CliRunner().invoke(cli, ["sweep", "extend", "e", "s.n_trials=+1", "--db",
                                   storage.url, "--data", str(other)])
    assert out.exit_code == 1 and out.output.startswith("Error: ")
    assert "was created with other data" in out.output


def test_a_stage_no_later_stage_used_extends(tmp_path: Path, tiny_npz: Path) -> None:
    storage = run(tmp_path, tiny_npz, [{"name": "s", "sampler": "random", "n_trials": 2},
                                       {"name": "t", "sampler": "random", "n_trials": 1}])
    extend_sweep("e", storage, {"s.n_trials": "+1"}, jobs=1)
    assert len(storage.get_trials("e", stage="s")) == 3
    assert len(storage.get_trials("e", stage="t")) == 1
