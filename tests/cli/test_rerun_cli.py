"""``numsweep trial rerun`` reproduces any stored trial: `train`'s on the data it used (given by
--data or $NUMSWEEP_DATA), a range test by its own stopping rule; a rerun that cannot start
is one line naming the data and stores nothing."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from numsweep.cli import cli
from numsweep.engine.data import DataError
from numsweep.storage import Storage

SMALL = ["n_train=300", "n_val=100", "hidden=8", "batch_size=50", "cycles=1", "eval_train=100"]


def invoke(*args: object, env: dict[str, str] | None = None):
    return CliRunner().invoke(cli, [str(a) for a in args], env=env, catch_exceptions=False)


@pytest.fixture(autouse=True)
def no_download(monkeypatch: pytest.MonkeyPatch) -> None:
    """A rerun that forgot its data would download CIFAR-10: here that is an error."""
    def refuse(*_args: object, **_kwargs: object) -> Path:
        raise DataError("test: no CIFAR-10 download")

    monkeypatch.setattr("numsweep.engine.data.download", refuse)
    monkeypatch.delenv("NUMSWEEP_DATA", raising=False)


@pytest.fixture()
def data(tmp_path: Path, tiny_npz: Path) -> Path:
    copy = tmp_path / "mine.npz"
    shutil.copy(tiny_npz, copy)
    return copy


def test_a_train_trial_is_rerun_on_the_data_it_was_trained_on(tmp_path: Path,
                                                              data: Path) -> None:
    db = f"sqlite:///{tmp_path / 't.db'}"
    assert invoke("train", *SMALL, "--data", data, "--db", db).exit_code == 0
    result = invoke("trial", "rerun", "1", "--db", db)
    assert result.exit_code == 0, result.output
    assert "trial 2: same metrics as trial 1" in result.output
    lines = result.output.splitlines()
    assert lines[0] == "metric\ttrial 1 (stored)\ttrial 2 (rerun)"  # headed columns
    assert lines[1].startswith("val_acc\t")


def test_numsweep_data_is_remembered_too(tmp_path: Path, data: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    db = f"sqlite:///{tmp_path / 't.db'}"
    monkeypatch.chdir(tmp_path)  # a relative path: stored as an absolute one
    assert invoke("train", *SMALL, "--db", db, env={"NUMSWEEP_DATA": "mine.npz"}
                  ).exit_code == 0
    monkeypatch.chdir(Path(__file__).parent)
    result = invoke("trial", "rerun", "1", "--db", db)
    assert result.exit_code == 0, result.output
    assert "same metrics" in result.output


def test_a_sweep_started_on_a_relative_data_path_is_rerun_from_another_folder(
        tmp_path: Path, data: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spec = tmp_path / "s.toml"
    spec.write_text('name = "rel"\n[fixed]\nhidden = [8]\nn_train = 300\nn_val = 100\n'
                    'batch_size = 50\ncycles = 1\neval_train = 100\n[space]\n'
                    'lam = { type = "float", low = 1e-4, high = 1e-2, log = true, grid = 1 }\n'
                    '[[stages]]\nname = "g"\nsampler = "grid"\n')
    db = tmp_path / "rel.db"
    monkeypatch.chdir(tmp_path)
    result = invoke("sweep", "run", "s.toml", "--data", "mine.npz", "--db", db, "--jobs", "1")
    assert result.exit_code == 0, result.output
    run = Storage(str(db)).get_sweep("rel").run
    assert run is not None and run.data == str(data.resolve())
    monkeypatch.chdir("/")
    result = invoke("trial", "rerun", "1", "--db", db)
    assert result.exit_code == 0, result.output
    assert "same metrics as trial 1" in result.output


def test_gone_data_is_one_line_naming_it_and_stores_no_failed_trial(tmp_path: Path,
                                                                   data: Path) -> None:
    db = f"sqlite:///{tmp_path / 't.db'}"
    assert invoke("train", *SMALL, "--data", data, "--db", db).exit_code == 0
    moved = data.rename(tmp_path / "moved.npz")
    result = invoke("trial", "rerun", "1", "--db", db)
    assert result.exit_code == 1
    [line] = result.output.strip().splitlines()
    assert line.startswith("Error: cannot rerun trial 1: ") and str(data) in line
    assert "--data" in line
    assert "rerun" not in [s.name for s in Storage(db).list_sweeps()]
    # an explicit --data wins over the stored one
    result = invoke("trial", "rerun", "1", "--data", moved, "--db", db)
    assert result.exit_code == 0, result.output
    assert "same metrics as trial 1" in result.output


def test_a_range_test_that_stopped_itself_is_rerun_with_the_same_rule(tmp_path: Path,
                                                                     data: Path) -> None:
    db = f"sqlite:///{tmp_path / 't.db'}"
    made = invoke("range-test", "lr", "n_train=300", "n_val=100", "hidden=8", "batch_size=10",
                  "eta_min=1e-2", "eta_max=1e6", "n_updates=300", "--stop-factor", "2",
                  "--data", data, "--db", db)
    assert made.exit_code == 0, made.output
    [original] = Storage(db).get_trials("range-test")
    assert original.metrics["updates"] < 300  # it stopped itself
    # and says so with the same count (not one less)
    assert f"stopped after {int(original.metrics['updates'])} updates" in made.output
    result = invoke("trial", "rerun", original.id, "--db", db)
    assert result.exit_code == 0, result.output
    assert f"same metrics as trial {original.id}" in result.output
    [again] = Storage(db).get_trials("rerun")
    assert again.metrics["updates"] == original.metrics["updates"]
    assert again.setup["range_test"] == {"mode": "lr", "stop_factor": 2.0}
    assert f"rerun of trial {original.id}" in again.message


def test_numsweep_data_does_not_replace_the_data_a_trial_stored(tmp_path: Path, data: Path,
                                                                tiny_npz: Path) -> None:
    """A trial trained on the downloaded CIFAR-10 reruns on it, whatever $NUMSWEEP_DATA
    says now (here the download is refused, so the error shows which data was taken)."""
    db = f"sqlite:///{tmp_path / 't.db'}"
    storage = Storage(db)
    sweep = storage.get_or_create_sweep("train", {"name": "train", "single": True}, 0)
    storage.start_trial(sweep.id, None, 0, {"n_train": 300, "n_val": 100}, 0,
                        setup={"data": None})
    result = invoke("trial", "rerun", "1", "--db", db, env={"NUMSWEEP_DATA": str(data)})
    assert result.exit_code == 1 and "no CIFAR-10 download" in result.output
    assert "rerun" not in [s.name for s in storage.list_sweeps()]


def test_a_rerun_on_data_too_small_for_it_stores_no_failed_trial(tmp_path: Path,
                                                                 data: Path) -> None:
    db = f"sqlite:///{tmp_path / 't.db'}"
    assert invoke("train", *SMALL, "--data", data, "--db", db).exit_code == 0
    assert invoke("range-test", "batch", "n_train=300", "n_val=100", "hidden=8", "b_min=8",
                  "b_max=256", "--data", data, "--db", db).exit_code == 0
    small = tmp_path / "small.npz"
    with np.load(data) as npz:  # 200 training images: fewer than n_train + n_val
        np.savez(small, **{k: npz[k][:200] if k.endswith("train") else npz[k] for k in npz})
    for trial in ("1", "2"):
        result = invoke("trial", "rerun", trial, "--data", small, "--db", db)
        assert result.exit_code == 1
        assert "n_train=300 + n_val=100 exceeds the 200 training images" in result.output
    assert "rerun" not in [s.name for s in Storage(db).list_sweeps()]  # was: FAILED trials
    result = invoke("range-test", "batch", "n_train=150", "n_val=50", "b_min=8", "b_max=256",
                    "--data", small, "--db", db)
    assert result.exit_code == 1 and "b_max=256 exceeds n_train=150" in result.output
    assert len(Storage(db).get_trials()) == 2  # was: a FAILED range test


def test_a_pbt_member_is_rerun_with_its_whole_population(tmp_path: Path, data: Path) -> None:
    db = f"sqlite:///{tmp_path / 'p.db'}"
    assert invoke("sweep", "run", "pbt-lambda", "n_train=300", "n_val=100", "n_s=6",
                  "eval_train=100", "population.population=4", "population.interval=8",
                  "population.metric_subset=50", "--jobs", "1", "--data", data,
                  "--db", db).exit_code == 0
    storage = Storage(db)
    member = storage.get_trials("pbt-lambda", stage="population")[2]
    result = invoke("trial", "rerun", member.id, "--db", db)
    assert result.exit_code == 0, result.output
    assert (f"same metrics as trial {member.id} (its pbt population of 4 trained again)"
            in result.output)
    [again] = storage.get_trials("rerun")
    assert again.setup["pbt_member"] == ["pbt-lambda", "population", member.slot]
