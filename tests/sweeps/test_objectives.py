"""Objectives: one metric with its direction or several (a Pareto front) in specs, the Optuna
studies they make, narrowing and the ``best`` stage over them, the trial's own cost, and the
report's front with the chosen point."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pytest

from numsweep.analysis import load_trials
from numsweep.analysis.report import build_report
from numsweep.engine import load_dataset, make_split
from numsweep.engine.group import train_group
from numsweep.pareto import Objective, choose, choose_point, front_mask, pareto_ranks
from numsweep.storage import Storage, TrialState
from numsweep.sweeps import load_spec, parse_spec, run_sweep
from numsweep.sweeps.objectives import objective_metrics, trial_cost_seconds
from numsweep.sweeps.spec import SweepSpecError
from tests.sweeps.conftest import assert_one_line_spec_error, write_spec

FIXED = {"n_train": 200, "n_val": 100, "batch_size": 50, "cycles": 1, "eval_train": 100,
         "curve_points": 2, "lam": 0.001}
HIDDEN = {"hidden": {"choices": [[4], [8], [16], [32]]}}


def spec_of(stages: list[dict[str, Any]], space: dict[str, Any] | None = None,
            **top: Any) -> Any:
    space = space or HIDDEN
    fixed = {k: v for k, v in FIXED.items() if k not in space}
    return parse_spec({"name": "o", "seed": 1, "fixed": fixed, "space": space,
                       "stages": stages, **top}, "<test>")


# specs

def test_objective_forms_and_defaults() -> None:
    spec = spec_of([{"name": "a", "sampler": "grid"},
                    {"name": "b", "sampler": "random", "n_trials": 2,
                     "objective": {"metric": "val_loss", "direction": "minimize"}},
                    {"name": "c", "sampler": "random", "n_trials": 2, "objective": "val_loss"},
                    {"name": "d", "sampler": "nsga2", "n_trials": 2,
                     "objectives": ["val_acc:max", "train_seconds:min", "param_count"]}])
    a, b, c, d = (spec.stage_objectives(s) for s in spec.stages)
    assert a == (Objective("val_acc", "maximize"),)  # the default
    assert b == c == (Objective("val_loss", "minimize"),)  # a loss is minimised by default
    assert [o.text for o in d] == ["val_acc:max", "train_seconds:min", "param_count:min"]
    assert d[1].column == "cost_seconds"  # time is scored on the trial's own cost
    # the sweep's objectives apply to every stage without its own, and survive a round trip
    top = spec_of([{"name": "a", "sampler": "tpe", "n_trials": 2}],
                  objectives=["val_acc:max", "param_count:min"])
    assert len(top.stage_objectives(top.stages[0])) == 2
    again = parse_spec(json.loads(json.dumps(top.to_dict())), "<again>")
    assert again.to_dict() == top.to_dict()
    assert again.stage_objectives(again.stages[0]) == top.stage_objectives(top.stages[0])
    assert "objectives" not in spec_of([{"name": "a"}]).to_dict()  # stored specs unchanged
    # a best stage without its own takes the objectives of the stage it picks from
    picked = spec_of([{"name": "a", "sampler": "nsga2", "n_trials": 2,
                       "objectives": ["val_acc", "param_count"]},
                      {"name": "b", "sampler": "grid"},
                      {"name": "final", "sampler": "best", "from": "a"}])
    assert [o.metric for o in picked.stage_objectives(picked.stages[2])] == ["val_acc",
                                                                             "param_count"]
    assert picked.stage_objectives(picked.stages[1]) == (Objective("val_acc"),)


def test_objective_overrides() -> None:
    spec = spec_of([{"name": "a", "sampler": "random", "n_trials": 2, "objective": "val_loss"}])
    one = spec.with_overrides({"a.objectives": '["val_acc:max", "param_count:min"]'})
    assert [o.text for o in one.stage_objectives(one.stages[0])] == ["val_acc:max",
                                                                      "param_count:min"]
    top = spec.with_overrides({"objective": "train_acc"})
    assert top.objectives == (Objective("train_acc", "maximize"),)


@pytest.mark.parametrize(("text", "message"), [
    ('objective = "accuracy"', "objective: unknown metric 'accuracy' (objectives: val_acc"),
    ('objective = "val_acc:up"', "direction 'up' must be maximize (max) or minimize (min)"),
    ('objective = "val_acc"\nobjectives = ["val_loss"]', "give 'objective' or 'objectives'"),
    ('objectives = ["val_acc", "val_acc:min"]', "objectives names val_acc twice"),
    ('objectives = []', "objectives must be a non-empty list"),
    ('objective = { metric = "val_acc", way = "max" }', "objective.way: unknown key"),
])
def test_bad_objectives_are_one_line_errors(tmp_path: Path, text: str, message: str) -> None:
    assert_one_line_spec_error(tmp_path, f'name = "x"\n{text}\n'
                               '[space]\nlam = { low = 0.001, high = 0.1 }\n'
                               '[[stages]]\nsampler = "random"\nn_trials = 2\n', message)


@pytest.mark.parametrize(("stage", "message"), [
    ('sampler = "cmaes"\nn_trials = 2', "sampler='cmaes' takes one objective; with several"),
    ('sampler = "random"\nn_trials = 2\npruner = "median"',
     "Optuna's pruners take one objective"),
    ('sampler = "random"\nn_trials = 2\npick = "middle"', "pick='middle' must be one of"),
])
def test_what_several_objectives_cannot_do(tmp_path: Path, stage: str, message: str) -> None:
    assert_one_line_spec_error(tmp_path, 'name = "x"\nobjectives = ["val_acc", "param_count"]\n'
                               '[space]\nlam = { low = 0.001, high = 0.1 }\n'
                               f'[[stages]]\nname = "s"\n{stage}\n', message)


def test_a_stage_may_name_one_objective_under_a_multi_objective_sweep(tmp_path: Path) -> None:
    path = write_spec(tmp_path, 'name = "x"\nobjectives = ["val_acc", "param_count"]\n'
                      '[space]\nlam = { low = 0.001, high = 0.1 }\n'
                      '[[stages]]\nsampler = "cmaes"\nn_trials = 2\nobjective = "val_acc"\n')
    spec = load_spec(path)
    assert len(spec.stage_objectives(spec.stages[0])) == 1


# the front and the chosen point

def test_front_ranks_and_picks() -> None:
    # (accuracy, seconds): accuracy up, seconds down
    points = np.array([[0.5, 1.0], [0.6, 2.0], [0.55, 3.0], [0.9, 10.0], [0.6, 2.0]])
    maximize = [True, False]
    assert front_mask(points, maximize).tolist() == [True, True, False, True, True]
    assert pareto_ranks(points, maximize).tolist() == [0, 0, 1, 0, 0]
    assert choose(points, maximize, "accuracy") == 3  # the most accurate
    # scaled over the front: (0.5, 1) -> (0, 1), (0.6, 2) -> (0.25, 0.89), (0.9, 10) -> (1, 0);
    # the nearest to the ideal (1, 1) is (0.6, 2), the first of the two equal rows
    assert choose(points, maximize, "knee") == 1
    # the accuracy is found where it is listed
    objectives = [Objective("train_seconds", "minimize"), Objective("val_acc", "maximize")]
    assert choose_point(points[:, ::-1], objectives, "accuracy") == 3


# sweeps

def test_one_objective_minimised_drives_the_study_and_the_best_stage(
        tmp_path: Path, tiny_npz: Path) -> None:
    spec = spec_of([{"name": "search", "sampler": "grid"}, {"name": "final", "sampler": "best"}],
                   objective={"metric": "val_loss", "direction": "minimize"})
    url = f"sqlite:///{tmp_path / 'o.db'}"
    storage = Storage(url)
    run_sweep(spec, storage, data_source=str(tiny_npz), jobs=1)
    trials = storage.get_trials("o", stage="search")
    study = optuna.load_study(study_name="o/search", storage=url)
    assert study.direction == optuna.study.StudyDirection.MINIMIZE
    assert study.metric_names == ["val_loss"]
    for t in study.trials:
        record = next(r for r in trials if r.params["hidden"] == json.loads(t.params["hidden"]))
        # the stored val_loss is the validation loss of the last curve point
        last = [c for c in storage.get_curves([record.id]) if c.split == "val"][-1]
        assert record.metrics["val_loss"] == pytest.approx(last.loss)
        assert t.value == pytest.approx(record.metrics["val_loss"])
    lowest = min(trials, key=lambda t: t.metrics["val_loss"])
    [final] = storage.get_trials("o", stage="final")
    assert final.params["hidden"] == lowest.params["hidden"]


def test_two_objectives_front_narrowing_best_and_report(tmp_path: Path, tiny_npz: Path) -> None:
    spec = spec_of([{"name": "search", "sampler": "nsga2", "n_trials": 5},
                    {"name": "more", "sampler": "tpe", "n_trials": 2,
                     "narrow": {"from": "search"}},
                    {"name": "final", "sampler": "best", "from": "search", "pick": "knee"}],
                   {**HIDDEN, "lam": {"low": 1e-4, "high": 1e-1, "log": True}},
                   objectives=["val_acc:max", "param_count:min"])
    url = f"sqlite:///{tmp_path / 'm.db'}"
    storage = Storage(url)
    run_sweep(spec, storage, data_source=str(tiny_npz), jobs=1)
    study = optuna.load_study(study_name="o/search", storage=url)
    assert len(study.directions) == 2 and study.metric_names == ["val_acc", "param_count"]
    search = [t for t in storage.get_trials("o", stage="search")
              if t.state is TrialState.COMPLETE]
    by_number = {t.study_trial: t for t in storage.stage_slots(
        storage.get_stage(storage.get_sweep("o").id, 0).id)}
    for t in study.trials:
        [record] = storage.get_trials(trial_ids=[by_number[t.number].trial_id])
        assert t.values == pytest.approx([record.metrics["val_acc"],
                                          record.metrics["param_count"]])
    values = np.array([[t.metrics["val_acc"], t.metrics["param_count"]] for t in search])
    front = {t.id for t, on in zip(search, front_mask(values, [True, False]), strict=True) if on}
    # narrowing spans the front's configurations
    more = storage.get_stage(storage.get_sweep("o").id, 1)
    assert more is not None and f"the {len(front)} trials on the Pareto front of search" in \
        more.note
    lams = [t.params["lam"] for t in search if t.id in front]
    low, high = more.plan.space["lam"]["low"], more.plan.space["lam"]["high"]
    assert low <= min(lams) and max(lams) <= high
    # the best stage retrains the knee of the front
    knee = search[choose(values, [True, False], "knee")]
    [final] = storage.get_trials("o", stage="final")
    assert (final.params["hidden"], final.params["lam"]) == (knee.params["hidden"],
                                                            pytest.approx(knee.params["lam"]))
    assert "pick = knee on the Pareto front" in storage.get_stage(
        storage.get_sweep("o").id, 2).note
    # the report draws the front with the chosen point and lists it
    report = build_report(storage, "o", tmp_path / "report")
    assert any(c.file == "front-search.png" for c in report.charts)
    text = report.markdown.read_text()
    assert (r"Pareto front of stage search (val\_acc:max, param\_count:min; chosen: pick = "
            "knee)") in text  # Markdown's marks escaped
    assert f"| {knee.id} (chosen) |" in text
    assert load_trials(url, "o")["val_loss"].notna().all()


def test_a_fused_trial_pays_for_the_updates_it_trained(tiny_npz: Path) -> None:
    """The time objective's cost: each update's group time shared among the trials live at
    that update, so a trial that leaves the group early stops paying."""
    from numsweep.engine import TrialSpec

    split = make_split(load_dataset(tiny_npz), 200, 100, np.dtype("float64"))
    spec = TrialSpec.from_mapping({**FIXED, "hidden": [16], "n_s": 20, "cycles": 2, "seed": 1,
                                   "data_seed": 4})
    wild = spec.replace(seed=2, eta_max=1e150, eta_min=1e149)  # diverges at once
    steady, gone = train_group([spec, wild], split)[:2]
    assert gone.diverged and gone.updates < steady.updates
    assert trial_cost_seconds(gone) < trial_cost_seconds(steady)
    assert objective_metrics(steady)["cost_seconds"] == trial_cost_seconds(steady)
    with pytest.raises(SweepSpecError):
        spec_of([{"name": "a", "sampler": "gp", "n_trials": 2}],
                objectives=["val_acc", "train_seconds"])
