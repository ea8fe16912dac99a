"""Slot stages (tiny generated data): each worker trains one slot group, a freed slot is
refilled at once with the next configuration, pruning asks the live study at each trial's own
period ends; one process gives the same trials twice; a slot trial reruns alone through the
CLI; a sweep killed mid-group resumes the group from its checkpoint to the uninterrupted
results; several processes never train a trial twice; a dead worker costs only its group's
members; ``--grouping`` is stored and shown."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from numsweep.cli import cli
from numsweep.storage import Storage, StorageUnavailable, TrialRecord, TrialState
from numsweep.sweeps import parse_spec, resume_sweep, run_sweep
from numsweep.sweeps.deaths import LOST_PREFIX
from numsweep.sweeps.events import TrialEvent
from numsweep.sweeps.kept import default_checkpoint_dir, slot_group_checkpoints
from tests.killed_child import run_killed_after_second_save
from tests.sweeps.test_durable import (
    TIMEOUT,
    assert_each_planned_trial_complete_once,
    computing,
    finish,
    numsweep,
    signal_while_trials_run,
    spec_dict,
    states_so_far,
    wait_for,
    write_spec,
)
from tests.sweeps.test_worker_deaths import running_pid_files

FIXED = {"hidden": [8], "n_train": 200, "n_val": 50, "batch_size": 50, "eval_train": 50,
         "cycles": 3, "dtype": "float64"}


def tpe_spec(name: str = "sl", n_trials: int = 10, **fixed: Any) -> dict:
    return {"name": name, "seed": 5, "fixed": {**FIXED, **fixed},
            "space": {"lam": {"low": 1e-4, "high": 1e-1, "log": True}},
            "stages": [{"name": "search", "sampler": "tpe", "n_trials": n_trials,
                        "pruner": "median"}]}


def grid_spec(name: str = "gs", grid: int = 6, **fixed: Any) -> dict:
    return {"name": name, "seed": 3, "fixed": {**FIXED, **fixed},
            "space": {"lam": {"low": 1e-4, "high": 1e-1, "log": True, "grid": grid}},
            "stages": [{"name": "grid", "sampler": "grid"}]}


def invoke_ok(*args: object) -> bool:
    result = CliRunner().invoke(cli, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return True


def offset(t: TrialRecord) -> int:
    return int(t.params["data_offset"])


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory: pytest.TempPathFactory, tiny_npz: Path
             ) -> tuple[str, str, list[TrialEvent]]:
    """The same TPE + median-pruner stage run twice by one process in slot groups of 4."""
    folder = tmp_path_factory.mktemp("slots")
    urls = [f"sqlite:///{folder / f'{n}.db'}" for n in ("one", "two")]
    events: list[TrialEvent] = []
    for url in urls:
        run_sweep(parse_spec(tpe_spec(), "test"), Storage(url), data_source=str(tiny_npz),
                  jobs=1, group_size=4, on_event=events.append)
    return urls[0], urls[1], events


def test_one_process_gives_the_same_trials_and_metrics_twice(
        two_runs: tuple[str, str, list[TrialEvent]]) -> None:
    one, two = (Storage(url).get_trials("sl") for url in two_runs[:2])
    assert len(one) == 10
    assert [(t.slot, t.params, t.state, t.metrics.get("val_acc")) for t in one] == \
        [(t.slot, t.params, t.state, t.metrics.get("val_acc")) for t in two]
    assert {t.state for t in one} == {TrialState.COMPLETE, TrialState.PRUNED}


def test_trials_train_in_slots_and_a_freed_slot_is_refilled_at_once(
        two_runs: tuple[str, str, list[TrialEvent]]) -> None:
    storage = Storage(two_runs[0])
    trials = storage.get_trials("sl")
    [stage] = storage.list_stages(storage.get_sweep("sl").id)
    assert (stage.plan.grouping, stage.plan.group_size) == ("slots", 4)
    assert {t.group_size for t in trials} == {4}
    assert len({t.group_id for t in trials}) == 1  # one worker: one slot group
    assert [offset(t) for t in trials[:4]] == [0, 0, 0, 0]
    assert any(offset(t) > 0 for t in trials)  # joined mid-stream
    # a trial pruned at its own update u frees its slot for the next trial at that step
    # (while configurations are left: one that joins later shows there were)
    last_join = max(offset(t) for t in trials)
    pruned = [t for t in trials if t.state is TrialState.PRUNED
              and offset(t) + int(t.metrics["updates"]) <= last_join]
    assert pruned
    for p in pruned:
        freed_at = offset(p) + int(p.metrics["updates"])
        assert any(offset(t) == freed_at for t in trials if t.id > p.id), p.id
    # full cycles are 16 updates here: a pruned trial stops at one of its own period ends
    assert all(int(p.metrics["updates"]) % 16 == 0 for p in trials
               if p.state is TrialState.PRUNED)
    groups = [e for e in two_runs[2] if e.kind == "group"]
    assert len(groups) == 2 and all(e.group_size == 4 for e in groups)
    assert all(e.occupancy is not None and 0 < e.occupancy <= 1 for e in groups)
    # stored with the stage: one row for the group, its counts those of its trials
    [row] = storage.slot_groups(stage.id)
    assert (row.size, row.trials) == (4, len(trials))
    assert row.slot_updates == sum(int(t.metrics["updates"]) for t in trials)
    assert row.occupancy == pytest.approx(groups[0].occupancy)
    show = CliRunner().invoke(cli, ["sweep", "show", "sl", "--db", two_runs[0]])
    assert f"occupancy {row.occupancy:.1%}" in show.output, show.output


def test_a_slot_trial_reruns_alone_to_the_same_metrics(
        two_runs: tuple[str, str, list[TrialEvent]], tmp_path: Path, tiny_npz: Path) -> None:
    grid_url = f"sqlite:///{tmp_path / 'grid.db'}"
    run_sweep(parse_spec(grid_spec(grid=3), "test"), Storage(grid_url),
              data_source=str(tiny_npz), jobs=1, group_size=2, grouping="slots")
    complete = next(t for t in Storage(grid_url).get_trials("gs") if offset(t) > 0)
    assert complete.state is TrialState.COMPLETE
    pruned = next(t for t in Storage(two_runs[0]).get_trials("sl")
                  if offset(t) > 0 and t.state is TrialState.PRUNED)
    for url, t in ((grid_url, complete), (two_runs[0], pruned)):
        result = CliRunner().invoke(cli, ["trial", "rerun", str(t.id), "--db", url,
                                          "--data", str(tiny_npz)])
        assert result.exit_code == 0, result.output
        assert f"same metrics as trial {t.id}" in result.output


@pytest.mark.parametrize("pruner", ["halving", "hyperband"])
def test_asynchronous_halving_prunes_slot_trials_on_the_live_study(
        pruner: str, tmp_path: Path, tiny_npz: Path) -> None:
    import optuna

    raw = tpe_spec(f"h{pruner}", n_trials=12, cycles=4)
    raw["stages"][0]["pruner"] = pruner
    url = f"sqlite:///{tmp_path / 'h.db'}"
    run_sweep(parse_spec(raw, "test"), Storage(url), data_source=str(tiny_npz), jobs=1,
              group_size=4)
    trials = Storage(url).get_trials(f"h{pruner}")
    pruned = [t for t in trials if t.state is TrialState.PRUNED]
    assert pruned
    if pruner == "halving":  # judged at their first rung before any trial completed
        assert any(offset(t) == 0 for t in pruned)
    study = optuna.load_study(study_name=f"h{pruner}/search", storage=url)
    rungs = [t for t in study.trials
             if any(k.startswith("completed_rung_") for k in t.system_attrs)]
    assert len(rungs) >= len(pruned)  # the pruner kept its rungs in the study itself


KILLED_MID_GROUP = """
ck.save_state = original  # a slot group writes slot states: kill after its second one
original_slot = ck.save_slot_state

def save_slot_then_die(*args, **kwargs):
    original_slot(*args, **kwargs)
    saves.append(1)
    if len(saves) == 2:
        os.kill(os.getpid(), signal.SIGKILL)

ck.save_slot_state = save_slot_then_die

from numsweep.storage import Storage
from numsweep.sweeps import parse_spec, run_sweep
from tests.sweeps.test_slots import grid_spec

run_sweep(parse_spec(grid_spec(curve_points=4), "test"), Storage(sys.argv[1]),
          data_source=sys.argv[2], jobs=1, group_size=2, grouping="slots")
"""


def test_a_sweep_killed_mid_group_resumes_the_group_to_the_uninterrupted_results(
        tmp_path: Path, tiny_npz: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import numsweep.engine.slots as engine_slots

    spec = parse_spec(grid_spec(curve_points=4), "test")
    reference_url = f"sqlite:///{tmp_path / 'ref.db'}"
    run_sweep(spec, Storage(reference_url), data_source=str(tiny_npz), jobs=1, group_size=2,
              grouping="slots")
    reference = {t.slot: t for t in Storage(reference_url).get_trials("gs")}

    url = f"sqlite:///{tmp_path / 'killed.db'}"
    run_killed_after_second_save(KILLED_MID_GROUP, url, tiny_npz)
    running = Storage(url).get_trials("gs", states=[TrialState.RUNNING])
    assert sorted(t.slot for t in running) == [0, 1]
    [saved] = slot_group_checkpoints(default_checkpoint_dir(url), "gs", "grid")

    resumed: list[list[int]] = []
    original = engine_slots.SlotRun.resume

    def resume(self: Any, state: Any, first: Any) -> None:
        resumed.append([int(m["key"]) for m in state.members])
        original(self, state, first)

    monkeypatch.setattr(engine_slots.SlotRun, "resume", resume)
    kept = saved.read_bytes()
    assert invoke_ok("sweep", "gc", "gs", "--db", url) and saved.exists()  # members running
    resume_sweep("gs", Storage(url), jobs=1, grace=1)
    assert resumed == [[0, 1]]  # the two members together, mid-run, from the checkpoint
    assert not saved.exists()  # removed as its group ended
    saved.write_bytes(kept)  # left over: its members are final now, so gc removes it
    assert invoke_ok("sweep", "gc", "gs", "--db", url) and not saved.exists()
    storage, ref_storage = Storage(url), Storage(reference_url)
    assert_each_planned_trial_complete_once(storage, "gs")
    for t in storage.get_trials("gs", states=[TrialState.COMPLETE]):
        ref = reference[t.slot]
        assert t.params == ref.params
        assert t.metrics == {**ref.metrics, **{k: t.metrics[k] for k in t.metrics
                                               if k.endswith("_seconds")}}
        assert [(c.step, c.split, c.loss, c.acc) for c in storage.get_curves([t.id])] == \
            [(c.step, c.split, c.loss, c.acc) for c in ref_storage.get_curves([ref.id])]


def test_a_database_gone_during_a_refill_stops_the_sweep_and_fails_no_trial(
        tmp_path: Path, tiny_npz: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import numsweep.sweeps.slot_stage as slot_stage

    original = slot_stage.store_outcome
    calls: list[int] = []

    def store_then_lose_the_database(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        if len(calls) == 2:
            raise StorageUnavailable("the database was unreachable for 0 s (--db-wait)")
        return original(*args, **kwargs)

    monkeypatch.setattr(slot_stage, "store_outcome", store_then_lose_the_database)
    storage = Storage(f"sqlite:///{tmp_path / 'gone.db'}")
    with pytest.raises(StorageUnavailable, match="unreachable"):
        run_sweep(parse_spec(grid_spec(grid=4), "test"), storage, data_source=str(tiny_npz),
                  jobs=1, group_size=2, grouping="slots")
    assert not storage.get_trials("gs", states=[TrialState.FAILED])


def test_two_loky_jobs_train_each_trial_once_in_two_slot_groups(tmp_path: Path,
                                                                 tiny_npz: Path) -> None:
    storage = Storage(f"sqlite:///{tmp_path / 'two.db'}")
    run_sweep(parse_spec(grid_spec(grid=8), "test"), storage, data_source=str(tiny_npz),
              jobs=2, group_size=2, grouping="slots")
    assert_each_planned_trial_complete_once(storage, "gs")
    trials = storage.get_trials("gs")
    assert len(trials) == 8 and {t.attempt for t in trials} == {0}
    assert len({t.group_id for t in trials}) == 2 and {t.group_size for t in trials} == {2}


def test_two_worker_processes_on_one_database_never_train_a_trial_twice(
        tmp_path: Path, tiny_npz: Path) -> None:
    path = write_spec(tmp_path, grid_spec(grid=8, cycles=2))
    url = f"sqlite:///{tmp_path / 'w.db'}"
    created = CliRunner().invoke(cli, ["sweep", "create", str(path), "--db", url,
                                       "--data", str(tiny_npz)])
    assert created.exit_code == 0, created.output
    procs = [numsweep("worker", "gs", "--jobs", "1", "--group-size", "2", "--grouping",
                      "slots", "--db", url) for _ in range(2)]
    for proc in procs:
        code, _out, err = finish(proc)
        assert code == 0, err
    storage = Storage(url)
    assert_each_planned_trial_complete_once(storage, "gs")
    trials = storage.get_trials("gs")
    assert len(trials) == 8 and {t.attempt for t in trials} == {0}
    assert {t.group_size for t in trials} == {2}


@pytest.mark.skipif(not hasattr(os, "pidfd_open") or not Path("/proc/self/stat").exists(),
                    reason="needs Linux pidfds and /proc")
def test_a_dead_worker_costs_only_its_slot_groups_members(tmp_path: Path,
                                                          tiny_npz: Path) -> None:
    path = write_spec(tmp_path, grid_spec(grid=6, cycles=12, hidden=[512], dtype="float32"))
    url = f"sqlite:///{tmp_path / 'd.db'}"
    proc = numsweep("sweep", "run", path, "--jobs", "2", "--group-size", "2", "--grouping",
                    "slots", "--db", url, "--data", tiny_npz)
    give_up = time.monotonic() + TIMEOUT
    while True:
        assert proc.poll() is None, "the sweep ended before a worker was killed"
        assert time.monotonic() < give_up, "no two slot groups seen training"
        running = {t: p for t, p in running_pid_files(proc.pid).items()
                   if Path(f"/proc/{p}").exists()}
        pids = set(running.values())
        if len(running) == 4 and len(pids) == 2 and all(computing(p) for p in pids):
            break
        time.sleep(0.05)
    victim = min(pids)
    members = {t for t, p in running.items() if p == victim}
    os.kill(victim, signal.SIGKILL)
    code, _out, err = finish(proc)
    assert code == 0, err
    storage = Storage(url)
    assert_each_planned_trial_complete_once(storage, "gs")
    lost = {t.id for t in storage.get_trials("gs") if t.message.startswith(LOST_PREFIX)}
    assert lost == members


def test_ctrl_c_of_a_slot_stage_then_resume_completes_each_trial_once(
        tmp_path: Path, tiny_npz: Path) -> None:
    name = "slc"
    # a grid stage, then a TPE stage: both in slot groups of 4
    path = write_spec(tmp_path, spec_dict(name, n_trials=12, cycles=40, grid=8))
    url = f"sqlite:///{tmp_path / (name + '.db')}"
    proc = numsweep("sweep", "run", path, "--jobs", "2", "--group-size", "4", "--grouping",
                    "slots", "--db", url, "--data", tiny_npz)
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
    assert not any(t.state is TrialState.RUNNING for t in storage.get_trials(name))
    resume_sweep(name, storage, jobs=2)
    assert_each_planned_trial_complete_once(storage, name)
    assert {t.id: t.metrics["val_acc"] for t in storage.get_trials(name)
            if t.id in kept} == kept
    stages = storage.list_stages(storage.get_sweep(name).id)
    assert {s.plan.grouping for s in stages} == {"slots"}


def test_grouping_is_stored_with_the_stage_and_shown(tmp_path: Path, tiny_npz: Path) -> None:
    path = write_spec(tmp_path, grid_spec(grid=4, cycles=1))
    runner = CliRunner()
    for grouping in ("batch", "slots"):
        url = f"sqlite:///{tmp_path / f'{grouping}.db'}"
        result = runner.invoke(cli, ["sweep", "run", str(path), "--jobs", "1",
                                     "--group-size", "2", "--grouping", grouping,
                                     "--db", url, "--data", str(tiny_npz)])
        assert result.exit_code == 0, result.output
        storage = Storage(url)
        [stage] = storage.list_stages(storage.get_sweep("gs").id)
        assert stage.plan.grouping == grouping
        show = runner.invoke(cli, ["sweep", "show", "gs", "--db", url])
        assert f"(group size 2, {grouping})" in show.output, show.output
        words = "2 fused groups (2 of 2)" if grouping == "batch" else \
            "1 slot group (4 trials through 2 slots)"
        assert f"grouped: 4 trials in {words}" in show.output, show.output
    bad = runner.invoke(cli, ["sweep", "run", str(path), "--grouping", "pairs",
                              "--db", f"sqlite:///{tmp_path / 'bad.db'}"])
    assert bad.exit_code != 0 and "'pairs' is not one of 'slots', 'batch'" in bad.output


def test_a_diverged_slot_trial_is_failed_and_its_slot_refilled_at_once(
        tmp_path: Path, tiny_npz: Path) -> None:
    """A TPE stage over eta_max up to 1e300: the trials whose loss diverges fail with the update
    they diverged at, and the next trial joins at the step after it (the diverging update's
    batch was drawn); every planned trial ends."""
    raw = {"name": "dv", "seed": 2, "fixed": {**FIXED, "cycles": 2},
           "space": {"eta_max": {"low": 1e-2, "high": 1e300, "log": True}},
           "stages": [{"name": "search", "sampler": "tpe", "n_trials": 10}]}
    url = f"sqlite:///{tmp_path / 'dv.db'}"
    run_sweep(parse_spec(raw, "test"), Storage(url), data_source=str(tiny_npz), jobs=1,
              group_size=3)
    trials = Storage(url).get_trials("dv")
    [stage] = Storage(url).list_stages(Storage(url).get_sweep("dv").id)
    assert stage.plan.grouping == "slots" and len(trials) == 10
    diverged = [t for t in trials if t.state is TrialState.FAILED]
    assert diverged and all("diverged" in t.message for t in diverged)
    joins = {offset(t) for t in trials}
    refilled = [t for t in diverged if offset(t) + int(t.metrics["updates"]) + 1 in joins]
    assert refilled, [(offset(t), t.metrics.get("updates")) for t in diverged]
    assert all(t.state in (TrialState.COMPLETE, TrialState.FAILED) for t in trials)
