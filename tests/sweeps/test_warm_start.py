"""Warm start: a stage's first configurations are the best of another sweep or stage, in this
database or another; stated in the stage's note and ``sweep show``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from numsweep.cli import cli
from numsweep.storage import Storage, TrialState
from numsweep.sweeps import SweepSpecError, parse_spec, run_sweep

FIXED = {"n_train": 200, "n_val": 100, "batch_size": 50, "cycles": 1, "eval_train": 100,
         "curve_points": 2}


def spec_of(name: str, stages: list[dict[str, Any]], space: dict[str, Any]) -> Any:
    fixed = {k: v for k, v in FIXED.items() if k not in space}
    return parse_spec({"name": name, "seed": 2, "fixed": fixed, "space": space,
                       "stages": stages}, f"{name}.toml")


SOURCE_SPACE = {"hidden": {"choices": [[2], [4], [16], [32]]},
                "lam": {"low": 1e-4, "high": 1e-1, "log": True, "grid": 2}}


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory, tiny_npz: Path) -> Storage:
    """A finished grid sweep "src" (8 trials) in a database of its own."""
    storage = Storage(f"sqlite:///{tmp_path_factory.mktemp('src') / 'src.db'}")
    run_sweep(spec_of("src", [{"name": "grid", "sampler": "grid"}], SOURCE_SPACE), storage,
              data_source=str(tiny_npz), jobs=1)
    return storage


def test_the_best_configurations_of_another_database_are_enqueued_first(
        source: Storage, tmp_path: Path, tiny_npz: Path) -> None:
    ranked = sorted(source.get_trials("src"), key=lambda t: (-t.metrics["val_acc"], t.id))
    # this stage searches only hidden widths up to 16: better trials with 32 are left out
    space = {"hidden": {"choices": [[2], [4], [16]]},
             "lam": {"low": 1e-4, "high": 1e-1, "log": True}}
    inside = [t for t in ranked if t.params["hidden"] != [32]][:2]
    outside = sum(t.params["hidden"] == [32] for t in ranked[: ranked.index(inside[1])])
    spec = spec_of("warm", [{"name": "go", "sampler": "random", "n_trials": 3,
                             "warm_start": {"sweep": "src", "stage": "grid", "top_k": 2,
                                            "db": source.url}}], space)
    db = f"sqlite:///{tmp_path / 'w.db'}"
    run_sweep(spec, Storage(db), data_source=str(tiny_npz), jobs=1)
    trials = Storage(db).get_trials("warm")
    assert len(trials) == 3 and all(t.state is TrialState.COMPLETE for t in trials)
    for mine, theirs in zip(trials[:2], inside, strict=True):
        assert mine.params["hidden"] == theirs.params["hidden"]
        assert mine.params["lam"] == pytest.approx(theirs.params["lam"])
    stage = Storage(db).get_stage(Storage(db).get_sweep("warm").id, 0)
    assert stage is not None
    assert f"2 configurations enqueued first (trials {inside[0].id}, {inside[1].id})" in stage.note
    if outside:
        assert f"{outside} better ones outside this stage's space left out" in stage.note
    shown = CliRunner().invoke(cli, ["sweep", "show", "warm", "--db", db])
    assert shown.exit_code == 0, shown.output
    assert f"warm start: sweep src stage grid in {source.url}, top 2" in shown.output
    assert "enqueued first" in shown.output


def test_a_missing_source_is_one_line_and_stores_nothing(source: Storage, tmp_path: Path,
                                                         tiny_npz: Path) -> None:
    space = {"lam": {"low": 1e-4, "high": 1e-1, "log": True}}
    db = Storage(f"sqlite:///{tmp_path / 'm.db'}")
    (tmp_path / "junk.db").write_bytes(b"not a database at all" * 100)
    for warm, message in (
            ({"sweep": "nope", "db": source.url}, "stages.go.warm_start: no sweep named 'nope'"),
            ({"sweep": "src", "stage": "fine", "db": source.url},
             "stages.go.warm_start: sweep 'src' has no stage 'fine' (stages: grid)"),
            ({"sweep": "src", "db": str(tmp_path / "gone.db")},
             "stages.go.warm_start.db: no database file"),
            ({"sweep": "src", "db": str(tmp_path / "junk.db")},
             "stages.go.warm_start: cannot open")):
        spec = spec_of("m", [{"name": "go", "sampler": "tpe", "n_trials": 2,
                              "warm_start": warm}], space)
        with pytest.raises(SweepSpecError) as info:
            run_sweep(spec, db, data_source=str(tiny_npz), jobs=1)
        assert str(info.value).startswith("m.toml: ") and message in str(info.value)
        assert "\n" not in str(info.value)
    assert db.list_sweeps() == [] and not (tmp_path / "gone.db").exists()


@pytest.mark.parametrize(("stage", "message"), [
    ({"sampler": "grid"}, "warm_start: a grid stage runs a fixed list"),
    ({"sampler": "tpe", "n_trials": 2, "warm_start": {"sweep": "a", "top": 3}},
     "warm_start.top: unknown key"),
    ({"sampler": "tpe", "n_trials": 2, "warm_start": {"sweep": "a", "top_k": 0}},
     "warm_start.top_k=0 must be a positive integer"),
    ({"sampler": "tpe", "n_trials": 2, "warm_start": {"stage": "a"}},
     "warm_start.sweep must name a sweep"),
    ({"sampler": "tpe", "n_trials": 2, "warm_start": {"sweep": "x", "stage": "s"}},
     "warm_start: from this sweep itself it needs 'stage', an earlier stage"),
])
def test_warm_start_spec_errors(stage: dict[str, Any], message: str) -> None:
    stage = {"name": "s", "warm_start": {"sweep": "a"}, **stage}
    with pytest.raises(SweepSpecError, match=message):
        spec_of("x", [stage], {"lam": {"low": 1e-4, "high": 1e-1, "log": True, "grid": 2}})


def test_a_stage_warm_starts_from_an_earlier_stage_of_its_sweep(tmp_path: Path,
                                                                tiny_npz: Path) -> None:
    spec = spec_of("own", [{"name": "grid", "sampler": "grid"},
                           {"name": "go", "sampler": "tpe", "n_trials": 2,
                            "warm_start": {"sweep": "own", "stage": "grid", "top_k": 5}}],
                   SOURCE_SPACE)
    storage = Storage(f"sqlite:///{tmp_path / 'own.db'}")
    run_sweep(spec, storage, data_source=str(tiny_npz), jobs=1)
    grid = storage.get_trials("own", stage="grid")
    best = max(grid, key=lambda t: (t.metrics["val_acc"], -t.id))
    first = storage.get_trials("own", stage="go")[0]
    assert (first.params["hidden"], first.params["lam"]) == (best.params["hidden"],
                                                            pytest.approx(best.params["lam"]))
    # top_k beyond n_trials: as many as the stage runs, and the note says so
    stage = storage.get_stage(storage.get_sweep("own").id, 1)
    assert stage is not None and "2 configurations enqueued first" in stage.note


def test_another_database_is_read_with_the_sweeps_own_db_wait(tmp_path: Path) -> None:
    """The source database is opened with the --db-wait of the database the sweep runs in
    (was: the default, so a source that went away stopped the sweep sooner, or later, than
    asked)."""
    from numsweep.sweeps.spec import WarmStart
    from numsweep.sweeps.warm_start import source_storage

    Storage(f"sqlite:///{tmp_path / 'src.db'}")  # made, empty
    here = Storage(f"sqlite:///{tmp_path / 'here.db'}", db_wait=3.5)
    warm = WarmStart(sweep="src", db=str(tmp_path / "src.db"))
    other = source_storage(warm, here)
    assert other is not here and other.read_only and other.db_wait == 3.5
