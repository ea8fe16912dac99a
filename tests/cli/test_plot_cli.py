"""`numsweep plot ...` and `numsweep report`: files written, exit codes, one-line errors."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from numsweep.cli import cli
from tests.analysis.conftest import build_db

CHARTS = [
    ("bars", "--sweep", "archs", "--metric", "test_acc"),
    ("bars", "--sweep", "archs", "--metric", "train_seconds", "--by", "f,nf", "--top", "2"),
    ("curves", "--sweep", "optimizers", "--best", "2"),
    ("curves", "--sweep", "optimizers", "--trial", "20", "--trial", "21", "--show", "loss,acc"),
    ("lambda", "--sweep", "lambda"),
    ("optimizers", "--sweep", "optimizers"),
    ("range-test", "--sweep", "range", "--mode", "lr"),
    ("range-test", "--sweep", "range", "--mode", "batch"),
    ("importance", "--sweep", "optimizers"),
    ("pareto", "--sweep", "archs"),
    ("pareto", "--sweep", "archs", "--objectives", "val_acc:max,param_count:min", "--pick",
     "knee"),
]


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> str:
    url = f"sqlite:///{tmp_path_factory.mktemp('plotcli') / 'demo.db'}"
    build_db(url).dispose()
    return url


def invoke(*args: object) -> object:
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


@pytest.mark.parametrize("args", CHARTS, ids=lambda a: "-".join(a[:1] + a[2:3]))
def test_every_chart_writes_its_file(db: str, tmp_path: Path, args: tuple[str, ...]) -> None:
    out = tmp_path / "chart.png"
    result = invoke("plot", *args, "-o", out, "--db", db)
    assert result.exit_code == 0, result.output
    assert result.output.strip() == f"wrote {out}"
    assert out.read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize(("suffix", "magic"), [("svg", b"<?xml"), ("pdf", b"%PDF")])
def test_format_follows_the_extension(db: str, tmp_path: Path, suffix: str,
                                      magic: bytes) -> None:
    out = tmp_path / f"lam.{suffix}"
    assert invoke("plot", "lambda", "--sweep", "lambda", "-o", out, "--db", db).exit_code == 0
    assert out.read_bytes().startswith(magic)


@pytest.mark.parametrize(("args", "message"), [
    (("bars", "--sweep", "nope"), "no sweep named 'nope'"),
    (("lambda", "--sweep", "nope"), "no sweep named 'nope'"),
    (("bars", "--sweep", "archs", "--metric", "nope"), "unknown metric 'nope'"),
    (("pareto", "--sweep", "archs", "--y", "nope"), "unknown metric 'nope'"),
    (("pareto", "--sweep", "archs", "--objectives", "val_acc:up,param_count"),
     "--objectives: direction 'up' must be maximize (max) or minimize (min)"),
    (("pareto", "--sweep", "archs", "--objectives", "val_acc"),
     "a front needs two objectives or more"),
    (("importance", "--sweep", "archs", "--metric", "nope"), "unknown metric 'nope'"),
    (("lambda", "--sweep", "lambda", "--stage", "nope"), "no trials in sweep 'lambda' stage"),
    (("curves", "--sweep", "archs", "--trial", "999"), "no trial with id 999"),
    (("range-test", "--sweep", "range"), "both lr and batch range tests"),
    (("optimizers", "--sweep", "range"), "have no 'train' curve points"),
    (("bars", "--sweep", "archs", "--by", "bogus"), "unknown parameter 'bogus'"),
])
def test_errors_are_one_line_and_exit_1(db: str, tmp_path: Path, args: tuple[str, ...],
                                        message: str) -> None:
    result = invoke("plot", *args, "-o", tmp_path / "x.png", "--db", db)
    assert result.exit_code == 1
    assert message in result.output
    assert result.output.startswith("Error: ") and result.output.strip().count("\n") == 0
    assert not (tmp_path / "x.png").exists()


def test_empty_sweep_and_bad_extension(db: str, tmp_path: Path) -> None:
    empty = f"sqlite:///{tmp_path / 'empty.db'}"
    from numsweep.storage import Storage

    Storage(empty).get_or_create_sweep("void", {}, 0)
    result = invoke("plot", "bars", "--sweep", "void", "-o", tmp_path / "x.png", "--db", empty)
    assert result.exit_code == 1 and "no trials in sweep 'void'" in result.output
    result = invoke("plot", "pareto", "--sweep", "archs", "-o", tmp_path / "x.gif", "--db", db)
    assert result.exit_code == 1 and "unsupported chart format" in result.output


def test_usage_errors_exit_2(db: str) -> None:
    assert invoke("plot", "bars", "--sweep", "archs", "--db", db).exit_code == 1  # no -o
    assert invoke("plot", "curves", "-o", "x.png").exit_code == 1  # no --sweep
    assert invoke("plot", "range-test", "--sweep", "range", "--mode", "x", "-o", "x.png",
                  "--db", db).exit_code == 1
    assert invoke("plot", "nonsense").exit_code == 1
    assert invoke("report").exit_code == 1


def test_every_plot_command_and_report_have_help_with_an_example() -> None:
    for name in ("bars", "curves", "lambda", "optimizers", "range-test", "importance",
                 "pareto"):
        result = invoke("plot", name, "--help")
        assert result.exit_code == 0 and "Example:" in result.output, name
    result = invoke("report", "--help")
    assert result.exit_code == 0 and "Example:" in result.output


def test_report_writes_html_and_markdown(db: str, tmp_path: Path) -> None:
    result = invoke("report", "lambda", "-o", tmp_path / "rep", "--db", db)
    assert result.exit_code == 0, result.output
    assert "report.html" in result.output and "report.md" in result.output
    assert (tmp_path / "rep" / "report.html").stat().st_size > 10_000
    result = invoke("report", "nope", "-o", tmp_path / "rep2", "--db", db)
    assert result.exit_code == 1 and "no sweep named 'nope'" in result.output
    result = invoke("report", "lambda", "--metric", "nope", "-o", tmp_path / "r3", "--db", db)
    assert result.exit_code == 1 and "unknown metric 'nope'" in result.output


def test_repeated_sweep_draws_every_sweep(db: str, tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    from numsweep.analysis import charts

    drawn: list[object] = []
    for name in ("draw_bars", "draw_curve_panels", "draw_pareto"):
        original = getattr(charts, name)
        monkeypatch.setattr(charts, name, lambda data, *a, _f=original, **k: (
            drawn.append(data), _f(data, *a, **k))[1])
    out = tmp_path / "x.png"
    for chart in ("bars", "curves", "pareto"):
        result = invoke("plot", chart, "--sweep", "archs", "--sweep", "optimizers", "-o", out,
                        "--db", db)
        assert result.exit_code == 0, result.output
    bars, curves, pareto = drawn
    assert {c.split(":")[0] for c in bars["config"]} == {"archs", "optimizers"}
    assert {c.split(":")[0] for c in curves["label"]} == {"archs", "optimizers"}  # best of each
    assert {c.split(":")[0] for c in pareto["label"]} == {"archs", "optimizers"}


def test_repeated_single_valued_option_is_a_usage_error(db: str, tmp_path: Path) -> None:
    result = invoke("plot", "bars", "--sweep", "archs", "--stage", "grid", "--stage", "x",
                    "-o", tmp_path / "x.png", "--db", db)
    assert result.exit_code == 1 and "--stage was given 2 times; it takes one value" in \
        result.output
    result = invoke("plot", "bars", "--sweep", "archs", "-o", tmp_path / "a.png",
                    "--output", tmp_path / "b.png", "--db", db)
    assert result.exit_code == 1 and "-o/--output was given 2 times" in result.output
    assert not (tmp_path / "a.png").exists() and not (tmp_path / "b.png").exists()
    result = invoke("sweep", "show", "archs", "--top", "1", "--top", "2", "--db", db)
    assert result.exit_code == 1 and "--top was given 2 times" in result.output


def test_report_of_several_sweeps_compares_them(db: str, tmp_path: Path) -> None:
    result = invoke("report", "lambda", "archs", "-o", tmp_path / "cmp", "--db", db)
    assert result.exit_code == 0, result.output
    text = (tmp_path / "cmp" / "report.md").read_text()
    assert "# Sweeps lambda, archs compared" in text and "## Best trial of each sweep" in text
    result = invoke("report", "lambda", "nope", "-o", tmp_path / "cmp2", "--db", db)
    assert result.exit_code == 1 and "no sweep named 'nope'" in result.output


def test_plot_lineage_writes_the_population_chart_and_names_a_bad_sweep(
        tmp_path: Path) -> None:
    from tests.analysis.test_lineage import pbt_db

    storage, _ = pbt_db(tmp_path / "p.db")
    url = storage.url
    storage.dispose()
    out = tmp_path / "lineage.png"
    result = invoke("plot", "lineage", "--sweep", "p", "--color", "lam", "-o", out, "--db", url)
    assert result.exit_code == 0, result.output
    assert result.output.strip() == f"wrote {out}" and out.read_bytes()[:4] == b"\x89PNG"
    for args, message in ((("--sweep", "nope"), "no sweep named 'nope'"),
                          (("--sweep", "p", "--color", "bogus"), "unknown parameter 'bogus'")):
        result = invoke("plot", "lineage", *args, "-o", tmp_path / "x.png", "--db", url)
        assert result.exit_code == 1 and message in result.output
        assert result.output.startswith("Error: ") and result.output.strip().count("\n") == 0
        assert not (tmp_path / "x.png").exists()
