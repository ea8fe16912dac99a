"""``sampler = "pbt"``: its spec checks, its population planned once from the sweep seed, a
run stored as normal trials with the lineage, the same history twice, a kill and resume from
the checkpoint, a rerun of a member, a best stage that replays the best member's schedule."""

from __future__ import annotations

import copy
import math
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from numsweep.engine import TrialSpec
from numsweep.storage import Storage, TrialState
from numsweep.sweeps import parse_spec, rerun_trial, resume_sweep, run_sweep
from numsweep.sweeps.planning import _pbt_schedule
from numsweep.sweeps.population import initial_values
from numsweep.sweeps.spec import ParamSpace, SweepSpecError
from tests.killed_child import run_killed_after_second_save

FIXED = {"hidden": [16], "n_train": 300, "n_val": 100, "batch_size": 50, "schedule": "constant",
         "n_updates": 24, "eval_train": 100, "curve_points": 4}
SPACE = {"lam": {"low": 1e-4, "high": 1e-1, "log": True},
         "eta_max": {"low": 1e-3, "high": 0.3, "log": True}}


def raw_spec(name: str = "p", seed: int = 3, **stage: Any) -> dict[str, Any]:
    pop = {"name": "pop", "sampler": "pbt", "population": 4, "interval": 6, **stage}
    return {"name": name, "seed": seed, "fixed": dict(FIXED), "space": copy.deepcopy(SPACE),
            "stages": [pop, {"name": "final", "sampler": "best"}]}


@pytest.mark.parametrize(("key", "value", "message"), [
    ("population", 1, "stages.pop.population=1 must be an integer of at least 2"),
    ("population", 2.5, "stages.pop.population=2.5 must be an integer of at least 2"),
    ("interval", 0, "stages.pop.interval=0 must be a positive integer"),
    ("interval", 24, "stages.pop.interval=24 must be below the run's 24 updates"),
    ("quantile", 0, "stages.pop.quantile=0 must be a number in (0, 0.5]"),
    ("quantile", 0.6, "stages.pop.quantile=0.6 must be a number in (0, 0.5]"),
    ("metric", "test_acc", "stages.pop.metric='test_acc' must be one of val_acc, val_loss"),
    ("metric_subset", 0, "stages.pop.metric_subset=0 must be a positive integer"),
    ("metric_subset", 101, "stages.pop.metric_subset=101 is more than n_val=100"),
    ("resample_probability", 1.5,
     "stages.pop.resample_probability=1.5 must be a number in [0, 1]"),
    ("mutations", {"lam": [0, 2]}, "stages.pop.mutations.lam=[0, 2] must be a non-empty list"),
    ("mutations", {"eps": [0.5]}, "stages.pop.mutations.eps: not explored by this stage"),
    ("mutations", {"lam": [0.5, 2.0]},
     "stages.pop.mutations: every explored parameter is perturbed by the same factors"),
    ("n_trials", 4, "stages.pop.n_trials: a pbt stage trains its population"),
    ("pruner", "median", "stages.pop.pruner: a pbt stage trains its population"),
])
def test_each_bad_pbt_value_is_a_one_line_spec_error(key: str, value: Any,
                                                     message: str) -> None:
    with pytest.raises(SweepSpecError) as caught:
        parse_spec(raw_spec(**{key: value}), "<test>")
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_an_interval_is_required_and_pbt_keys_belong_to_pbt_stages() -> None:
    raw = raw_spec()
    del raw["stages"][0]["interval"]
    with pytest.raises(SweepSpecError, match=r"stages\.pop\.interval is required"):
        parse_spec(raw, "<test>")
    raw = raw_spec()
    raw["stages"][1]["population"] = 4
    with pytest.raises(SweepSpecError, match=r"stages\.final\.population: only a pbt stage"):
        parse_spec(raw, "<test>")


@pytest.mark.parametrize(("space", "message"), [
    ({"seed": {"type": "int", "low": 0, "high": 9}}, "space.seed cannot be explored by pbt"),
    ({"batch_size": {"choices": [50, 100]}}, "space.batch_size cannot be explored by pbt"),
    ({"lam": {"choices": [0.1, 0.01]}}, "space.lam must be a float range"),
    ({}, "a pbt stage explores the space, and it is empty"),
])
def test_explored_parameters_are_per_trial_float_ranges(space: dict[str, Any],
                                                        message: str) -> None:
    raw = raw_spec()
    raw["space"] = space
    for name in space:
        raw["fixed"].pop(name, None)
    with pytest.raises(SweepSpecError) as caught:
        parse_spec(raw, "<test>")
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_a_pbt_stage_round_trips_and_takes_overrides() -> None:
    spec = parse_spec(raw_spec(mutations={"lam": [0.5, 2.0], "eta_max": [0.5, 2.0]},
                               metric="val_loss", metric_subset=50), "<test>")
    assert parse_spec(spec.to_dict(), "<again>").stages == spec.stages
    pbt = spec.with_overrides({"pop.population": "8"}).stages[0].pbt
    assert pbt is not None and (pbt.population, pbt.metric, pbt.factors("lam")) == (
        8, "val_loss", (0.5, 2.0))


def test_the_initial_population_is_drawn_inside_the_ranges_from_the_sweep_seed() -> None:
    space = {"lam": ParamSpace("lam", "float", low=1e-4, high=1e-1, log=True),
             "dropout": ParamSpace("dropout", "float", low=0.0, high=0.5)}
    first = initial_values(space, 16, 3, 0)
    assert first == initial_values(space, 16, 3, 0)
    assert first != initial_values(space, 16, 4, 0) and first != initial_values(space, 16, 3, 1)
    assert all(1e-4 <= m["lam"] <= 1e-1 and 0 <= m["dropout"] <= 0.5 for m in first)
    assert len({m["lam"] for m in first}) == 16
    # log ranges are drawn in log space: about as many members below 1e-2.5 as above
    below = sum(math.log10(m["lam"]) < -2.5 for m in first)
    assert 3 <= below <= 13


# Runs on tiny generated data

def run(tmp_path: Path, tiny_npz: Path, name: str = "p", **stage: Any) -> Storage:
    storage = Storage(f"sqlite:///{tmp_path / (name + '.db')}")
    run_sweep(parse_spec(raw_spec(name, **stage), "<test>"), storage,
              data_source=str(tiny_npz), jobs=1, checkpoint_dir=tmp_path / f"{name}-ck")
    return storage


def history(storage: Storage, name: str) -> tuple[list[Any], list[Any]]:
    """The sweep's pbt members (slot, state, params, metrics) and lineage with trial ids
    replaced by slots: what two runs of the same spec must share."""
    members = [t for t in storage.get_trials(name, stage="pop")
               if t.state is not TrialState.INTERRUPTED]
    slot = {t.id: t.slot for t in members}
    rows = sorted((t.slot, t.state.value, sorted(t.params.items()),
                   sorted((k, v) for k, v in t.metrics.items() if "seconds" not in k))
                  for t in members)
    steps = [(slot[r.trial_id], r.update, slot[r.source_trial_id], r.metric_member,
              r.metric_source, dict(r.before), dict(r.after))
             for r in storage.lineage(sweep=name)]
    return rows, steps


def test_a_pbt_stage_stores_each_member_as_a_trial_and_every_exploit_step(
        tmp_path: Path, tiny_npz: Path) -> None:
    storage = run(tmp_path, tiny_npz)
    members = storage.get_trials("p", stage="pop")
    assert sorted(t.slot for t in members) == [0, 1, 2, 3]
    assert all(t.state in (TrialState.COMPLETE, TrialState.FAILED) for t in members)
    assert {t.group_size for t in members} == {4}
    plan = storage.list_stages(storage.get_sweep("p").id)[0].plan
    assert (plan.group_size, plan.grouping, plan.group_pace) == (4, "batch", {})  # no probe
    assert plan.exploit_steps == 3 and plan.exploit_seconds is not None
    steps = storage.lineage(sweep="p")
    # exploit steps at updates 6, 12, 18: the bottom quarter (one member) each
    assert [s.update for s in steps] == [6, 12, 18]
    ids = {t.id for t in members}
    assert all(s.trial_id in ids and s.source_trial_id in ids and s.trial_id != s.source_trial_id
               for s in steps)
    assert all(set(s.before) == set(s.after) == {"lam", "eta_max"} for s in steps)
    assert all(1e-4 <= s.after["lam"] <= 1e-1 for s in steps)
    curves = storage.get_curves([t.id for t in members])
    assert {c.trial_id for c in curves} == ids
    [final] = storage.get_trials("p", stage="final")
    assert final.state is TrialState.COMPLETE


def test_the_same_sweep_seed_gives_the_same_population_history(tmp_path: Path,
                                                               tiny_npz: Path) -> None:
    first = history(run(tmp_path, tiny_npz, "a"), "a")
    second = history(run(tmp_path, tiny_npz, "b"), "b")
    assert first == second and first[1]
    other = history(run(tmp_path, tiny_npz, "c", population=4, quantile=0.5), "c")
    assert other[1] != first[1]


KILLED_RUN = """
population_saves = []
original_population = ck.save_population_state

def save_population_then_die(*args, **kwargs):  # a population's checkpoints, as above
    original_population(*args, **kwargs)
    population_saves.append(1)
    if len(population_saves) == 2:
        os.kill(os.getpid(), signal.SIGKILL)

ck.save_population_state = save_population_then_die

from numsweep.storage import Storage
from numsweep.sweeps import parse_spec, run_sweep
from tests.sweeps.test_pbt import raw_spec

run_sweep(parse_spec(raw_spec("k"), "<test>"), Storage(sys.argv[1]), data_source=sys.argv[2],
          jobs=1, checkpoint_dir=sys.argv[3])
"""


def test_a_population_killed_mid_run_resumes_from_its_checkpoint_with_the_same_history(
        tmp_path: Path, tiny_npz: Path) -> None:
    url = f"sqlite:///{tmp_path / 'k.db'}"
    run_killed_after_second_save(KILLED_RUN, url, tiny_npz, tmp_path / "k-ck")
    storage = Storage(url)
    left = storage.get_trials("k", stage="pop")
    assert len(left) == 4 and {t.state for t in left} == {TrialState.RUNNING}
    assert list((tmp_path / "k-ck").rglob("slots-0-1-2-3.npz"))  # its checkpoint is there
    resume_sweep("k", storage, jobs=1)
    again = storage.get_trials("k", stage="pop")
    assert {t.state for t in again if t.attempt == 0} == {TrialState.INTERRUPTED}
    assert all(t.message.startswith("lost: no heartbeat") for t in again if t.attempt == 0)
    # continued from the file, not trained again from update 0
    assert all("resumed from its checkpoint at update 12" in t.message
               for t in again if t.attempt == 1)
    whole = run(tmp_path, tiny_npz, "w")
    got, expected = history(storage, "k"), history(whole, "w")
    assert got == expected


def test_a_rerun_of_a_pbt_member_trains_its_population_again(tmp_path: Path,
                                                            tiny_npz: Path) -> None:
    storage = run(tmp_path, tiny_npz)
    member = max((t for t in storage.get_trials("p", stage="pop")
                  if t.state is TrialState.COMPLETE), key=lambda t: t.metrics["val_acc"])
    rerun = rerun_trial(storage, member.id)
    assert rerun.error is None and rerun.differences() == {}
    [stored] = storage.get_trials(trial_ids=[rerun.trial_id])
    assert stored.sweep == "rerun" and stored.setup["pbt_member"] == ["p", "pop", member.slot]


def test_the_best_stage_retrains_the_best_members_schedule_from_its_root(
        tmp_path: Path, tiny_npz: Path) -> None:
    from numsweep.sweeps.lineage import trial_details

    storage = run(tmp_path, tiny_npz)
    [final] = storage.get_trials("p", stage="final")
    members = [t for t in storage.get_trials("p", stage="pop")
               if t.state is TrialState.COMPLETE]
    best = max(members, key=lambda t: (t.metrics["val_acc"], -t.id))
    hist = trial_details(storage, best.id).history
    assert hist is not None
    changes = [list(c) for c in hist.changes]
    assert (final.params.get("hp_changes") or []) == changes
    assert {n: final.params[n] for n in ("lam", "eta_max")} == dict(hist.initial)
    stage = storage.list_stages(storage.get_sweep("p").id)[1]
    assert f"trial {best.id}" in stage.note and "pbt member" in stage.note
    # a member that was replaced: its root's initial values and the changes of its lineage
    replaced = {s.trial_id for s in storage.lineage(sweep="p")}
    member = next(t for t in members if t.id in replaced)
    config, note = _pbt_schedule(SimpleNamespace(storage=storage), member, member.params)
    hist = trial_details(storage, member.id).history
    assert hist is not None and hist.changes
    plan = storage.list_stages(storage.get_sweep("p").id)[0].plan
    assert {n: config[n] for n in ("lam", "eta_max")} == plan.configs[hist.root]
    assert config["hp_changes"] == [list(c) for c in hist.changes]
    assert f"from the values of member {hist.root} at update 0" in note
    # trained alone from scratch with that schedule: a valid spec, the changes applied
    spec = TrialSpec.from_mapping({**config, "seed": 1})
    assert [list(c) for c in spec.hp_changes] == config["hp_changes"]


def test_the_planner_counts_a_pbt_stages_population_and_extend_refuses_it() -> None:
    from numsweep.sweeps.budget import stage_trials
    from numsweep.sweeps.extend import parse_extension

    spec = parse_spec(raw_spec(population=6), "<test>")
    assert [stage_trials(spec, s) for s in spec.stages] == [6, 1]
    with pytest.raises(SweepSpecError, match="stage pop is a pbt stage"):
        parse_extension(spec, {"pop.n_trials": "+4"})


def test_an_interval_past_the_run_on_the_datas_n_train_is_a_one_line_error(
        tmp_path: Path, tiny_npz: Path) -> None:
    raw = raw_spec("late", interval=24)
    del raw["fixed"]["n_train"]  # the run's length is known only on the data
    spec = parse_spec(raw, "<test>")
    storage = Storage(f"sqlite:///{tmp_path / 'late.db'}")
    with pytest.raises(SweepSpecError) as caught:
        run_sweep(spec, storage, data_source=str(tiny_npz), jobs=1,
                  checkpoint_dir=tmp_path / "ck")
    assert "stages.pop.interval=24 must be below the run's 24 updates" in str(caught.value)
    assert "\n" not in str(caught.value) and storage.get_trials("late") == []
