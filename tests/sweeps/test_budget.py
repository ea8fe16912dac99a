"""The budget planner: cost arithmetic, calibration on measured trials, fitting a budget."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from numsweep.engine import TrialSpec
from numsweep.storage import Storage
from numsweep.sweeps import parse_spec, run_sweep
from numsweep.sweeps.budget import CostModel, DataShape, calibrate, forward_macs, plan, trial_macs

CIFAR = DataShape((32, 32, 3), 10, 50000, 10000)
ESTIMATE_FACTOR = 3.0
"""The calibrated estimate of a trial's train + eval seconds is within this factor of the
measured time (docs/sweeps.md, "Budget planner and progress")."""


def test_forward_arithmetic_of_each_model() -> None:
    assert forward_macs(TrialSpec(hidden=(50,)), CIFAR) == 3072 * 50 + 50 * 10
    conv = TrialSpec(model="convnet", f=4, nf=10, nh=50)
    assert forward_macs(conv, CIFAR) == 64 * 48 * 10 + 64 * 10 * 50 + 50 * 10
    # twice the updates, about twice the cost
    short = trial_macs(TrialSpec(n_s=100, cycles=1, n_train=10000), CIFAR)
    long = trial_macs(TrialSpec(n_s=100, cycles=2, n_train=10000), CIFAR)
    assert 1.8 < long / short < 2.1


def test_the_cost_reads_the_engine_s_shapes_and_run_length() -> None:
    """The layer shapes are the engine's (``network_shape``, what ``build_network`` builds)
    and the updates its planned run (``runplan.planned_updates``: n_s resolved from n_train)."""
    from numsweep.engine.build import network_shape
    from numsweep.engine.runplan import planned_updates

    conv3 = TrialSpec(model="convnet3", nf=8, filter_size=5, nh=30, conv_pad=0)
    # 28 x 28 outputs of 75 x 8, pooled to 14 x 14 x 8 = 1568 inputs of the hidden layer
    assert forward_macs(conv3, CIFAR) == 28 * 28 * 75 * 8 + 1568 * 30 + 30 * 10
    multi = TrialSpec(model="convnet", f=(2, 8), nf=(3, 5), nh=20)
    assert forward_macs(multi, CIFAR) == network_shape(multi, (32, 32, 3), 10).forward_macs
    spec = TrialSpec(n_train=1000, batch_size=100, cycles=3)
    fwd = forward_macs(spec, CIFAR)
    assert planned_updates(spec, 1000) == 2 * 20 * 3
    per_update = 3 * 100 * fwd + 2e5
    assert trial_macs(spec, CIFAR) - trial_macs(spec, CIFAR, updates=0) > 119 * per_update


def test_calibrated_estimate_is_within_the_stated_factor_of_measured_time(
        tmp_path: Path, tiny_npz: Path) -> None:
    storage = Storage(f"sqlite:///{tmp_path / 'b.db'}")
    fixed = {"n_train": 500, "n_val": 100, "batch_size": 50, "eval_train": 200}
    calib = parse_spec({"name": "calib", "fixed": {**fixed, "cycles": 2},
                        "space": {"hidden": {"choices": [[64], [128]]}},
                        "stages": [{"sampler": "grid"}]}, "<t>")
    run_sweep(calib, storage, data_source=str(tiny_npz), jobs=1)
    with np.load(tiny_npz) as data:
        shape = DataShape(tuple(data["x_train"].shape[1:]), 10, len(data["x_train"]),
                          len(data["x_test"]))
    model = calibrate(storage, shape)
    assert model.calibrated_on == 2
    probe = parse_spec({"name": "probe", "fixed": {**fixed, "cycles": 4, "hidden": [256]},
                        "space": {"lam": {"choices": [0.001]}},
                        "stages": [{"sampler": "grid"}]}, "<t>")
    estimates: list[float] = []
    t0 = time.perf_counter()
    run_sweep(probe, storage, data_source=str(tiny_npz), jobs=1, estimate=model.seconds,
              on_event=lambda e: estimates.extend([e.estimate] if e.kind == "started"
                                                  and e.estimate else []))
    assert time.perf_counter() - t0 > 0
    measured = storage.get_trials("probe")[0].metrics
    seconds = measured["train_seconds"] + measured["eval_seconds"]
    assert len(estimates) == 1
    print(f"estimate {estimates[0]:.3f} s, measured {seconds:.3f} s")
    assert 1 / ESTIMATE_FACTOR < estimates[0] / seconds < ESTIMATE_FACTOR


def test_plan_shrinks_trials_and_grid_to_fit_the_budget() -> None:
    spec = parse_spec({"name": "p", "fixed": {"n_train": 10000, "n_s": 100, "cycles": 1},
                       "space": {"lam": {"low": 1e-5, "high": 1e-1, "log": True, "grid": 16}},
                       "stages": [{"name": "coarse", "sampler": "grid"},
                                  {"name": "fine", "sampler": "random", "n_trials": 40}]},
                      "<t>")
    model = CostModel(1e-9, 0, CIFAR)
    per_trial = model.seconds(TrialSpec(n_train=10000, n_s=100, cycles=1))
    full = plan(spec, 1e9, model, jobs=2)
    assert full.overrides == {} and full.spec == spec
    assert abs(full.estimate - 56 * per_trial / 2) < 1e-6 * full.estimate
    budget = 14 * per_trial / 2
    small = plan(spec, budget, model, jobs=2)
    assert small.estimate <= budget
    assert small.spec.stages[1].n_trials < 40 and small.spec.space["lam"].grid < 16
    assert "fits" in small.lines[0] and "default speed guess" in small.lines[0]


def test_plan_keeps_enough_grid_points_for_a_later_stage_to_narrow() -> None:
    spec = parse_spec({"name": "p", "fixed": {"n_train": 10000, "n_s": 100, "cycles": 1},
                       "space": {"lam": {"low": 1e-5, "high": 1e-1, "log": True, "grid": 8}},
                       "stages": [{"name": "coarse", "sampler": "grid"},
                                  {"name": "fine", "sampler": "random", "n_trials": 12,
                                   "narrow": {"from": "coarse", "top_k": 3, "widen": 1}}]},
                      "<t>")
    model = CostModel(1e-9, 0, CIFAR)
    per_trial = model.seconds(TrialSpec(n_train=10000, n_s=100, cycles=1))
    small = plan(spec, 4 * per_trial / 2, model, jobs=2)
    # the best 3 of 6 points widened by a step each side span 4 of 5 steps: still narrower
    assert small.spec.space["lam"].grid == 6
    assert "grids kept at 6 points or more (fine narrows around the best 3 of coarse" \
        in small.lines[0]


def test_plan_lines_count_one_trial_and_one_job_in_the_singular() -> None:
    spec = parse_spec({"name": "p", "fixed": {"n_train": 1000, "n_s": 10, "cycles": 1},
                       "space": {"lam": {"low": 1e-5, "high": 1e-1, "log": True, "grid": 4}},
                       "stages": [{"name": "coarse", "sampler": "grid"},
                                  {"name": "final", "sampler": "best"}]}, "<t>")
    lines = plan(spec, 1e9, CostModel(1e-9, 0, CIFAR), jobs=2).lines
    assert lines[1].startswith("coarse: 4 trials x ") and " / 2 jobs = " in lines[1]
    assert lines[2].startswith("final: 1 trial x ") and " / 1 job = " in lines[2]


def test_the_estimate_of_a_running_sweep_is_calibrated_again_as_each_stage_starts(
        tmp_path: Path, tiny_npz: Path) -> None:
    """A sweep's later stages are estimated on its earlier stages' measured trials: the
    estimate a run is given is calibrated again on each "stage" event, not on others."""
    from numsweep.sweeps.budget import StageCalibrated
    from numsweep.sweeps.events import TrialEvent

    storage = Storage(f"sqlite:///{tmp_path / 'r.db'}")
    model = calibrate(storage, CIFAR)
    assert model.calibrated_on == 0
    estimate = StageCalibrated(storage, model)
    two = parse_spec({"name": "two", "fixed": {"n_train": 300, "n_val": 100, "batch_size": 50,
                                                "cycles": 1, "hidden": [16]},
                      "space": {"lam": {"choices": [0.001, 0.01]}},
                      "stages": [{"name": "a", "sampler": "grid"},
                                 {"name": "b", "sampler": "grid"}]}, "<t>")
    seen: dict[str, int] = {}

    def on_event(event: TrialEvent) -> None:
        estimate.on_event(event)
        if event.kind == "started":
            seen.setdefault(event.stage, estimate.model.calibrated_on)

    run_sweep(two, storage, data_source=str(tiny_npz), jobs=1, group_size=1,
              estimate=estimate.seconds, on_event=on_event)
    assert seen == {"a": 0, "b": 2}  # stage b: on the two trials of stage a
    estimate.on_event(TrialEvent("finished", "b"))
    assert estimate.model.calibrated_on == 2  # only a stage's start calibrates again
    assert estimate.seconds(TrialSpec()) == estimate.model.seconds(TrialSpec())
