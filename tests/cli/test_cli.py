"""The command line: exit codes, one-line errors and the skeleton's end-to-end path."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from numsweep.cli import cli
from numsweep.storage import Storage

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
    Storage(f"sqlite:///{tmp_path / 'e.db'}").dispose()  # an empty database: reading needs one
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


def test_usage_errors_exit_1_as_every_error_of_what_was_asked(runner: CliRunner) -> None:
    for args in (["train", "lam"], ["sweep", "run"], ["trials", "--format", "xml"],
                 ["train", "--bogus"], ["plot", "nonsense"], ["sweep"], []):
        result = invoke(runner, *args)
        assert result.exit_code == 1, (args, result.exit_code)  # was: click's 2
    assert invoke(runner, "train", "lam=-1").exit_code == 1  # a library error, as before
    assert invoke(runner, "train", "--help").exit_code == 0


def test_every_command_has_help_with_an_example(runner: CliRunner) -> None:
    for args in (["train"], ["sweep", "run"], ["sweep", "list"], ["trials"], ["plot", "bars"]):
        result = invoke(runner, *args, "--help")
        assert result.exit_code == 0 and "Example:" in result.output, args


def test_trials_of_several_sweeps(runner: CliRunner, tmp_path: Path) -> None:
    from tests.analysis.conftest import build_db

    db = f"sqlite:///{tmp_path / 'demo.db'}"
    build_db(db).dispose()
    result = invoke(runner, "trials", "--sweep", "archs", "--sweep", "range", "--db", db,
                    "--format", "csv")
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO(result.output)))
    assert {r["sweep"] for r in rows} == {"archs", "range"} and len(rows) == 12
    table = invoke(runner, "trials", "--sweep", "archs", "--sweep", "range", "--db", db)
    assert table.exit_code == 0 and "sweep" in table.output.splitlines()[1]
    result = invoke(runner, "trials", "--sweep", "archs", "--sweep", "nope", "--db", db)
    assert result.exit_code == 1 and "no sweep named 'nope'" in result.output


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

    Storage(str(tmp_path / "q.db")).dispose()  # sweep list reads a database that exists
    code = ("import sys\nfrom numsweep.cli import cli\n"
            f"try:\n    cli.main({args!r} + ['--db', {str(tmp_path / 'q.db')!r}]"
            f" if {args!r} == ['sweep', 'list'] else {args!r}, standalone_mode=False)\n"
            "finally:\n"
            f"    print(sorted(m for m in {unloaded!r} if m in sys.modules))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip().splitlines()[-1] == "[]", out
