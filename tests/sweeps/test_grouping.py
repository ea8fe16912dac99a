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
from numsweep.sweeps.grouping import (
    auto_group_size,
    candidate_sizes,
    fastest_size,
    form_groups,
    proposal_lag,
)
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
    # the resume trains the stage planned by the run in the run's stored groups of 4 (a
    # stage the resume plans takes its own automatic size)
    complete = [t for t in storage.get_trials(name, stage="coarse")
                if t.state is TrialState.COMPLETE]
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


def pace_of(seconds: dict[int, float]) -> Any:
    """An injected measurement: ``seconds`` per trial-update by size, and the sizes asked."""
    asked: list[list[int]] = []

    def measure(sizes: Any) -> dict[int, float]:
        asked.append(list(sizes))
        return {k: v for k, v in seconds.items() if k in sizes}

    measure.asked = asked  # type: ignore[attr-defined]
    return measure


MLP = TrialSpec(model="mlp", hidden=(50,))
SHAPE = (32, 32, 3)


def test_the_automatic_size_is_the_fastest_measured_per_trial() -> None:
    # the course ConvNet's shape on a 2-core EPYC: a pair slower than a lone trial
    measure = pace_of({1: 2.1e-3, 2: 3.3e-3, 4: 1.6e-3, 8: 1.35e-3, 16: 1.4e-3, 32: 1.5e-3})
    choice = auto_group_size(MLP, 100, 1, SHAPE, 10, memory=2**34, measure=measure)
    assert choice.size == 8 and choice.pace[2] == 3.3e-3
    assert measure.asked == [[1, 2, 4, 8, 16, 32]]  # at most MAX_AUTO_GROUP on a CPU
    # every size slower per trial than a lone trial: one at a time
    slower = pace_of({1: 1e-3, 2: 1.5e-3, 4: 1.2e-3, 8: 1.1e-3})
    assert auto_group_size(MLP, 8, 1, SHAPE, 10, memory=2**34, measure=slower).size == 1
    # as fast as a lone trial, or faster by less than the measurement's spread: no gain
    even = pace_of({1: 1e-3, 2: 1e-3})
    assert auto_group_size(MLP, 2, 1, SHAPE, 10, memory=2**34, measure=even).size == 1
    close = pace_of({1: 1e-3, 2: 0.97e-3, 4: 0.99e-3})
    assert auto_group_size(MLP, 4, 1, SHAPE, 10, memory=2**34, measure=close).size == 1
    assert fastest_size({1: 1.0, 2: 0.94}, 2) == 2
    # sizes as fast as the fastest within the spread: the smallest of them
    assert fastest_size({1: 1.0, 2: 0.9, 4: 0.72, 8: 0.70, 16: 0.71, 32: 0.69}, 32) == 4
    assert fastest_size({1: 1.0, 2: 0.9, 4: 0.8, 8: 0.6, 16: 0.5}, 32) == 16


def test_the_automatic_size_keeps_to_the_trials_jobs_and_memory() -> None:
    falling = {k: 1.0 / k for k in range(1, 257)}
    # the trials shared out over the jobs: 20 over 2 is 10, measured too
    measure = pace_of(falling)
    assert auto_group_size(MLP, 20, 2, SHAPE, 10, memory=2**34, measure=measure).size == 10
    assert measure.asked == [[1, 2, 4, 8, 10]]
    # no room in memory: nothing measured
    tight = pace_of(falling)
    assert auto_group_size(MLP, 8, 2, SHAPE, 10, memory=2**20, measure=tight).size == 1
    assert tight.asked == []
    # a stage of one trial: nothing measured
    assert auto_group_size(MLP, 1, 1, SHAPE, 10, memory=2**34, measure=tight).size == 1
    assert tight.asked == []
    # on a GPU up to 256 in a group, as its memory allows
    gpu = TrialSpec(model="mlp", hidden=(50,), device="cuda")
    assert auto_group_size(gpu, 1000, 1, SHAPE, 10, memory=2**36,
                           measure=pace_of(falling)).size == 256
    assert auto_group_size(gpu, 1000, 1, SHAPE, 10, memory=2**24,
                           measure=pace_of(falling)).size < 256


def test_a_stage_that_proposes_from_results_is_sized_like_a_grid() -> None:
    """No ``sync // 2``: with slots a freed slot refills at once, so such a stage needs no
    small groups; the sampler does not enter the choice."""
    measure = pace_of({1: 1.0, 2: 0.9, 4: 0.5, 8: 0.6, 16: 0.7, 20: 0.8})
    assert auto_group_size(MLP, 20, 1, SHAPE, 10, memory=2**34, measure=measure).size == 4


def test_without_a_measurement_the_cap_and_the_three_layer_convnet_alone() -> None:
    def broken(_sizes: Any) -> dict[int, float]:
        raise RuntimeError("no timer here")

    assert auto_group_size(MLP, 8, 1, SHAPE, 10, memory=2**34, measure=broken).size == 8
    assert auto_group_size(MLP, 8, 1, SHAPE, 10, memory=2**34,
                           measure=pace_of({})).pace == {}
    convnet3 = TrialSpec(model="convnet3")
    assert auto_group_size(convnet3, 8, 1, SHAPE, 10, memory=2**34, measure=broken).size == 1
    # measured, the three-layer ConvNet groups where that pays
    assert auto_group_size(convnet3, 8, 1, SHAPE, 10, memory=2**34,
                           measure=pace_of({1: 2.0, 2: 1.0, 4: 1.5, 8: 1.8})).size == 2


def test_candidate_sizes_are_one_the_powers_of_two_and_the_cap() -> None:
    assert candidate_sizes(1) == [1]
    assert candidate_sizes(2) == [1, 2]
    assert candidate_sizes(12) == [1, 2, 4, 8, 12]
    assert candidate_sizes(32) == [1, 2, 4, 8, 16, 32]
    assert fastest_size({1: 1.0, 2: 0.5, 4: 0.4}, 2) == 2  # never past the cap


def test_groups_form_by_key() -> None:
    specs = [TrialSpec(lam=0.1), TrialSpec(lam=0.2, hidden=(8,)), TrialSpec(lam=0.3),
             TrialSpec(model="convnet3"), TrialSpec(lam=0.4),
             TrialSpec(model="convnet3", lam=0.5)]
    groups = form_groups(specs, lambda s: s, 2)
    assert [[s.lam for s in g] for g in groups] == [[0.1, 0.3], [0.2], [0.0, 0.5], [0.4]]


def test_a_tpe_stage_takes_the_measured_size_stores_and_shows_it(
        tmp_path: Path, tiny_npz: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from numsweep.sweeps import pace_cache

    monkeypatch.setenv("NUMSWEEP_CACHE", str(tmp_path / "cache"))
    seen: list[tuple[TrialSpec, list[int], int]] = []

    def measure(spec: TrialSpec, shape: Any, classes: int, sizes: Any,
                threads: int) -> dict[int, float]:
        seen.append((spec, list(sizes), threads))
        return {1: 2.1e-3, 2: 2.4e-3, 4: 1.61e-3, 8: 1.35e-3}

    monkeypatch.setattr(pace_cache, "engine_measure", measure)
    spec = make([{"name": "tpe", "sampler": "tpe", "n_trials": 8, "sync": 4}],
                space={"lam": {"low": 1e-4, "high": 1.0, "log": True}})
    storage = db(tmp_path, "paced")
    run_sweep(spec, storage, data_source=str(tiny_npz), jobs=1)
    [stage] = storage.list_stages(storage.get_sweep("g").id)
    assert stage.plan.group_size == 8 and stage.plan.group_auto  # not sync // 2
    assert stage.plan.group_pace == {1: 2.1e-3, 2: 2.4e-3, 4: 1.61e-3, 8: 1.35e-3}
    [(measured, sizes, threads)] = seen
    assert sizes == [1, 2, 4, 8] and threads == 1
    assert measured.model == "mlp" and measured.hidden == (16,)
    assert {t.group_size for t in storage.get_trials("g")} == {8}
    show = CliRunner().invoke(cli, ["sweep", "show", "g", "--db", storage.url])
    assert ("grouped: 8 trials in 1 slot group (8 trials through 8 slots) (group size 8, "
            "slots, automatic; measured per trial-update: K=1 2.10 ms, 2 2.40 ms, 4 1.61 ms, "
            "8 1.35 ms)") in show.output
    # a second sweep of the same shapes: from the cache, not measured again
    run_sweep(make([{"name": "tpe", "sampler": "tpe", "n_trials": 8, "sync": 4}],
                   space={"lam": {"low": 1e-4, "high": 1.0, "log": True}}, name="h"),
              storage, data_source=str(tiny_npz), jobs=1)
    assert len(seen) == 1


def test_no_measurement_with_a_group_size_given(
        tmp_path: Path, tiny_npz: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from numsweep.sweeps import pace_cache

    monkeypatch.setenv("NUMSWEEP_CACHE", str(tmp_path / "cache"))

    def measure(*_args: Any) -> dict[int, float]:
        raise AssertionError("measured with --group-size given")

    monkeypatch.setattr(pace_cache, "engine_measure", measure)
    storage = db(tmp_path, "given")
    run_sweep(make([{"name": "grid", "sampler": "grid"}]), storage,
              data_source=str(tiny_npz), jobs=1, group_size=2)
    [stage] = storage.list_stages(storage.get_sweep("g").id)
    assert stage.plan.group_size == 2 and stage.plan.group_pace == {}
    assert not (tmp_path / "cache").exists()


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
