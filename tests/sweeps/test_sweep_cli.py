"""The sweep commands end to end: run a preset with overrides, show, list, presets, trials
--where and trial rerun (tiny generated data)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from numsweep.cli import cli

TINY = ["n_train=300", "n_val=100", "batch_size=50", "hidden=16", "eval_train=100",
        "coarse.cycles=1", "fine.n_trials=5", "fine.cycles=1", "final.n_val=100",
        "final.n_train=300", "final.cycles=2"]


def invoke(*args: object):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture(scope="module")
def swept(tmp_path_factory: pytest.TempPathFactory, tiny_npz: Path) -> str:
    db = f"sqlite:///{tmp_path_factory.mktemp('cli') / 's.db'}"
    result = invoke("sweep", "run", "lambda-search", *TINY, "fine.pruner=median",
                    "--jobs", "2", "--db", db, "--data", tiny_npz)
    assert result.exit_code == 0, result.output
    assert "stage coarse: 8 complete" in result.output
    assert "stage final: 1 complete" in result.output and "test_acc" in result.output
    return db


def test_sweep_show_explains_the_ranges_each_stage_chose(swept: str) -> None:
    result = invoke("sweep", "show", "lambda-search", "--db", swept)
    assert result.exit_code == 0, result.output
    out = result.output
    assert "stage coarse [grid]" in out and "lam: 1e-05 to 0.1 (log, grid of 8)" in out
    assert "stage fine [random]" in out and "why: lam: best 3 of coarse span" in out
    assert "widened by 1 grid step" in out
    fine = out.split("stage fine")[1].split("stage final")[0]
    assert "space: lam: " in fine and "grid" not in fine.split("why:")[0]  # random draws
    final = out.split("stage final")[1].split("best trials:")[0]
    assert "space:" not in final  # the best stage searches nothing
    assert "stage final [best]" in out and "why: best of coarse, fine" in out
    assert "best trials:" in out


def test_sweep_list_and_presets(swept: str) -> None:
    listed = invoke("sweep", "list", "--db", swept)
    assert "lambda-search" in listed.output and "complete" in listed.output
    presets = invoke("sweep", "presets")
    assert presets.exit_code == 0 and "\nlambda-search\t" in presets.output


def test_trials_where_sort_and_limit(swept: str) -> None:
    result = invoke("trials", "--sweep", "lambda-search", "--where", "lam<0.001", "--sort",
                    "lam", "--asc", "--limit", "2", "--format", "json", "--db", swept)
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)
    assert len(rows) == 2 and all(r["lam"] < 0.001 for r in rows)
    assert rows[0]["lam"] <= rows[1]["lam"]
    bad = invoke("trials", "--where", "lam~1", "--db", swept)
    assert bad.exit_code == 1 and "--where expects" in bad.output


def test_trial_rerun_gives_the_same_metrics(swept: str) -> None:
    result = invoke("trial", "rerun", "2", "--db", swept)
    assert result.exit_code == 0, result.output
    assert "same metrics as trial 2" in result.output


@pytest.mark.parametrize(("args", "message"), [
    (["lambda-search", "fine.n_trials=0"], "stages.fine.n_trials=0 must be a positive integer"),
    (["lambda-search", "lam=-1"], "fixed.lam=-1.0 is invalid"),
    (["nope"], "nope: no such spec file or preset"),
    (["lambda-search", "--budget", "soon"], "--budget='soon' must be a positive duration"),
])
def test_sweep_run_errors_are_one_line(tmp_path: Path, tiny_npz: Path, args: list[str],
                                       message: str) -> None:
    result = invoke("sweep", "run", *args, "--db", f"sqlite:///{tmp_path / 'e.db'}",
                    "--data", tiny_npz)
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [f"Error: {result.output.strip()[7:]}"]
    assert message in result.output


def test_budget_prints_the_plan(tmp_path: Path, tiny_npz: Path) -> None:
    result = invoke("sweep", "run", "lambda-search", *TINY, "--budget", "10m", "--jobs", "1",
                    "--db", f"sqlite:///{tmp_path / 'b.db'}", "--data", tiny_npz)
    assert result.exit_code == 0, result.output
    assert "budget 600 s: estimate" in result.output and "fits" in result.output


def test_sweep_delete_asks_then_removes_the_sweep_its_studies_and_files(
        tmp_path: Path, tiny_npz: Path) -> None:
    import optuna

    from numsweep.storage import Storage

    spec = tmp_path / "d.toml"
    spec.write_text('name = "gone"\n[fixed]\nhidden = [8]\nn_train = 300\nn_val = 100\n'
                    'batch_size = 50\ncycles = 1\neval_train = 100\n[space]\n'
                    'lam = { type = "float", low = 1e-4, high = 1e-2, log = true, grid = 2 }\n'
                    '[[stages]]\nname = "g"\nsampler = "grid"\n')
    db = tmp_path / "d.db"
    run = ["sweep", "run", spec, "--db", db, "--data", tiny_npz, "--jobs", "1"]
    assert invoke(*run).exit_code == 0
    assert invoke("train", "n_train=300", "n_val=100", "cycles=1", "--db", db, "--data",
                  tiny_npz).exit_code == 0  # another sweep: left alone
    folder = tmp_path / "d.db.checkpoints" / "gone"
    assert list((folder / "weights").glob("*.npz"))
    again = CliRunner().invoke(cli, [str(a) for a in run])
    assert again.exit_code == 1 and "numsweep sweep delete gone" in again.output

    answered_no = CliRunner().invoke(cli, ["sweep", "delete", "gone", "--db", str(db)],
                                     input="n\n")
    assert answered_no.exit_code == 1 and "2 trials" in answered_no.output
    assert "gone" in [s.name for s in Storage(str(db)).list_sweeps()]

    result = invoke("sweep", "delete", "gone", "--yes", "--db", db)
    assert result.exit_code == 0, result.output
    assert result.output.startswith("deleted sweep 'gone': 2 trials")
    storage = Storage(str(db))
    assert [s.name for s in storage.list_sweeps()] == ["train"]
    assert len(storage.get_trials()) == 1 and not folder.exists()
    assert "gone/g" not in optuna.get_all_study_names(f"sqlite:///{db}")
    assert invoke(*run).exit_code == 0  # the name starts over
    assert [t.number for t in Storage(str(db)).get_trials("gone")] == [0, 1]
