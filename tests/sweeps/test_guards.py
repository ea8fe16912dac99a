"""Checks before any work: the data a stored sweep continues on, sizes of grids, trial counts,
--jobs and data splits."""

from __future__ import annotations

import shutil
import time
import tracemalloc
from pathlib import Path

import pytest

from numsweep.engine import TrialSpec, load_dataset
from numsweep.engine.spec import RunTooLong
from numsweep.storage import RunSettings, Storage
from numsweep.sweeps import (
    SweepSpecError,
    create_sweep,
    parse_spec,
    rerun_trial,
    resume_sweep,
    run_sweep,
)
from numsweep.sweeps.guards import (
    DataMismatch,
    LongRun,
    TooManyJobs,
    check_data_sizes,
    check_jobs,
    check_run_length,
    sweep_failures,
)
from tests.conftest import write_images_npz

FIXED = {"hidden": [8], "n_train": 200, "n_val": 50, "batch_size": 50, "eval_train": 50,
         "curve_points": 2, "cycles": 1}


def grid_spec(name: str, grid: int = 2, **fixed: object) -> dict:
    return {"name": name, "seed": 1, "fixed": {**FIXED, **fixed},
            "space": {"lam": {"low": 1e-4, "high": 1e-2, "log": True, "grid": grid}},
            "stages": [{"name": "g", "sampler": "grid"}]}


@pytest.fixture(scope="module")
def other_npz(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Other images of the same shape as tiny_npz (another dataset, same sizes)."""
    return write_images_npz(tmp_path_factory.mktemp("other") / "other.npz", seed=99)


def test_resume_worker_and_rerun_refuse_other_data_but_take_the_same_bytes_elsewhere(
        tmp_path: Path, tiny_npz: Path, other_npz: Path) -> None:
    storage = Storage(f"sqlite:///{tmp_path / 'f.db'}")
    spec = parse_spec(grid_spec("fp"), "<test>")
    run_sweep(spec, storage, data_source=str(tiny_npz), jobs=1)
    assert storage.get_sweep("fp").data_fingerprint
    with pytest.raises(DataMismatch, match=r"sweep 'fp' was created with other data \(.*"
                                           r"tiny\.npz.*\) than .*other\.npz") as err:
        resume_sweep("fp", storage, data_source=str(other_npz))
    assert "\n" not in str(err.value)
    trial = storage.get_trials("fp")[0]
    with pytest.raises(DataMismatch, match=r"trials of sweep 'fp' ran on other data"):
        rerun_trial(storage, trial.id, data_source=str(other_npz))
    copy = tmp_path / "elsewhere.npz"
    shutil.copy(tiny_npz, copy)
    resume_sweep("fp", storage, data_source=str(copy))  # same bytes: fine
    assert rerun_trial(storage, trial.id, data_source=str(copy)).differences() == {}
    # a created sweep records its data; a worker with other images is refused before a trial
    created = parse_spec(grid_spec("made"), "<test>")
    create_sweep(created, storage, data_source=str(tiny_npz))
    with pytest.raises(DataMismatch):
        resume_sweep("made", storage, data_source=str(other_npz))
    assert storage.get_trials("made") == []


def test_a_sweep_stored_without_a_fingerprint_takes_the_first_data_it_runs_on(
        tmp_path: Path, tiny_npz: Path, other_npz: Path) -> None:
    storage = Storage(f"sqlite:///{tmp_path / 'o.db'}")
    spec = parse_spec(grid_spec("old"), "<test>")
    storage.get_or_create_sweep("old", spec.to_dict(), spec.seed,
                                run=RunSettings(str(tiny_npz), 1))  # as an older one stored it
    [summary] = resume_sweep("old", storage, data_source=str(tiny_npz))
    assert summary.counts == {"COMPLETE": 2}
    with pytest.raises(DataMismatch):
        resume_sweep("old", storage, data_source=str(other_npz))


def test_an_enormous_grid_is_refused_from_its_sizes_without_listing_it() -> None:
    raw = grid_spec("huge", grid=1000)
    raw["space"]["eta_max"] = {"low": 1e-3, "high": 1.0, "log": True, "grid": 1000}
    raw["space"]["hidden"] = {"type": "categorical", "choices": [[8], [16], [32]]}
    del raw["fixed"]["hidden"]
    tracemalloc.start()
    started = time.monotonic()
    try:
        with pytest.raises(SweepSpecError, match=r"stages.g: the grid has 3,000,000 points, "
                                                 r"more than 100,000"):
            parse_spec(raw, "<test>")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 5 * 2**20 and time.monotonic() - started < 5
    with pytest.raises(SweepSpecError, match=r"space.lam.grid=1000000000 is more than"):
        parse_spec(grid_spec("axis", grid=10**9), "<test>")


def test_enormous_trial_counts_are_refused() -> None:
    raw = grid_spec("many")
    raw["stages"] = [{"name": "r", "sampler": "random", "n_trials": 10**9}]
    with pytest.raises(SweepSpecError, match=r"stages.r.n_trials=1000000000 is more than"):
        parse_spec(raw, "<test>")
    raw["stages"] = [{"name": "r", "sampler": "random", "n_trials": 50_000, "replicates": 10}]
    with pytest.raises(SweepSpecError, match=r"stages.r plans 500,000 trials \(50,000 "
                                             r"configurations x 10 replicates\)"):
        parse_spec(raw, "<test>")


def test_data_sizes_are_checked_against_the_data_before_any_trial(tiny_npz: Path) -> None:
    data = load_dataset(tiny_npz)
    check_data_sizes(parse_spec(grid_spec("ok"), "<test>"), data)
    with pytest.raises(SweepSpecError, match=r"stages.g: n_train \+ n_val = 10000 \+ 50 "
                                             r"exceeds the 600 training images"):
        check_data_sizes(parse_spec(grid_spec("big", n_train=10000), "<test>"), data)
    raw = grid_spec("searched")
    del raw["fixed"]["n_val"]
    raw["space"]["n_val"] = {"type": "categorical", "choices": [50, 500]}
    with pytest.raises(SweepSpecError, match=r"200 \+ 500 exceeds"):
        check_data_sizes(parse_spec(raw, "<test>"), data)


def test_n_train_beyond_the_data_stores_no_trial(tmp_path: Path, tiny_npz: Path) -> None:
    storage = Storage(f"sqlite:///{tmp_path / 'n.db'}")
    spec = parse_spec(grid_spec("big", n_train=10000), "<test>")
    with pytest.raises(SweepSpecError, match="exceeds the 600 training images"):
        run_sweep(spec, storage, data_source=str(tiny_npz), jobs=1)
    assert storage.get_trials("big") == []


def test_jobs_are_checked_against_cores_and_memory() -> None:
    gib = 2**30
    assert check_jobs(2, 1, force=False, cores=2, memory=16 * gib) == ""
    with pytest.raises(TooManyJobs, match=r"--jobs 4 exceed the 2 cores .*pass --force") as err:
        check_jobs(4, 1, force=False, cores=2, memory=16 * gib)
    assert err.value.insist
    assert "exceed the 2 cores" in check_jobs(4, 1, force=True, cores=2, memory=16 * gib)
    with pytest.raises(TooManyJobs, match=r"--jobs 2 x --threads 2 exceed"):
        check_jobs(2, 2, force=False, cores=2, memory=16 * gib)
    with pytest.raises(TooManyJobs, match=r"more than 8 per core") as err:
        check_jobs(900, 1, force=True, cores=24, memory=1024 * gib)
    assert not err.value.insist
    with pytest.raises(TooManyJobs, match=r"--jobs 1 x --threads 100000 is more than 8 per "
                                          r"core") as err:  # was: ran, BLAS thrashing
        check_jobs(1, 100_000, force=True, cores=24, memory=1024 * gib)
    assert not err.value.insist
    with pytest.raises(TooManyJobs, match=r"need at least .* GB, more than this machine's"):
        check_jobs(16, 1, force=True, cores=4, memory=1 * gib)


def test_failures_name_the_most_common_reason(tmp_path: Path, tiny_npz: Path) -> None:
    storage = Storage(f"sqlite:///{tmp_path / 'x.db'}")
    raw = grid_spec("bad", eta_min=1e6, eta_max=1e7)
    # one at a time: in a fused group an overflowing loss may read inf where alone it reads
    # nan (the same update), and this test counts identical messages
    run_sweep(parse_spec(raw, "<test>"), storage, data_source=str(tiny_npz), jobs=1,
              group_size=1)
    failures = sweep_failures(storage, "bad")
    assert failures.failed == failures.finished == 2 and failures.common_count == 2
    assert "diverged" in failures.common and "2 of 2 finished trials failed" in failures.line()


@pytest.mark.parametrize(("params", "message"), [
    ({"n_s": 10**12}, r"n_s=1000000000000 is invalid: expected at most 1,000,000,000"),
    ({"schedule": "constant", "n_updates": 10**12}, r"n_updates=1000000000000 is invalid"),
    ({"cycles": 60, "cycle_mult": 10}, r"cycles=60 with cycle_mult=10 .* more than "
                                       r"1,000,000,000 updates"),
    ({"cycles": 2000, "cycle_mult": 2}, r"cycles=2000 with cycle_mult=2"),  # OverflowError
    ({"cycles": 10**7}, r"cycles=10000000 x curve_points=\d+ curve measurements is invalid"),
    ({"schedule": "constant", "cycles": 10**9, "n_s": 10}, r"cycles=1000000000 with n_s=10"),
])
def test_runs_longer_than_any_run_may_be_are_refused_at_once(params: dict,
                                                            message: str) -> None:
    with pytest.raises(RunTooLong, match=message) as err:
        TrialSpec.from_mapping(params)
    assert "\n" not in str(err.value)
    raw = grid_spec("long", **params)
    with pytest.raises(SweepSpecError, match=message):
        parse_spec(raw, "<test>")


def test_long_runs_need_force_and_the_data_resolves_their_length(tiny_npz: Path) -> None:
    data = load_dataset(tiny_npz)
    check_run_length(TrialSpec(n_s=5 * 10**6, cycles=1), 500)  # 10,000,000: allowed
    with pytest.raises(LongRun, match=r"plans 20,000,000 updates, more than 10,000,000 .*"
                                      r"pass --force"):
        check_run_length(TrialSpec(n_s=10**7, cycles=1), 500)
    check_run_length(TrialSpec(n_s=10**7, cycles=1), 500, force=True)
    with pytest.raises(RunTooLong, match=r"more than 1,000,000,000 updates \(n_s=200000 from "
                                         r"n_train=100000\)"):  # n_s from the data
        check_run_length(TrialSpec(batch_size=1, cycles=3000), 100_000, force=True)
    with pytest.raises(RunTooLong, match=r"2,000,000 curve measurements \(10 per epoch of 5 "
                                         r"updates\)"):
        check_run_length(TrialSpec(schedule="constant", n_updates=10**6), 500, force=True)
    # a searched range: the longest run of the stage, before any trial is stored
    raw = grid_spec("searched")
    raw["space"]["n_s"] = {"type": "int", "low": 10, "high": 2 * 10**7, "grid": 2}
    with pytest.raises(SweepSpecError, match=r"stages.g: the run plans 40,000,000 updates"):
        check_data_sizes(parse_spec(raw, "<test>"), data)
    check_data_sizes(parse_spec(raw, "<test>"), data, force=True)
    raw = grid_spec("growing")
    raw["space"]["cycles"] = {"type": "int", "low": 1, "high": 40, "grid": 2}
    raw["fixed"]["cycle_mult"] = 2
    del raw["fixed"]["cycles"]
    # refused as the spec is read: its searched range is checked with the fixed cycle_mult
    with pytest.raises(SweepSpecError, match=r"space.cycles.high: cycles=40 with cycle_mult=2"):
        check_data_sizes(parse_spec(raw, "<test>"), data, force=True)


def test_batches_larger_than_the_training_set_are_refused_before_any_trial(
        tmp_path: Path, tiny_npz: Path) -> None:
    data = load_dataset(tiny_npz)
    raw = grid_spec("batch")
    del raw["fixed"]["batch_size"]
    raw["space"]["batch_size"] = {"type": "categorical", "choices": [300, 400]}
    with pytest.raises(SweepSpecError, match=r"stages.g: batch_size=300 exceeds n_train=200"):
        check_data_sizes(parse_spec(raw, "<test>"), data)
    raw["space"]["batch_size"]["choices"] = [100, 400]  # some trials can run
    check_data_sizes(parse_spec(raw, "<test>"), data)
    storage = Storage(f"sqlite:///{tmp_path / 'b.db'}")
    with pytest.raises(SweepSpecError, match=r"batch_size=250 exceeds n_train=200"):
        run_sweep(parse_spec(grid_spec("b", batch_size=250), "<test>"), storage,
                  data_source=str(tiny_npz), jobs=1)
    assert storage.get_trials() == []
