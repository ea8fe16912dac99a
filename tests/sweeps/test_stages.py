"""Running sweeps on tiny generated data: parallel workers, seeds, narrowing, reuse, the final
stage, replicates, pruning, time budgets, the Optuna study and reruns."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pytest

from numsweep.storage import Storage, TrialState
from numsweep.sweeps import narrow_space, parse_spec, rerun_trial, run_sweep, trial_seed
from numsweep.sweeps.spec import ParamSpace

FIXED = {"hidden": [16], "n_train": 300, "n_val": 100, "batch_size": 50, "cycles": 1,
         "eval_train": 100, "curve_points": 2}


def make(stages: list[dict[str, Any]], space: dict[str, Any] | None = None,
         name: str = "t", seed: int = 3, **fixed: Any) -> Any:
    space = space if space is not None else {
        "lam": {"low": 1e-4, "high": 1.0, "log": True, "grid": 4}}
    searched = {n for entry in space for n in entry.split(",")}
    base = {k: v for k, v in {**FIXED, **fixed}.items() if k not in searched}
    return parse_spec({"name": name, "seed": seed, "fixed": base, "space": space,
                       "stages": stages}, "<test>")


def db(tmp_path: Path, name: str = "t") -> Storage:
    return Storage(f"sqlite:///{tmp_path / (name + '.db')}")


def test_narrowing_rule_picks_the_documented_range() -> None:
    lam = ParamSpace("lam", "float", low=1e-5, high=1e-1, log=True, grid=5)  # step 1 decade
    top = [{"lam": 1e-3}, {"lam": 1e-4}, {"lam": 1e-3}]
    space, note = narrow_space({"lam": lam}, top, {"lam": lam}, 1.0, "coarse")
    assert space["lam"].low == pytest.approx(1e-5) and space["lam"].high == pytest.approx(1e-2)
    assert space["lam"].log and space["lam"].grid == 5
    assert "best 3 of coarse" in note and "widened by 1 grid step" in note
    # half a step, and a linear range that would go below 0 stops at the source's end
    space, _ = narrow_space({"lam": lam}, top, {"lam": lam}, 0.5, "coarse")
    assert space["lam"].low == pytest.approx(10 ** -4.5)
    assert space["lam"].high == pytest.approx(10 ** -2.5)
    lin = ParamSpace("dropout", "float", low=0.0, high=0.8, grid=5)  # step 0.2
    space, _ = narrow_space({"dropout": lin}, [{"dropout": 0.0}, {"dropout": 0.2}],
                            {"dropout": lin}, 1.0, "coarse")
    assert (space["dropout"].low, space["dropout"].high) == pytest.approx((0.0, 0.4))
    # categorical entries keep the choices the best trials used
    opt = ParamSpace("optimizer", "categorical", choices=("sgd", "adam", "momentum"))
    space, _ = narrow_space({"optimizer": opt}, [{"optimizer": "adam"}], {"optimizer": opt},
                            1.0, "coarse")
    assert space["optimizer"].choices == ("adam",)


def test_a_narrowed_range_never_leaves_the_stage_space() -> None:
    # three grid points, all of them "best": the widened span would run 2 decades past
    # each end of [1e-5, 0.1]
    lam = ParamSpace("lam", "float", low=1e-5, high=1e-1, log=True, grid=3)
    top = [{"lam": 1e-5}, {"lam": 1e-3}, {"lam": 1e-1}]
    space, note = narrow_space({"lam": lam}, top, {"lam": lam}, 1.0, "coarse", available=3)
    assert (space["lam"].low, space["lam"].high) == pytest.approx((1e-5, 1e-1))
    assert "the whole range, not narrowed" in note
    assert note.startswith("the best 3 of coarse are all its 3 complete trials")
    # a best value at the edge: the widened end stops at the stage's own end
    lam8 = ParamSpace("lam", "float", low=1e-5, high=1e-1, log=True, grid=5)
    space, note = narrow_space({"lam": lam8}, [{"lam": 1e-5}, {"lam": 1e-4}], {"lam": lam8},
                               1.0, "coarse", available=5)
    assert (space["lam"].low, space["lam"].high) == pytest.approx((1e-5, 1e-3))
    assert "kept inside space.lam" in note and "all its" not in note


def test_grid_points_never_run_twice_with_four_jobs(tmp_path: Path, tiny_npz: Path) -> None:
    spec = make([{"name": "g", "sampler": "grid"}],
                space={"lam": {"low": 1e-4, "high": 1.0, "log": True, "grid": 4},
                       "hidden": {"choices": [[8], [16]]}})
    storage = db(tmp_path)
    run_sweep(spec, storage, data_source=str(tiny_npz), jobs=4)
    trials = storage.get_trials("t")
    points = [(t.params["lam"], tuple(t.params["hidden"])) for t in trials]
    assert len(points) == 8 and len(set(points)) == 8
    assert all(t.state is TrialState.COMPLETE for t in trials)


def test_each_trial_gets_its_own_seed_stream_whatever_worker_runs_it(
        tmp_path: Path, tiny_npz: Path) -> None:
    spec = make([{"name": "r", "sampler": "random", "n_trials": 6}], seed=11)
    storage = db(tmp_path)
    run_sweep(spec, storage, data_source=str(tiny_npz), jobs=2)
    trials = storage.get_trials("t")
    assert [t.seed for t in trials] == [trial_seed(11, 0, k) for k in range(6)]
    assert len({t.seed for t in trials}) == 6
    assert len({t.params["lam"] for t in trials}) == 6  # no two workers propose the same
    assert len({t.worker for t in trials}) == 2  # two worker processes did the work


def _key(storage: Storage) -> list[tuple[Any, ...]]:
    return [(t.stage, t.number, t.seed, json.dumps(t.params, sort_keys=True), t.state,
             t.metrics.get("val_acc"), t.metrics.get("test_acc"), t.metrics.get("train_acc"))
            for t in storage.get_trials("t")]


def test_same_seed_same_trials_and_metrics_with_one_or_two_jobs(tmp_path: Path,
                                                                tiny_npz: Path) -> None:
    spec = make([{"name": "r", "sampler": "random", "n_trials": 3},
                 # 11 new and the 3 reused: past TPE's 10 random start-up trials
                 {"name": "tpe", "sampler": "tpe", "n_trials": 11, "narrow": True},
                 {"name": "final", "sampler": "best", "fixed": {"cycles": 2}}])
    one, two = db(tmp_path, "one"), db(tmp_path, "two")
    # the lag rule of batch groups, with one stored group size (the automatic one shares a
    # stage out over the jobs); slot groups are the same for one process only (test_slots.py)
    run_sweep(spec, one, data_source=str(tiny_npz), jobs=1, group_size=2, grouping="batch")
    run_sweep(spec, two, data_source=str(tiny_npz), jobs=2, group_size=2, grouping="batch")
    assert _key(one) == _key(two)
    assert len(_key(one)) >= 4


def test_coarse_to_fine_reuses_coarse_trials_and_retrains_the_best(tmp_path: Path,
                                                                   tiny_npz: Path) -> None:
    spec = make([{"name": "coarse", "sampler": "grid"},
                 {"name": "fine", "sampler": "random", "n_trials": 4,
                  "narrow": {"top_k": 2, "widen": 1}},
                 {"name": "final", "sampler": "best", "fixed": {"n_val": 50, "cycles": 2}}])
    storage = db(tmp_path)
    summaries = run_sweep(spec, storage, data_source=str(tiny_npz), jobs=1)
    coarse = storage.get_trials("t", stage="coarse")
    fine = storage.get_trials("t", stage="fine")
    stages = storage.list_stages(storage.get_sweep("t").id)
    narrowed = stages[1].space["space"]["lam"]
    inside = [t for t in coarse  # the widened ends may equal grid points up to rounding
              if narrowed["low"] * (1 - 1e-9) <= t.params["lam"] <= narrowed["high"] * (1 + 1e-9)]
    assert stages[1].space["reused"] == [t.id for t in inside]
    assert len(inside) >= 2 and summaries[1].reused == len(inside)
    assert len(fine) == 4  # n_trials counts new trials; the reused come on top
    assert "and trains 4 new" in stages[1].note
    assert not {t.params["lam"] for t in fine} & {t.params["lam"] for t in coarse}
    assert "reuses" in stages[1].note and "widened by 1 grid step" in stages[1].note
    final = storage.get_trials("t", stage="final")
    best = max(coarse + fine, key=lambda t: (t.metrics["val_acc"], -t.id))
    assert len(final) == 1 and final[0].params["lam"] == best.params["lam"]
    assert final[0].params["n_val"] == 50 and final[0].params["cycles"] == 2
    assert math.isfinite(final[0].metrics["test_acc"])
    assert summaries[2].best_test_acc == final[0].metrics["test_acc"]
    assert f"trial {best.id}" in stages[2].note


def test_seed_replicates_run_each_configuration_with_several_seeds(tmp_path: Path,
                                                                   tiny_npz: Path) -> None:
    spec = make([{"name": "rep", "sampler": "list", "replicates": 3,
                  "configs": [{"lam": 1e-3}, {"lam": 1e-2}]}])
    storage = db(tmp_path)
    run_sweep(spec, storage, data_source=str(tiny_npz), jobs=2)
    trials = storage.get_trials("t")
    assert [t.params["lam"] for t in trials] == [1e-3] * 3 + [1e-2] * 3
    assert len({t.seed for t in trials}) == 6
    study = optuna.load_study(study_name="t/rep", storage=storage.url)
    values = [t.value for t in study.trials]
    assert values[0] == pytest.approx(sum(t.metrics["val_acc"] for t in trials[:3]) / 3)


def test_pruning_stops_bad_trials_and_keeps_their_curves(tmp_path: Path,
                                                         tiny_npz: Path) -> None:
    spec = make([{"name": "p", "sampler": "list", "pruner": "median", "sync": 1,
                  "configs": [{"lam": 0.0}, {"lam": 1e-3}, {"lam": 20.0}, {"lam": 30.0}]}],
                space={"lam": {"low": 0.0, "high": 50.0}}, cycles=3)
    storage = db(tmp_path)
    # one at a time: each trial is proposed knowing the one before (sync = 1)
    run_sweep(spec, storage, data_source=str(tiny_npz), jobs=1, group_size=1)
    trials = storage.get_trials("t")
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 2 + [TrialState.PRUNED] * 2
    full = trials[0].metrics["updates"]
    for t in trials[2:]:
        assert t.metrics["updates"] == full / 3  # stopped at the end of the first cycle
        curves = storage.get_curves([t.id])
        assert {c.split for c in curves} == {"train", "val"}
        assert max(c.step for c in curves) == t.metrics["updates"]
        assert "stopped by the pruner" in t.message
    study = optuna.load_study(study_name="t/p", storage=storage.url)
    assert [s.state.name for s in study.trials] == ["COMPLETE"] * 2 + ["PRUNED"] * 2
    assert study.trials[2].intermediate_values  # the curve reached the study too


def test_pruning_decisions_do_not_depend_on_jobs(tmp_path: Path, tiny_npz: Path) -> None:
    spec = make([{"name": "p", "sampler": "random", "pruner": "median", "n_trials": 8,
                  "sync": 2}], space={"lam": {"low": 1e-4, "high": 30.0, "log": True}},
                cycles=2)
    one, two = db(tmp_path, "one"), db(tmp_path, "two")
    # one stored group size (the automatic one shares a stage out over the jobs)
    run_sweep(spec, one, data_source=str(tiny_npz), jobs=1, group_size=1)
    run_sweep(spec, two, data_source=str(tiny_npz), jobs=2, group_size=1)
    assert _key(one) == _key(two)
    states = [t.state for t in one.get_trials("t")]
    assert TrialState.PRUNED in states and TrialState.COMPLETE in states


def test_failed_trials_are_stored_and_the_sweep_goes_on(tmp_path: Path,
                                                        tiny_npz: Path) -> None:
    spec = make([{"name": "l", "sampler": "list",
                  "configs": [{"batch_size": 1000}, {"batch_size": 50}]}],
                space={"batch_size": {"type": "int", "low": 10, "high": 1000}})
    storage = db(tmp_path)
    summaries = run_sweep(spec, storage, data_source=str(tiny_npz), jobs=1)
    trials = storage.get_trials("t")
    assert [t.state for t in trials] == [TrialState.FAILED, TrialState.COMPLETE]
    assert "batch_size=1000 exceeds n_train=300" in trials[0].message
    assert summaries[0].counts == {"FAILED": 1, "COMPLETE": 1}


def test_a_used_up_time_budget_stops_proposing_trials(tmp_path: Path, tiny_npz: Path) -> None:
    spec = make([{"name": "r", "sampler": "random", "n_trials": 50, "time_budget": 0.001}])
    storage = db(tmp_path)
    run_sweep(spec, storage, data_source=str(tiny_npz), jobs=1)
    assert 1 <= len(storage.get_trials("t")) < 50
    assert "time budget used up" in storage.list_stages(storage.get_sweep("t").id)[0].note


def test_conditional_and_tied_parameters_in_a_running_sweep(tmp_path: Path,
                                                            tiny_npz: Path) -> None:
    spec = make([{"name": "r", "sampler": "random", "n_trials": 6}],
                space={"optimizer": {"choices": ["sgd", "momentum"]},
                       "momentum": {"low": 0.5, "high": 0.6,
                                    "when": {"optimizer": ["momentum"]}},
                       "hidden,batch_size": {"choices": [[[8], 50], [[16], 60]]}})
    storage = db(tmp_path)
    run_sweep(spec, storage, data_source=str(tiny_npz), jobs=1)
    trials = storage.get_trials("t")
    for t in trials:
        assert [t.params["hidden"], t.params["batch_size"]] in ([[8], 50], [[16], 60])
        if t.params["optimizer"] == "sgd":
            assert t.params["momentum"] == 0.9  # the default: not searched
        else:
            assert 0.5 <= t.params["momentum"] <= 0.6
    study = optuna.load_study(study_name="t/r", storage=storage.url)
    with_momentum = [t for t in study.trials if t.params["optimizer"] == "momentum"]
    assert all("momentum" in t.params for t in with_momentum)
    assert all("momentum" not in t.params for t in study.trials if t not in with_momentum)


@pytest.mark.parametrize("sampler", ["qmc", "cmaes", "tpe", "gp"])
def test_other_samplers_run(tmp_path: Path, tiny_npz: Path, sampler: str) -> None:
    pytest.importorskip("scipy")
    if sampler in ("cmaes", "gp"):
        pytest.importorskip("cmaes" if sampler == "cmaes" else "torch")
    spec = make([{"name": "s", "sampler": sampler, "n_trials": 3}])
    storage = db(tmp_path)
    run_sweep(spec, storage, data_source=str(tiny_npz), jobs=1)
    assert len({t.params["lam"] for t in storage.get_trials("t")}) == 3


def test_rerun_repeats_a_trial_run_by_a_worker_process(tmp_path: Path, tiny_npz: Path) -> None:
    spec = make([{"name": "r", "sampler": "random", "n_trials": 2}])
    storage = db(tmp_path)
    run_sweep(spec, storage, data_source=str(tiny_npz), jobs=2)
    original = storage.get_trials("t")[1]
    rerun = rerun_trial(storage, original.id)
    assert rerun.differences() == {}
    again = storage.get_trials("rerun")[0]
    assert again.metrics["val_acc"] == original.metrics["val_acc"]
    assert f"rerun of trial {original.id}" in again.message


def test_a_sweep_name_that_already_has_trials_is_refused(tmp_path: Path,
                                                         tiny_npz: Path) -> None:
    spec = make([{"name": "l", "sampler": "list", "configs": [{"lam": 0.0}]}],
                space={"lam": {"low": 0.0, "high": 1.0}})
    storage = db(tmp_path)
    run_sweep(spec, storage, data_source=str(tiny_npz), jobs=1)
    with pytest.raises(ValueError, match=r"already has 1 trials.*name=NEW"):
        run_sweep(spec, storage, data_source=str(tiny_npz), jobs=1)


def test_shared_data_is_memory_mapped_and_removed_after_the_sweep(tmp_path: Path,
                                                                  tiny_npz: Path) -> None:
    from numsweep.engine import TrialSpec
    from numsweep.sweeps.data_share import DataShare
    from numsweep.sweeps.worker import TrialTask, load_split

    share = DataShare(str(tiny_npz), jobs=2)
    spec = TrialSpec(model="convnet", f=4, n_train=300, n_val=100)
    shared = share.shared_for(spec)
    assert shared is not None and shared.patch_sizes == (4,)
    assert share.shared_for(spec) is shared  # saved once
    split = load_split(TrialTask(0, spec, str(tiny_npz), shared=shared))
    assert isinstance(split.x_train, np.memmap) and not split.x_train.flags.writeable
    assert split.x_train.shape == (300, 16, 16, 3) and split.x_val.shape[0] == 100
    folder = Path(shared.folder)
    assert folder.is_dir()
    share.close()
    assert not folder.exists()


@pytest.mark.parametrize("pruner", ["halving", "hyperband"])
def test_halving_and_hyperband_prune_from_worker_snapshots(tmp_path: Path, tiny_npz: Path,
                                                           pruner: str) -> None:
    configs = [{"lam": 0.0}, {"lam": 1e-3}, {"lam": 1e-4}] + [{"lam": 30.0}] * 3
    spec = make([{"name": "p", "sampler": "list", "pruner": pruner, "sync": 1,
                  "configs": configs}], space={"lam": {"low": 0.0, "high": 50.0}}, cycles=4)
    one, two = db(tmp_path, "one"), db(tmp_path, "two")
    # one stored group size (the automatic one shares a stage out over the jobs)
    run_sweep(spec, one, data_source=str(tiny_npz), jobs=1, group_size=1)
    run_sweep(spec, two, data_source=str(tiny_npz), jobs=2, group_size=1)
    assert _key(one) == _key(two)
    states = [t.state for t in one.get_trials("t")]
    assert TrialState.PRUNED in states[3:]
    study = optuna.load_study(study_name="t/p", storage=one.url)
    assert any(k.startswith("completed_rung") for t in study.trials for k in t.system_attrs)


def test_a_grid_stage_runs_its_configs_first_and_never_a_point_twice(tmp_path: Path,
                                                                     tiny_npz: Path) -> None:
    spec = make([{"name": "g", "sampler": "grid", "configs": [{"lam": 0.5}, {"lam": 1e-4}]}])
    storage = db(tmp_path)
    run_sweep(spec, storage, data_source=str(tiny_npz), jobs=1)
    lams = [t.params["lam"] for t in storage.get_trials("t")]
    assert lams[:2] == [0.5, 1e-4] and len(lams) == 5 and len(set(lams)) == 5
