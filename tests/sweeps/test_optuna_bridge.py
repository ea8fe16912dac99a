"""What numsweep says to Optuna: the study as a full record of each trial, Optuna's log level
left alone, and a guard on the Optuna behaviour numsweep relies on outside its public API."""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import optuna
import pytest

from numsweep.storage import SlotRecord, Storage, TrialState
from numsweep.sweeps import parse_spec, run_sweep
from numsweep.sweeps.optuna_bridge import (
    FIXED_PARAMS_KEY,
    METRIC_ATTRS,
    OBJECTIVE,
    TRIAL_ID_ATTR,
    pruner_state,
    queued_trial,
    quiet,
    report_running,
    tell,
    trials_before,
)
from tests.sweeps.test_durable import spec_dict


def test_optuna_private_behaviour_numsweep_relies_on_still_holds() -> None:
    """Fails loudly when an Optuna release changes what :func:`pruner_state` relies on:
    pruners keep their state in trial system attributes, and ``enqueue_trial`` keeps its
    values under ``fixed_params`` (which must not be copied as pruner state)."""
    study = optuna.create_study(direction="maximize",
                                pruner=optuna.pruners.SuccessiveHalvingPruner(min_resource=1))
    study.enqueue_trial({"x": 0.5})
    trial = study.ask()
    assert trial.suggest_float("x", 0.0, 1.0) == 0.5
    frozen = study.get_trials(deepcopy=False)[trial.number]
    assert FIXED_PARAMS_KEY in frozen.system_attrs, (
        f"Optuna {optuna.__version__} no longer keeps enqueued values under "
        f"{FIXED_PARAMS_KEY!r}: update numsweep.sweeps.optuna_bridge.pruner_state")
    for step in range(1, 5):
        trial.report(0.1 * step, step)
        trial.should_prune()
    frozen = study.get_trials(deepcopy=False)[trial.number]
    state = pruner_state(frozen)
    assert any(k.startswith("completed_rung_") for k in state), (
        f"Optuna {optuna.__version__}'s SuccessiveHalvingPruner no longer keeps its rungs in "
        f"trial system attributes ({sorted(frozen.system_attrs)}): numsweep's pruning "
        f"snapshots (numsweep.sweeps.optuna_bridge.pruner_state) need another way")
    assert FIXED_PARAMS_KEY not in state


def test_a_queued_trial_left_by_a_dead_process_is_taken_not_doubled() -> None:
    study = optuna.create_study(direction="maximize")
    study.enqueue_trial({"x": 0.25}, user_attrs={"ns_config": 3})  # older numsweep, died
    trial = queued_trial(study, {"x": 0.25}, 3)
    assert trial.suggest_float("x", 0.0, 1.0) == 0.25
    assert len(study.get_trials()) == 1
    # one left by this version: the configuration kept out of the user attributes
    study.add_trial(optuna.trial.create_trial(
        state=optuna.trial.TrialState.WAITING,
        system_attrs={"fixed_params": {"x": 0.5}, "ns_config": 4}))
    trial = queued_trial(study, {"x": 0.5}, 4)
    assert trial.suggest_float("x", 0.0, 1.0) == 0.5
    assert len(study.get_trials()) == 2
    assert study.get_trials()[1].user_attrs == {}


def test_importing_numsweep_leaves_optunas_log_level_alone() -> None:
    code = ("import optuna; before = optuna.logging.get_verbosity(); "
            "import numsweep.sweeps, numsweep.cli; "
            "assert optuna.logging.get_verbosity() == before, optuna.logging.get_verbosity()")
    subprocess.run([sys.executable, "-c", code], check=True)
    logger = logging.getLogger("optuna")
    level = logger.level
    with quiet():
        assert logger.getEffectiveLevel() >= logging.WARNING
    assert logger.level == level


@pytest.mark.parametrize("pruner", ["none", "median"])
def test_the_study_is_a_full_record_of_each_trial(tmp_path: Path, tiny_npz: Path,
                                                  pruner: str) -> None:
    raw = spec_dict("full", n_trials=3, cycles=2)
    raw["fixed"]["curve_points"] = 4
    raw["stages"][1]["pruner"] = pruner
    url = f"sqlite:///{tmp_path / 'full.db'}"
    storage = Storage(url)
    run_sweep(parse_spec(raw, "test"), storage, data_source=str(tiny_npz), jobs=1)
    trials = {t.id: t for t in storage.get_trials("full")}
    for stage in ("coarse", "fine"):
        study = optuna.load_study(study_name=f"full/{stage}", storage=url)
        assert study.metric_names == [OBJECTIVE]
        attrs = study.user_attrs
        assert attrs["sampler"] == ("grid" if stage == "coarse" else "tpe")
        assert attrs["stage_spec"]["name"] == stage
        assert attrs["fixed"]["n_train"] == 200
        assert stage in attrs["description"]
        if stage == "fine":
            assert "narrow" in attrs["stage_spec"] and "lam:" in attrs["narrowing"]
        ran = [t for t in study.get_trials() if not t.user_attrs.get("reused")]
        assert ran and all(t.state is not optuna.trial.TrialState.FAIL for t in ran)
        for t in study.get_trials():  # what the dashboard lists: numsweep's id first
            assert next(iter(t.user_attrs)) == TRIAL_ID_ATTR, list(t.user_attrs)
            assert not [k for k in t.user_attrs if k.startswith("ns_")], list(t.user_attrs)
        for t in ran:
            record = trials[t.user_attrs[TRIAL_ID_ATTR]]
            for name in METRIC_ATTRS:
                assert t.user_attrs[name] == pytest.approx(record.metrics[name])
            assert t.user_attrs["param_n_train"] == 200
            assert t.user_attrs["param_seed"] == record.seed
            assert "param_lam" not in t.user_attrs  # searched: the trial's own parameter
            assert t.params["lam"] == pytest.approx(record.params["lam"])
            val = [(c.step, c.acc) for c in storage.get_curves([record.id]) if c.split == "val"]
            assert len(val) >= 4
            if record.state is TrialState.COMPLETE:
                assert t.value == pytest.approx(record.metrics["val_acc"])
                steps, accs = zip(*sorted(t.intermediate_values.items()), strict=True)
                assert list(steps) == [step for step, _ in val]
                assert list(accs) == pytest.approx([acc for _, acc in val])


def test_a_running_trials_values_never_reach_a_pruning_snapshot_and_the_end_wins(
        tmp_path: Path) -> None:
    """What a running trial reports as it goes (report_running) is its Optuna trial's
    intermediate values at once; a pruning snapshot taken meanwhile holds none of them (as
    before: its decisions never depend on how far another trial had got); telling the
    trial writes its final curve over them, each step once (an earlier attempt's value
    at a step is replaced, not kept)."""
    url = f"sqlite:///{tmp_path / 'o.db'}"
    ostorage = optuna.storages.RDBStorage(url)
    study = optuna.create_study(storage=ostorage, study_name="s/coarse", direction="maximize")
    with quiet():
        running = study.ask()
        report_running(ostorage, "s/coarse", running.number, [(0, 0.1), (4, 0.3)])
        assert study.get_trials()[0].intermediate_values == {0: 0.1, 4: 0.3}
        assert [t.intermediate_values for t in trials_before(study, 1)] == [{}]
        record = SlotRecord(7, 0, 0, 1, TrialState.COMPLETE, running.number, "w:1", None,
                            0.5)
        tell(study, ostorage, [record], [(0, 0.1), (4, 0.35), (8, 0.5)], [0.5])
        [told] = study.get_trials()
        assert told.state is optuna.trial.TrialState.COMPLETE and told.value == 0.5
        assert told.intermediate_values == {0: 0.1, 4: 0.35, 8: 0.5}
        # told: what comes late from the trial's run changes nothing
        report_running(ostorage, "s/coarse", running.number, [(12, 0.9)])
        assert study.get_trials()[0].intermediate_values == {0: 0.1, 4: 0.35, 8: 0.5}


def test_halving_judges_the_first_trials_at_their_first_rung_before_any_completes() -> None:
    """Eight trials that start together (a slot group) report at step 1600 with no trial
    complete: Optuna's automatic minimum resource would wait; numsweep's takes the first
    reported step, so all but the best so far (the top quarter) are pruned there."""
    from numsweep.sweeps.optuna_bridge import make_pruner

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize", pruner=make_pruner("halving"))
    trials = [study.ask() for _ in range(8)]
    verdicts = []
    for t, value in zip(trials, [0.5, 0.4, 0.6, 0.3, 0.2, 0.7, 0.1, 0.35], strict=True):
        t.report(value, 1600)
        verdicts.append(t.should_prune())
    # promoted: a value in the top quarter of those at the rung so far (the best alone
    # while fewer than four are there)
    assert verdicts == [False, True, False, True, True, False, True, True]
    # Optuna's own with min_resource="auto" prunes nothing here
    plain = optuna.create_study(direction="maximize",
                                pruner=optuna.pruners.SuccessiveHalvingPruner())
    t = plain.ask()
    t.report(0.1, 1600)
    assert not t.should_prune()
