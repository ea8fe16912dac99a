"""pruner = "front": numsweep's rung rule for several objectives (a trial goes on while at
most ``prune_share`` of the earlier trials at its rung dominate it)."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest

from numsweep.pareto import Objective
from numsweep.storage import Storage, TrialState
from numsweep.sweeps import front_pruning, parse_spec, run_sweep
from numsweep.sweeps.front_pruning import FrontPruner, FrontRule, RungClock

ACC, PARAMS, TIME = (Objective("val_acc", "maximize"), Objective("param_count", "minimize"),
                     Objective("train_seconds", "minimize"))


class FakeClock(RungClock):
    def __init__(self, cost: float = 1.0) -> None:
        super().__init__(1)
        self.fixed = cost

    def cost_at(self, step: int) -> float:
        return self.fixed


def test_the_rule_prunes_when_more_than_the_share_dominate() -> None:
    # three earlier trials at rung 4: (val_acc, param_count)
    peers = ((4, (0.5, 100.0)), (4, (0.6, 100.0)), (4, (0.4, 50.0)), (8, (0.9, 10.0)))
    rule = FrontRule((ACC, PARAMS), 0.5, peers)
    # dominated by two of three (0.5/100 and 0.6/100 beat 0.45/200): pruned
    assert FrontPruner(rule, FakeClock(), 200)(4, 0.45)
    # dominated by one of three (0.6/100 beats 0.55/100): goes on
    assert not FrontPruner(rule, FakeClock(), 100)(4, 0.55)
    # the smallest network is dominated by none, however inaccurate
    assert not FrontPruner(rule, FakeClock(), 10)(4, 0.1)
    # a share of 0.2 prunes at one of three
    assert FrontPruner(FrontRule((ACC, PARAMS), 0.2, peers), FakeClock(), 100)(4, 0.55)
    # fewer than MIN_PEERS at the rung: goes on
    assert front_pruning.MIN_PEERS == 2
    assert not FrontPruner(rule, FakeClock(), 1000)(8, 0.0)
    # the time objective is the clock's cost so far
    timed = FrontRule((ACC, TIME), 0.5, ((4, (0.5, 1.0)), (4, (0.5, 2.0))))
    pruner = FrontPruner(timed, FakeClock(3.0), 0)
    assert pruner(4, 0.5) and pruner.rung_rows() == [[4, 0.5, 3.0]]


def test_the_clock_shares_each_interval_among_the_live_trials(
        monkeypatch: pytest.MonkeyPatch) -> None:
    now = [0.0]
    monkeypatch.setattr(front_pruning.time, "perf_counter", lambda: now[0])
    clock = RungClock(4)  # a group of four
    now[0] = 8.0
    assert [clock.cost_at(2) for _ in range(4)] == [2.0] * 4  # 8 s shared by 4
    clock.stopped_one()
    clock.stopped_one()  # two pruned at rung 2: two go on
    now[0] = 14.0
    assert clock.cost_at(4) == pytest.approx(2.0 + 6.0 / 2)


def test_a_stage_prunes_the_dominated_trials(tmp_path: Path, tiny_npz: Path) -> None:
    good = [{"hidden": [4], "lam": 1e-4}, {"hidden": [4], "lam": 2e-4}]
    raw = {"name": "fp", "seed": 1, "objectives": ["val_acc", "param_count"],
           "fixed": {"n_train": 200, "n_val": 100, "batch_size": 50, "cycles": 3, "n_s": 2,
                     "eval_train": 100, "curve_points": 1, "eta_max": 0.05},
           "space": {"hidden": {"choices": [[2], [4], [32]]},
                     "lam": {"low": 1e-4, "high": 100.0, "log": True}},
           "stages": [{"name": "s", "sampler": "list", "pruner": "front", "sync": 1,
                       "configs": [*good, {"hidden": [32], "lam": 100.0},
                                   {"hidden": [2], "lam": 100.0}]}]}
    storage = Storage(f"sqlite:///{tmp_path / 'fp.db'}")
    run_sweep(parse_spec(raw, "fp.toml"), storage, data_source=str(tiny_npz), jobs=1,
              group_size=1)
    states = [t.state for t in storage.get_trials("fp")]
    # the big, inaccurate one is dominated by the two small accurate ones; the smallest
    # network is dominated by none and trains to the end
    assert states == [TrialState.COMPLETE] * 2 + [TrialState.PRUNED, TrialState.COMPLETE]
    study = optuna.load_study(study_name="fp/s", storage=storage.url)
    rows = study.trials[0].user_attrs["ns_rungs"]
    assert [r[0] for r in rows] == [4, 8] and rows[0][2] == storage.get_trials("fp")[0].metrics[
        "param_count"]
    assert study.trials[2].state is optuna.trial.TrialState.PRUNED


def test_front_pruning_needs_rung_objectives() -> None:
    from numsweep.sweeps import SweepSpecError

    with pytest.raises(SweepSpecError, match="val_loss is not measured there"):
        parse_spec({"name": "x", "objectives": ["val_acc", "val_loss"],
                    "space": {"lam": {"low": 0.001, "high": 0.1}},
                    "stages": [{"sampler": "random", "n_trials": 2, "pruner": "front"}]}, "x")
