"""The command line: exit codes, one-line errors and the skeleton's end-to-end path."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from numsweep.cli import cli

EXAMPLE = Path(__file__).parents[2] / "examples" / "lambda-coarse.toml"


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


def invoke(runner: CliRunner, *args: str):
    return runner.invoke(cli, [str(a) for a in args], catch_exceptions=False)


def test_lambda_sweep_trials_and_chart(runner: CliRunner, tmp_path: Path,
                                       tiny_npz: Path) -> None:
    db = f"sqlite:///{tmp_path / 't.db'}"
    result = invoke(runner, "sweep", "run", EXAMPLE, "n_train=400", "n_val=100", "cycles=1",
                    "batch_size=50", "hidden=16", "--jobs", "2", "--db", db, "--data", tiny_npz)
    assert result.exit_code == 0, result.output
    assert "stage coarse: 8 complete" in result.output

    result = invoke(runner, "trials", "--sweep", "lambda-coarse", "--db", db, "--format", "csv")
    assert result.exit_code == 0
    rows = list(csv.DictReader(io.StringIO(result.output)))
    assert len(rows) == 8
    assert {"lam", "val_acc", "test_acc", "train_seconds", "updates"} <= set(rows[0])
    assert sorted(float(r["lam"]) for r in rows)[0] == pytest.approx(1e-5)
    table = invoke(runner, "trials", "--sweep", "lambda-coarse", "--db", db).output
    assert all(c in table for c in ("train_acc", "val_acc", "test_acc", "train_seconds"))

    png = tmp_path / "bars.png"
    result = invoke(runner, "plot", "bars", "--sweep", "lambda-coarse", "--metric", "val_acc",
                    "-o", png, "--db", db)
    assert result.exit_code == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_train_json(runner: CliRunner, tmp_path: Path, tiny_npz: Path) -> None:
    db = f"sqlite:///{tmp_path / 't.db'}"
    result = invoke(runner, "train", "n_train=300", "n_val=100", "batch_size=50", "cycles=1",
                    "--json", "--db", db, "--data", tiny_npz)
    assert result.exit_code == 0
    record = json.loads(result.stdout)
    assert record["updates"] == 24 and 0 <= record["test_acc"] <= 1
    listed = invoke(runner, "trials", "--sweep", "train", "--db", db, "--format", "json")
    assert json.loads(listed.stdout)[0]["trial_id"] == record["trial_id"]


def test_the_table_of_one_trained_trial_shows_the_parameters_it_set(
        runner: CliRunner, tmp_path: Path, tiny_npz: Path) -> None:
    db = f"sqlite:///{tmp_path / 't.db'}"
    result = invoke(runner, "train", "lam=0.01", "n_train=300", "n_val=100", "batch_size=50",
                    "cycles=1", "--db", db, "--data", tiny_npz)
    assert result.exit_code == 0, result.output
    table = invoke(runner, "trials", "--sweep", "train", "--db", db, "--wide").output
    head = table.splitlines()[1]
    for name in ("lam", "n_train", "n_val", "batch_size", "cycles"):
        assert name in head, table
    for name in ("eta_max", "optimizer", "data_seed"):  # defaults, and the resolved data seed
        assert name not in head, table


@pytest.mark.parametrize(("args", "message"), [
    (["train", "lam=-1"], "lam=-1.0 is invalid"),
    (["train", "bogus=1"], "unknown parameter 'bogus'"),
    (["train", "--data", "/nonexistent.npz"], "data not found: /nonexistent.npz"),
    (["sweep", "run", "/nonexistent.toml"], "no such spec file"),
    (["trials", "--sweep", "nope"], "no sweep named 'nope'"),
    (["trials", "--state", "sleepy"], "unknown trial state"),
    (["plot", "bars", "--sweep", "nope", "-o", "x.png"], "no sweep named 'nope'"),
])
def test_library_errors_exit_1_with_one_line(runner: CliRunner, tmp_path: Path, args: list,
                                             message: str) -> None:
    result = invoke(runner, *args, "--db", f"sqlite:///{tmp_path / 'e.db'}")
    assert result.exit_code == 1
    assert message in result.output
    assert result.output.strip().count("\n") == 0
    assert "Traceback" not in result.output


def test_unknown_metric_and_bad_format(runner: CliRunner, tmp_path: Path,
                                       tiny_npz: Path) -> None:
    db = f"sqlite:///{tmp_path / 't.db'}"
    invoke(runner, "train", "n_train=300", "n_val=100", "batch_size=50", "cycles=1", "--db", db,
           "--data", tiny_npz)
    result = invoke(runner, "plot", "bars", "--sweep", "train", "--metric", "nope", "-o",
                    tmp_path / "x.png", "--db", db)
    assert result.exit_code == 1 and "unknown metric 'nope'" in result.output
    result = invoke(runner, "plot", "bars", "--sweep", "train", "-o", tmp_path / "x.gif",
                    "--db", db)
    assert result.exit_code == 1 and "unsupported chart format" in result.output


def test_usage_errors_exit_2(runner: CliRunner) -> None:
    assert invoke(runner, "train", "lam").exit_code == 2
    assert invoke(runner, "sweep", "run").exit_code == 2
    assert invoke(runner, "trials", "--format", "xml").exit_code == 2


def test_every_command_has_help_with_an_example(runner: CliRunner) -> None:
    for args in (["train"], ["sweep", "run"], ["sweep", "list"], ["trials"], ["plot", "bars"]):
        result = invoke(runner, *args, "--help")
        assert result.exit_code == 0 and "Example:" in result.output, args


@pytest.mark.parametrize(("args", "unloaded"), [
    (["--help"], ("pandas", "matplotlib", "sqlalchemy", "optuna", "numpy")),
    (["sweep", "--help"], ("pandas", "matplotlib", "sqlalchemy", "optuna", "numpy")),
    (["sweep", "list"], ("pandas", "matplotlib", "optuna", "numpy")),
])
def test_quick_commands_load_no_heavy_library(tmp_path: Path, args: list[str],
                                              unloaded: tuple[str, ...]) -> None:
    """Start-up time (benchmarks/cli_startup.py) comes from imports: these commands must
    not load what they do not use."""
    import subprocess
    import sys

    code = ("import sys\nfrom numsweep.cli import cli\n"
            f"try:\n    cli.main({args!r} + ['--db', {str(tmp_path / 'q.db')!r}]"
            f" if {args!r} == ['sweep', 'list'] else {args!r}, standalone_mode=False)\n"
            "finally:\n"
            f"    print(sorted(m for m in {unloaded!r} if m in sys.modules))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip().splitlines()[-1] == "[]", out
