"""The report: self-contained HTML (opened in headless Chromium) and Markdown with its images."""

from __future__ import annotations

import base64
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from numsweep.analysis import charts
from numsweep.analysis.queries import load_trials
from numsweep.analysis.report import (
    build_report,
    searched_parameters,
    tied_parameters,
    trials_of_stages_varying,
)
from numsweep.storage import StagePlan, Storage, describe_space
from tests.analysis.conftest import _trial

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def lambda_report(demo_db: str, tmp_path_factory: pytest.TempPathFactory):
    return build_report(demo_db, "lambda", tmp_path_factory.mktemp("report"))


def test_html_is_self_contained_with_tables_settings_and_versions(lambda_report) -> None:
    page = lambda_report.html.read_text()
    titles = [c.title for c in lambda_report.charts]
    assert any("against lam" in t for t in titles)
    assert any("Learning curves" in t for t in titles)
    assert any("per configuration" in t for t in titles)
    # small stages (the coarse grid's 5 complete trials, the fine stage's 3) are drawn whole
    assert {"curves-coarse.png", "curves-fine.png"} <= {c.file for c in lambda_report.charts}
    images = re.findall(r'<img alt="[^"]*" src="data:image/png;base64,([^"]+)"', page)
    assert len(images) == len(lambda_report.charts) >= 5
    assert all(base64.b64decode(i)[:4] == b"\x89PNG" for i in images)
    assert 'src="http' not in page and "<link" not in page  # nothing fetched from outside
    assert "lam: 1e-05 to 0.1 (log, grid of 5)" in page
    assert "narrowed around the coarse best" in page
    assert "Best trials of stage coarse" in page and "Best trials of stage fine" in page
    assert "Failed and pruned trials" in page and "diverged" in page
    assert "<th>training accuracy (%)</th>" in page
    assert "<th>trial id</th>" in page  # the id that `numsweep plot curves --trial` takes
    assert "10 (8 complete, 1 failed, 1 running)" in page
    for name in ("optuna", "numpy", "matplotlib", "python"):
        assert f"<td>{name}</td>" in page
    assert "&quot;cycles&quot;: 1" in page  # the sweep's settings


def test_markdown_links_images_that_exist(lambda_report) -> None:
    text = lambda_report.markdown.read_text()
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text)
    assert len(links) == len(lambda_report.charts)
    for link in links:
        assert (lambda_report.markdown.parent / link).read_bytes()[:4] == b"\x89PNG"
    assert "| 0 | coarse | grid | lam: 1e-05 to 0.1 (log, grid of 5) |" in text


def test_range_tests_are_reported_without_a_ranking_metric(demo_db: str,
                                                           tmp_path: Path) -> None:
    report = build_report(demo_db, "range", tmp_path)
    files = {c.file for c in report.charts}
    assert {"range-test-lr.png", "range-test-batch.png"} <= files


def test_describe_space() -> None:
    assert describe_space({"f": {"choices": [2, 4]}, "lam": {"low": 1e-3, "high": 0.1}}) == \
        "f: one of 2, 4; lam: 0.001 to 0.1"
    assert describe_space({}) == "(nothing searched)"
    stored = {"space": {"f,nf": {"type": "categorical", "choices": [[4, 10], [8, 40]]}},
              "fixed": {"cycles": 3}, "planned": 0, "reused": [4, 5]}
    assert StagePlan.from_dict(stored).describe() == (
        "f,nf: one of [4,10], [8,40]; fixed cycles=3; 0 new trials planned; "
        "2 earlier trials reused")


def _loaded_images(page: Path, profile: Path) -> str:
    result = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--no-first-run", f"--user-data-dir={profile}", "--dump-dom", page.as_uri()],
        capture_output=True, text=True, timeout=120, check=True)
    found = re.search(r'<body[^>]*data-images-loaded="(\d+/\d+)"', result.stdout)
    assert found, result.stdout[:500]
    return found.group(1)


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed "
                                             "(apt-get install chromium)")
def test_report_opens_in_headless_chromium_with_every_image(lambda_report,
                                                            tmp_path: Path) -> None:
    n = len(lambda_report.charts)
    assert _loaded_images(lambda_report.html, tmp_path / "profile") == f"{n}/{n}"
    # the check notices a broken image
    broken = tmp_path / "broken.html"
    page = lambda_report.html.read_text()
    broken.write_text(page.replace("base64,iVBOR", "base64,AAAA", 1))
    assert _loaded_images(broken, tmp_path / "profile2") == f"{n - 1}/{n}"


def test_a_value_each_stage_fixes_gets_no_search_charts(tmp_path: Path) -> None:
    # modular-nets' shape: lam, model and lr differ between stages but are fixed in each;
    # only dropout is searched, in the first stage
    rng = np.random.default_rng(0)
    storage = Storage(f"sqlite:///{tmp_path / 's.db'}")
    sweep = storage.get_or_create_sweep("settings", {"name": "settings"}, seed=0)
    fc = storage.get_or_create_stage(sweep.id, 0, "fc", "grid",
                                     {"dropout": {"choices": [0.0, 0.5]}})
    conv = storage.get_or_create_stage(sweep.id, 1, "conv", "list", {})
    for n, dropout in enumerate((0.0, 0.5)):
        _trial(storage, sweep.id, fc.id, n, {"lam": 1e-4, "dropout": dropout}, 0.5 - dropout / 10,
               rng)
    _trial(storage, sweep.id, conv.id, 2, {"lam": 1e-3, "model": "convnet", "eta_max": 1e-3},
           0.6, rng)
    files = {c.file for c in build_report(storage, "settings", tmp_path / "r").charts}
    assert "lambda.png" not in files and "importance.png" not in files
    assert {"curves-fc.png", "optimizers.png"} <= files  # the searched stage, drawn whole
    done = load_trials(storage, "settings")
    assert searched_parameters(done, ["lam", "dropout", "model", "eta_max"]) == ["dropout"]
    # the dropout comparison averages the fc stage's networks only, not the conv one
    assert list(trials_of_stages_varying(done, ["dropout"])["stage"]) == ["fc", "fc"]


@pytest.mark.parametrize(("space", "configs", "importance"), [
    # tied in one space entry: f and nf vary together, importance would split one effect
    # (stored as the sweep runner stores a stage: the ranges beside what it planned)
    ({"space": {"f,nf": {"choices": [[4, 10], [8, 40], [4, 40]]}}, "fixed": {}, "planned": 3,
      "reused": [], "configs": [], "n_configs": 3},
     [{"f": 4, "nf": 10}, {"f": 8, "nf": 40}, {"f": 4, "nf": 40}], False),
    # two entries searched by TPE: every trial has its own lam and eps
    ({"lam": {"type": "float", "low": 1e-4, "high": 1e-2, "log": True},
      "eps": {"type": "float", "low": 0.0, "high": 0.2}},
     [{"lam": 10 ** -(2 + k / 3), "eps": 0.05 * k} for k in range(5)], True),
])
def test_importance_only_for_independently_searched_parameters(
        tmp_path: Path, space: dict, configs: list[dict], importance: bool) -> None:
    rng = np.random.default_rng(0)
    storage = Storage(f"sqlite:///{tmp_path / 's.db'}")
    sweep = storage.get_or_create_sweep("s", {"name": "s"}, seed=0)
    stage = storage.get_or_create_stage(sweep.id, 0, "search", "tpe", space)
    for n, params in enumerate(configs):
        _trial(storage, sweep.id, stage.id, n, {"model": "convnet", **params},
               0.5 + 0.03 * ((n * 7) % 5), rng)
    final = storage.get_or_create_stage(sweep.id, 1, "final", "best", {})
    _trial(storage, sweep.id, final.id, len(configs), {"model": "convnet", **configs[0]}, 0.9,
           rng)  # longer: not a sample of the search
    report = build_report(storage, "s", tmp_path / "r")
    assert ("importance.png" in {c.file for c in report.charts}) is importance
    if importance:
        done = load_trials(storage, "s")
        searched = searched_parameters(done, ["lam", "eps"])
        assert len(trials_of_stages_varying(done, searched)) == len(configs)


def test_importance_scores_a_tied_space_entry_once(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    # the optimizers preset's space: optimizer and its rate tied, dropout apart
    rng = np.random.default_rng(0)
    storage = Storage(f"sqlite:///{tmp_path / 's.db'}")
    sweep = storage.get_or_create_sweep("s", {"name": "s"}, seed=0)
    space = {"space": {"optimizer,eta_max": {"choices": [["adam", 1e-3], ["adagrad", 1e-2],
                                                         ["rmsprop", 1e-3]]},
                       "dropout": {"choices": [0.0, 0.5]}},
             "fixed": {}, "planned": 6, "reused": []}
    stage = storage.get_or_create_stage(sweep.id, 0, "compare", "grid", space)
    n = 0
    for opt, lr in (("adam", 1e-3), ("adagrad", 1e-2), ("rmsprop", 1e-3)):
        for dropout in (0.0, 0.5):
            _trial(storage, sweep.id, stage.id, n,
                   {"optimizer": opt, "eta_max": lr, "dropout": dropout},
                   0.5 - dropout / 10 + 0.01 * n, rng)
            n += 1
    assert tied_parameters(storage.list_stages(sweep.id)) == [["optimizer", "eta_max"]]
    scored: list[list[str]] = []
    real = charts.importance_data

    def spy(*args: Any, **kwargs: Any) -> Any:
        data = real(*args, **kwargs)
        scored.append(sorted(data["param"]))
        return data

    monkeypatch.setattr(charts, "importance_data", spy)
    assert "importance.png" in {c.file for c in build_report(storage, "s", tmp_path / "r").charts}
    assert scored == [["dropout", "optimizer,eta_max"]]


def test_the_report_never_holds_the_database_password(demo_db: str, tmp_path: Path) -> None:
    storage = Storage(demo_db)
    # as opened from a server URL (the report only names the database; no server needed)
    storage.url = "postgresql://user:PASSWORD@host/db"
    storage.shown_url = "postgresql://user:***@host/db"
    rep = build_report(storage, "lambda", tmp_path / "report")
    html, markdown = rep.html.read_text(), rep.markdown.read_text()
    assert "PASSWORD" not in html and "postgresql://user:***@host/db" in html
    assert "PASSWORD" not in markdown and r"postgresql://user:\*\*\*@host/db" in markdown


def test_markdown_escapes_what_html_escapes(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    storage = Storage(f"sqlite:///{tmp_path / 'e.db'}")
    name = "<img src=x onerror=alert(1)> *bold* [link](http://x)"
    sweep = storage.get_or_create_sweep(name, {"name": name}, seed=0)
    stage = storage.get_or_create_stage(sweep.id, 0, "<b>s</b>|x", "grid",
                                        {"lam": {"choices": [1e-4, 1e-3]}})
    for n, lam in enumerate((1e-4, 1e-3)):
        _trial(storage, sweep.id, stage.id, n, {"lam": lam}, 0.5, rng)
    report = build_report(storage, name, tmp_path / "r")
    page, text = report.html.read_text(), report.markdown.read_text()
    assert "<h1>Sweep &lt;img src=x onerror=alert(1)&gt;" in page  # as before
    for raw in ("<img", "<b>", "[link](http"):
        assert raw not in text  # was: passed through to the Markdown as HTML and a link
    assert "# Sweep &lt;img src=x onerror=alert(1)&gt; \\*bold\\* \\[link\\](http://x)" in text
    assert "&lt;b&gt;s&lt;/b&gt;\\|x" in text


def test_a_stage_best_is_chosen_by_one_rule_reused_trials_included(tmp_path: Path) -> None:
    """The report names the stage's best as `sweep show` and the run's summary do: the best
    of its own complete trials and those it reuses (here a coarse trial beats fine's own)."""
    storage = Storage(f"sqlite:///{tmp_path / 'r.db'}")
    sweep = storage.get_or_create_sweep("r", {"name": "r", "seed": 0}, seed=0)
    space = {"lam": {"type": "float", "low": 1e-5, "high": 1e-1, "log": True, "grid": 3}}
    coarse = storage.get_or_create_stage(sweep.id, 0, "coarse", "grid", {"space": space})
    rng = np.random.default_rng(0)
    ids = [_trial(storage, sweep.id, coarse.id, n, {"lam": lam}, acc, rng)
           for n, (lam, acc) in enumerate([(1e-5, 0.30), (1e-3, 0.4020), (1e-1, 0.20)])]
    fine = storage.get_or_create_stage(sweep.id, 1, "fine", "random",
                                       {"space": space, "reused": [ids[1]], "planned": 1})
    own = _trial(storage, sweep.id, fine.id, 3, {"lam": 2e-3}, 0.4010, rng)
    text = build_report(storage, "r", tmp_path / "out").markdown.read_text()
    fine_row = next(line for line in text.splitlines() if line.startswith("| 1 | fine |"))
    assert f"40.20 (trial {ids[1]})" in fine_row and "1 complete; 1 reused" in fine_row
    table = text.split("Best trials of stage fine")[1].split("Best trials of stage")[0]
    rows = [line for line in table.splitlines() if line.startswith("| ") and "---" not in line]
    assert rows[1].startswith(f"| {ids[1]} (reused from coarse) |")
    assert rows[2].startswith(f"| {own} |")
    assert StagePlan.from_dict({"space": {}, "planned": 1, "reused": [3]}).describe() \
        .endswith("1 new trial planned; 1 earlier trial reused")


def test_importance_ranks_only_what_the_stages_searched(tmp_path: Path) -> None:
    """lambda-search's shape: a data seed per stage and a final stage with its own cycles
    differ between stages only: settings, not searched, so not ranked beside lam."""
    from numsweep.analysis.report import sweep_importance_data

    storage = Storage(f"sqlite:///{tmp_path / 'i.db'}")
    sweep = storage.get_or_create_sweep("i", {"name": "i", "seed": 0}, seed=0)
    space = {"lam": {"type": "float", "low": 1e-5, "high": 1e-1, "log": True, "grid": 4}}
    rng = np.random.default_rng(0)
    n = 0
    for index, (name, sampler, lams) in enumerate([
            ("coarse", "grid", [1e-5, 1e-4, 1e-3, 1e-2]), ("fine", "random", [2e-4, 5e-4]),
            ("final", "best", [5e-4])]):
        stage = storage.get_or_create_stage(sweep.id, index, name, sampler, {"space": space})
        for lam in lams:
            extra = {"cycles": 3} if name == "final" else {}
            _trial(storage, sweep.id, stage.id, n, {"lam": lam, "data_seed": 100 + index,
                                                    **extra},
                   0.45 - 0.02 * (np.log10(lam) + 3) ** 2 + 0.001 * index, rng)
            n += 1
    trials = load_trials(storage, "i")
    assert {"data_seed", "cycles", "lam"} <= set(charts.varying_parameters(trials))
    data = sweep_importance_data(trials, storage.list_stages(sweep.id))
    assert list(data["param"]) == ["lam"]
