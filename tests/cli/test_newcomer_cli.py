"""The first hour with the command line: each stumble a newcomer met, guarded."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from numsweep.cli import cli
from numsweep.storage import Storage

EXAMPLE = Path(__file__).parents[2] / "examples" / "lambda-coarse.toml"
SMALL = ("n_train=300", "n_val=100", "cycles=1", "batch_size=50", "hidden=8")


@pytest.fixture(scope="module")
def swept(tmp_path_factory: pytest.TempPathFactory, tiny_npz: Path) -> tuple[str, str]:
    """A small lambda sweep in a database given as a plain path; (path, output of the run)."""
    db = str(tmp_path_factory.mktemp("cli") / "runs.db")
    result = CliRunner().invoke(cli, ["sweep", "run", str(EXAMPLE), *SMALL, "coarse.n_trials=3",
                                      "--jobs", "1", "--db", db, "--data", str(tiny_npz)],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return db, result.output


def test_sweep_run_ends_with_where_and_what_next(swept: tuple[str, str]) -> None:
    db, output = swept
    assert "{'lam'" not in output  # no raw dict
    assert "best val_acc" in output and "lam=" in output
    assert f"results: sweep lambda-coarse in sqlite:///{db}" in output
    assert f"next: numsweep sweep show lambda-coarse --db {db}" in output
    assert "numsweep report lambda-coarse -o " in output


@pytest.mark.parametrize("option", [("--where", "lamda<0.01"), ("--sort", "lamda")])
def test_misspelt_column_is_one_clear_error(swept: tuple[str, str], option: tuple[str, str]
                                            ) -> None:
    db, _ = swept
    result = CliRunner().invoke(cli, ["trials", "--db", db, *option])
    assert result.exit_code == 1
    assert result.output.strip() == (f"Error: unknown column 'lamda' in {option[0]} "
                                     "(did you mean 'lam'?)")


def test_trials_table_fits_80_columns(swept: tuple[str, str]) -> None:
    db, _ = swept
    result = CliRunner().invoke(cli, ["trials", "--db", db], env={"COLUMNS": "80"})
    assert result.exit_code == 0
    lines = result.output.splitlines()
    assert max(len(line) for line in lines) <= 80
    assert "…" not in result.output  # nothing cut: columns left out instead
    assert "COMPLETE" in result.output and "trial_id" in result.output
    assert "see all with --wide or --format csv" in " ".join(lines)
    wide = CliRunner().invoke(cli, ["trials", "--db", db, "--wide"], env={"COLUMNS": "80"})
    assert "train_seconds" in wide.output and "columns left out" not in wide.output


def test_report_of_train_trials(tmp_path: Path, tiny_npz: Path) -> None:
    db = str(tmp_path / "t.db")
    for lam in ("0.001", "0.01"):
        result = CliRunner().invoke(cli, ["train", *SMALL, f"lam={lam}", "--db", db, "--data",
                                          str(tiny_npz)], catch_exceptions=False)
        assert result.exit_code == 0, result.output
    result = CliRunner().invoke(cli, ["report", "train", "-o", str(tmp_path / "r"), "--db", db],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "wrote" in result.output


def test_train_refuses_a_network_that_does_not_fit_before_training(tmp_path: Path,
                                                                    tiny_npz: Path) -> None:
    db = str(tmp_path / "t.db")
    small = [a for a in SMALL if not a.startswith("hidden=")]  # an MLP's
    result = CliRunner().invoke(cli, ["train", "model=convnet", "f=5", *small, "--db", db,
                                      "--data", str(tiny_npz)])
    assert result.exit_code == 1
    assert result.output.startswith("Error: ") and "f=5" in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert Storage(db).get_trials() == []  # nothing stored, no FAILED trial


def test_a_bug_is_not_hidden_as_a_one_line_error(monkeypatch: pytest.MonkeyPatch,
                                                 tmp_path: Path) -> None:
    def broken(*_args: object, **_kwargs: object) -> None:
        raise ValueError("a bug")

    monkeypatch.setattr("numsweep.analysis.queries.find_trials", broken)  # the CLI calls it
    result = CliRunner().invoke(cli, ["trials", "--db", str(tmp_path / "t.db")])
    assert isinstance(result.exception, ValueError)  # a traceback, not "Error: a bug"
    assert "Error: a bug" not in result.output


def test_the_columns_a_query_names_stay_in_a_narrow_table(swept: tuple[str, str]) -> None:
    """`--where`/`--sort` on a column: it is shown, before the columns nobody asked about."""
    db, _ = swept
    result = CliRunner().invoke(cli, ["trials", "--db", db, "--where", "lam<1",
                                      "--sort", "param_count"], env={"COLUMNS": "60"})
    assert result.exit_code == 0, result.output
    header = result.output.splitlines()[1]
    assert "lam" in header and "param_count" in header
    assert max(len(line) for line in result.output.splitlines()) <= 60


def test_train_refuses_parameters_of_another_model_in_one_line(tmp_path: Path,
                                                                tiny_npz: Path) -> None:
    db = str(tmp_path / "t.db")
    result = CliRunner().invoke(cli, ["train", "model=mlp", "f=5", "nf=7", "filter_size=9",
                                      *SMALL, "--db", db, "--data", str(tiny_npz)])
    assert result.exit_code == 1
    assert result.output.startswith("Error: ") and "f=5 is invalid" in result.output
    assert "model=mlp" in result.output and len(result.output.strip().splitlines()) == 1
    assert Storage(db).get_trials() == []
