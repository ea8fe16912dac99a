"""Fused trial groups in sweeps (tiny generated data), batch groups (``grouping="batch"``;
slot groups: test_slots.py): grid and TPE stages trained grouped,
the same metrics as ungrouped, divergence and pruning inside a group, Ctrl-C and resume of a
grouped stage, ``sweep show`` and ``trial rerun`` of a grouped trial."""

from __future__ import annotations

import math
import os
import signal
from collections import Counter
from pathlib import Path
from typing import Any

import optuna
import pytest
from click.testing import CliRunner

from numsweep.cli import cli
from numsweep.engine import TrialSpec
from numsweep.storage import Storage, TrialRecord, TrialState
from numsweep.sweeps import parse_spec, resume_sweep, run_sweep
from numsweep.sweeps.grouping import auto_group_size, form_groups, proposal_lag
from numsweep.sweeps.seeds import stage_data_seed
from tests.conftest import for_model
from tests.sweeps.test_durable import (
    assert_each_planned_trial_complete_once,
    finish,
    numsweep,
    signal_while_trials_run,
    spec_dict,
    states_so_far,
    wait_for,
    write_spec,
)

FIXED = {"hidden": [16], "n_train": 300, "n_val": 100, "batch_size": 50, "cycles": 1,
         "eval_train": 100, "curve_points": 3}


def make(stages: list[dict[str, Any]], space: dict[str, Any] | None = None,
         name: str = "g", **fixed: Any) -> Any:
    space = space if space is not None else {
        "lam": {"low": 1e-4, "high": 1.0, "log": True, "grid": 4}}
    return parse_spec({"name": name, "seed": 5, "fixed": for_model({**FIXED, **fixed}),
                       "space": space,
                       "stages": stages}, "<test>")


def db(tmp_path: Path, name: str) -> Storage:
    return Storage(f"sqlite:///{tmp_path / (name + '.db')}")


def by_slot(storage: Storage, name: str) -> dict[tuple[str | None, int | None], TrialRecord]:
    return {(t.stage, t.slot): t for t in storage.get_trials(name)}


def test_grid_stage_grouped_gives_the_metrics_it_gives_ungrouped(tmp_path: Path,
                                                                  tiny_npz: Path) -> None:
    spec = make([{"name": "grid", "sampler": "grid"}], dtype="float64", model="convnet",
                f=4, nf=3, n_s=6, cycles=2)
    grouped, alone = db(tmp_path, "grouped"), db(tmp_path, "alone")
    run_sweep(spec, grouped, data_source=str(tiny_npz), jobs=1, group_size=4, grouping="batch")
    run_sweep(spec, alone, data_source=str(tiny_npz), jobs=2, group_size=1, grouping="batch")
    g, a = by_slot(grouped, "g"), by_slot(alone, "g")
    assert sorted(g) == sorted(a) and len(g) == 4
    for key, trial in g.items():
        other = a[key]
        assert trial.state is other.state is TrialState.COMPLETE
        assert trial.seed == other.seed and trial.params == other.params
        for metric in ("val_acc", "test_acc", "train_acc"):
            assert trial.metrics[metric] == pytest.approx(other.metrics[metric], rel=1e-10)
        curves = grouped.get_curves([trial.id])
        others = alone.get_curves([other.id])
        assert [(c.step, c.split) for c in curves] == [(c.step, c.split) for c in others]
        for c, o in zip(curves, others, strict=True):
            assert (c.loss, c.cost, c.acc) == pytest.approx((o.loss, o.cost, o.acc), rel=1e-10)
    # both seeds are the trial's parameters; the data seed is the stage's
    assert {t.params["data_seed"] for t in g.values()} == {stage_data_seed(5, 0)}
    assert len({t.params["seed"] for t in g.values()}) == 4
    # which group each trained in
    assert {(t.group_id, t.group_size) for t in g.values()} == {(min(t.id for t in g.values()),
                                                                 4)}
    assert {t.group_size for t in a.values()} == {1}
    [stage] = grouped.list_stages(grouped.get_sweep("g").id)
    assert stage.plan.group_size == 4 and not stage.plan.group_auto
    study = optuna.load_study(study_name="g/grid", storage=grouped.url)
    assert {t.user_attrs["group_size"] for t in study.trials} == {4}
    assert {t.user_attrs["group"] for t in study.trials} == {min(t.id for t in g.values())}
    assert {t.user_attrs["param_data_seed"] for t in study.trials} == {stage_data_seed(5, 0)}


def test_tpe_stage_with_group_size_four_asks_in_batches(tmp_path: Path,
                                                       tiny_npz: Path) -> None:
    spec = make([{"name": "tpe", "sampler": "tpe", "n_trials": 8, "sync": 4}],
                space={"lam": {"low": 1e-4, "high": 1.0, "log": True}})
    one, two = db(tmp_path, "one"), db(tmp_path, "two")
    run_sweep(spec, one, data_source=str(tiny_npz), jobs=1, group_size=4, grouping="batch")
    run_sweep(spec, two, data_source=str(tiny_npz), jobs=2, group_size=4, grouping="batch")
    trials = one.get_trials("g")
    assert Counter(t.state for t in trials) == {TrialState.COMPLETE: 8}
    assert sorted(Counter(t.group_id for t in trials).values()) == [4, 4]
    assert {t.group_size for t in trials} == {4}
    # the same stored group size: the same proposals with one or two jobs
    o, t2 = by_slot(one, "g"), by_slot(two, "g")
    assert {k: v.params["lam"] for k, v in o.items()} == {
        k: v.params["lam"] for k, v in t2.items()}
    assert proposal_lag(4, 4) == 4 and proposal_lag(4, 3) == 6 and proposal_lag(4, 1) == 4


def test_a_diverging_trial_fails_in_its_group_and_the_others_complete(
        tmp_path: Path, tiny_npz: Path) -> None:
    spec = make([{"name": "l", "sampler": "list", "configs": [
        {"eta_max": 0.05, "lam": 1e-3}, {"eta_max": 1e6, "lam": 1e-3},
        {"eta_max": 0.05, "lam": 1e-2}]}],
        space={"eta_max": {"low": 1e-3, "high": 1e6, "log": True},
               "lam": {"low": 1e-4, "high": 1.0, "log": True}})
    storage = db(tmp_path, "div")
    [summary] = run_sweep(spec, storage, data_source=str(tiny_npz), jobs=1, group_size=3,
                          grouping="batch")
    fine, diverged, other = storage.get_trials("g")
    assert diverged.state is TrialState.FAILED and "diverged" in diverged.message
    assert fine.state is other.state is TrialState.COMPLETE
    assert {t.group_size for t in (fine, diverged, other)} == {3}
    assert summary.counts == {"FAILED": 1, "COMPLETE": 2}
    # the survivors got what they get without the diverging trial beside them
    alone = db(tmp_path, "alone")
    run_sweep(spec, alone, data_source=str(tiny_npz), jobs=1, group_size=1, grouping="batch")
    lone = storage_metrics(alone)
    assert storage_metrics(storage)[0] == pytest.approx(lone[0], rel=1e-5)
    assert storage_metrics(storage)[2] == pytest.approx(lone[2], rel=1e-5)


def storage_metrics(storage: Storage) -> list[float]:
    """Each trial's last validation loss (NaN for a trial without curves)."""
    out = []
    for t in storage.get_trials("g"):
        val = [c.loss for c in storage.get_curves([t.id]) if c.split == "val"]
        out.append(val[-1] if val else math.nan)
    return out


def test_a_pruned_trial_leaves_its_group_and_the_others_go_on(tmp_path: Path,
                                                             tiny_npz: Path) -> None:
    good = {"lam": 1e-3}
    spec = make([{"name": "l", "sampler": "list", "pruner": "median", "sync": 1,
                  "configs": [good, good, good, good, {"lam": 5.0}, good]}],
                space={"lam": {"low": 1e-4, "high": 10.0, "log": True}}, cycles=3,
                eta_max=0.05)
    storage = db(tmp_path, "prune")
    run_sweep(spec, storage, data_source=str(tiny_npz), jobs=1, group_size=2, grouping="batch")
    trials = storage.get_trials("g")
    states = [t.state for t in trials]
    assert states == [TrialState.COMPLETE] * 4 + [TrialState.PRUNED, TrialState.COMPLETE]
    pruned, partner = trials[4], trials[5]
    assert pruned.group_id == partner.group_id == pruned.id and pruned.group_size == 2
    assert pruned.metrics["updates"] < partner.metrics["updates"]
    assert "stopped by the pruner" in pruned.message


def test_ctrl_c_of_a_grouped_stage_then_resume_completes_each_trial_once(
        tmp_path: Path, tiny_npz: Path) -> None:
    name = "grp"
    # groups long enough to be running still when the sweep acts on the signal
    path = write_spec(tmp_path, spec_dict(name, n_trials=12, cycles=40, grid=8))
    url = f"sqlite:///{tmp_path / (name + '.db')}"
    proc = numsweep("sweep", "run", path, "--jobs", "2", "--group-size", "4",
                    "--grouping", "batch", "--db", url,
                    "--data", tiny_npz)
    storage = Storage(url)

    def some_done_some_running() -> bool:
        counts = states_so_far(storage, name)
        return counts[TrialState.COMPLETE] >= 4 and counts[TrialState.RUNNING] >= 1

    wait_for("complete and running trials", some_done_some_running, [proc])
    signal_while_trials_run(proc, storage, name, lambda pid: os.killpg(pid, signal.SIGINT))
    code, _out, err = finish(proc)
    assert code == 130, err
    kept = {t.id: t.metrics["val_acc"] for t in storage.get_trials(name)
            if t.state is TrialState.COMPLETE}
    assert any(t.state is TrialState.INTERRUPTED for t in storage.get_trials(name))
    resume_sweep(name, storage, jobs=2)
    assert_each_planned_trial_complete_once(storage, name)
    assert {t.id: t.metrics["val_acc"] for t in storage.get_trials(name)
            if t.id in kept} == kept
    complete = [t for t in storage.get_trials(name) if t.state is TrialState.COMPLETE]
    assert max(t.group_size or 0 for t in complete) == 4


def test_sweep_show_says_how_trials_were_grouped_and_rerun_is_the_same(
        tmp_path: Path, tiny_npz: Path) -> None:
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    runner = CliRunner()
    result = runner.invoke(cli, [
        "sweep", "run", "lambda-search", "n_train=300", "n_val=100", "batch_size=50",
        "hidden=16", "eval_train=100", "coarse.cycles=1", "fine.n_trials=4", "fine.cycles=1",
        "final.n_val=100", "final.n_train=300", "final.cycles=1", "dtype=float64",
        "--jobs", "1", "--group-size", "4", "--grouping", "batch", "--db", url,
        "--data", str(tiny_npz)],
        catch_exceptions=False)
    assert result.exit_code == 0, result.output
    show = runner.invoke(cli, ["sweep", "show", "lambda-search", "--db", url])
    assert "grouped: 8 trials in 2 fused groups (2 of 4) (group size 4, batch)" in show.output
    grouped = [t for t in Storage(url).get_trials("lambda-search")
               if t.group_size == 4 and t.state is TrialState.COMPLETE]
    rerun = runner.invoke(cli, ["trial", "rerun", str(grouped[1].id), "--db", url])
    assert rerun.exit_code == 0, rerun.output
    assert f"same metrics as trial {grouped[1].id} (trained alone; " in rerun.output
    assert f"fused group {grouped[1].group_id} of 4" in rerun.output


def test_automatic_group_size_and_groups_by_key() -> None:
    mlp = TrialSpec(model="mlp", hidden=(50,))
    assert auto_group_size(mlp, 8, 2, (3, 32, 32), 10, memory=2**34) == 4
    assert auto_group_size(mlp, 100, 1, (3, 32, 32), 10, memory=2**34) == 32
    assert auto_group_size(mlp, 8, 2, (3, 32, 32), 10, memory=2**20) == 1  # no room
    # proposals that wait for results: not from --jobs
    assert auto_group_size(mlp, 20, 1, (3, 32, 32), 10, sync=4, memory=2**34) == \
        auto_group_size(mlp, 20, 4, (3, 32, 32), 10, sync=4, memory=2**34) == 2
    # every model fuses, the three-layer ConvNet too, but it is faster alone unless
    # --group-size says otherwise (then form_groups groups it like the others)
    assert auto_group_size(TrialSpec(model="convnet3"), 8, 1, (3, 32, 32), 10,
                           memory=2**34) == 1
    specs = [TrialSpec(lam=0.1), TrialSpec(lam=0.2, hidden=(8,)), TrialSpec(lam=0.3),
             TrialSpec(model="convnet3"), TrialSpec(lam=0.4),
             TrialSpec(model="convnet3", lam=0.5)]
    groups = form_groups(specs, lambda s: s, 2)
    assert [[s.lam for s in g] for g in groups] == [[0.1, 0.3], [0.2], [0.0, 0.5], [0.4]]


def test_a_lone_trial_is_one_trial_in_the_grouping_words() -> None:
    from numsweep.storage import StagePlan
    from numsweep.sweeps.report import StageReport

    plan = StagePlan.from_dict({"space": {}, "group_size": 1, "group_auto": True})
    one = StageReport("final", "best", plan, "", {"COMPLETE": 1}, None, groups={7: 1})
    assert one.grouping.startswith("1 trial one at a time")
    two = StageReport("final", "best", plan, "", {"COMPLETE": 2}, None, groups={7: 1, 8: 1})
    assert two.grouping.startswith("2 trials one at a time")


def test_a_finished_trial_reports_its_stored_train_and_eval_seconds_and_its_group(
        tmp_path: Path, tiny_npz: Path) -> None:
    """The progress line's time is the one the trial stores and the planner estimates (its
    share of the group's), not the group's wall time since it was queued."""
    spec = make([{"name": "grid", "sampler": "grid"}])
    storage = db(tmp_path, "seconds")
    events: list[Any] = []
    run_sweep(spec, storage, data_source=str(tiny_npz), jobs=1, group_size=4, grouping="batch",
              estimate=lambda _spec: 1.0, on_event=events.append)
    finished = {e.trial_id: e for e in events if e.kind == "finished"}
    trials = storage.get_trials("g")
    assert len(finished) == len(trials) == 4
    for t in trials:
        event = finished[t.id]
        assert event.seconds == pytest.approx(t.metrics["train_seconds"]
                                              + t.metrics["eval_seconds"])
        assert event.group_size == 4 and event.estimate == 1.0
