"""Durable sweeps on tiny generated data: Ctrl-C, SIGKILL of every process then resume,
concurrent resumes and workers sharing one SQLite file, failed trials, database errors.

The sweeps run as real ``numsweep`` processes (signals need them); the tests wait for states
in the database with generous timeouts and never assert on timing.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import optuna
import pytest
from click.testing import CliRunner

from numsweep.cli import cli
from numsweep.storage import Storage, TrialRecord, TrialState
from numsweep.sweeps import create_sweep, parse_spec, resume_sweep, run_sweep
from numsweep.sweeps.optuna_bridge import TRIAL_ID_ATTR

TIMEOUT = 240  # seconds: a 2-core CI machine may run other work at the same time

FIXED = {"hidden": [8], "n_train": 200, "n_val": 50, "batch_size": 50, "eval_train": 50,
         "curve_points": 2}


def spec_dict(name: str, n_trials: int, cycles: int = 2, grid: int = 4,
              reuse: bool = False, **fixed: object) -> dict:
    """A grid stage, then a TPE stage narrowed around its best trials (a stage transition
    that needs the grid finished) with a pruner-free lag; ``reuse``: the grid trials inside
    the narrowed range are its trials too, beside its ``n_trials`` new ones."""
    return {"name": name, "seed": 7, "fixed": {**FIXED, "cycles": cycles, **fixed},
            "space": {"lam": {"low": 1e-4, "high": 1e-1, "log": True, "grid": grid}},
            "stages": [{"name": "coarse", "sampler": "grid"},
                       {"name": "fine", "sampler": "tpe", "n_trials": n_trials, "sync": 2,
                        "narrow": {"from": "coarse"}, "reuse": reuse}]}


def write_spec(tmp_path: Path, raw: dict) -> Path:
    lines = [f'name = "{raw["name"]}"', f'seed = {raw["seed"]}', "[fixed]"]
    for k, v in raw["fixed"].items():
        lines.append(f"{k} = {v!r}".replace("'", '"'))
    lines.append("[space]")
    lam = raw["space"]["lam"]
    lines.append(f'lam = {{ type = "float", low = {lam["low"]}, high = {lam["high"]}, '
                 f'log = true, grid = {lam["grid"]} }}')
    for st in raw["stages"]:
        lines.append("[[stages]]")
        for k, v in st.items():
            if isinstance(v, dict):
                inner = ", ".join(f'{a} = "{b}"' if isinstance(b, str) else f"{a} = {b}"
                                  for a, b in v.items())
                lines.append(f"{k} = {{ {inner} }}")
            elif isinstance(v, bool):
                lines.append(f"{k} = {'true' if v else 'false'}")
            else:
                lines.append(f"{k} = {v!r}".replace("'", '"'))
    path = tmp_path / f"{raw['name']}.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def numsweep(*args: object, **kwargs: object) -> subprocess.Popen:
    """A ``numsweep`` process in its own process group (so it can be killed whole)."""
    return subprocess.Popen([sys.executable, "-m", "numsweep", *map(str, args)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True, **kwargs)  # type: ignore[call-overload]


def finish(proc: subprocess.Popen) -> tuple[int, str, str]:
    try:
        out, err = proc.communicate(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        pytest.fail(f"numsweep did not finish in {TIMEOUT} s:\n{out}\n{err}")
    return proc.returncode, out, err


def wait_for(what: str, check: Callable[[], bool], procs: list[subprocess.Popen]) -> None:
    give_up = time.monotonic() + TIMEOUT
    while not check():
        for p in procs:
            if p.poll() is not None:
                pytest.fail(f"numsweep ended (exit {p.returncode}) before {what}:\n"
                            f"{p.stdout.read() if p.stdout else ''}"
                            f"{p.stderr.read() if p.stderr else ''}")
        if time.monotonic() > give_up:
            pytest.fail(f"no {what} after {TIMEOUT} s")
        time.sleep(0.05)


def states(storage: Storage, name: str) -> Counter:
    return Counter(t.state for t in storage.get_trials(name))


def states_so_far(storage: Storage, name: str) -> Counter:
    """The states of the sweep's trials; none while the sweep is not in the database yet."""
    try:
        return states(storage, name)
    except Exception:
        return Counter()


def signal_while_trials_run(proc: subprocess.Popen, storage: Storage, name: str,
                            send: Callable[[int], None]) -> list[TrialRecord]:
    """Call ``send(pid)`` at a moment when trials of sweep ``name`` run, and return them: the
    sweep's processes are stopped while the test reads the running trials, so that none of
    them finishes in between (a trial here lasts a fraction of a second)."""
    give_up = time.monotonic() + TIMEOUT
    while True:
        assert proc.poll() is None and time.monotonic() < give_up, "no trial seen running"
        os.killpg(proc.pid, signal.SIGSTOP)  # the sweep process and its loky workers
        running = [t for t in storage.get_trials(name) if t.state is TrialState.RUNNING]
        if running:
            send(proc.pid)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGCONT)
        if running:
            return running
        time.sleep(0.05)


def assert_each_planned_trial_complete_once(storage: Storage, name: str) -> None:
    """Every planned slot of every stage has exactly one COMPLETE attempt, that attempt is
    its latest, and the stage's plan counts them all."""
    record = storage.get_sweep(name)
    for stage in storage.list_stages(record.id):
        trials = [t for t in storage.get_trials(name, stage=stage.name)]
        planned = stage.space["planned"]
        slots = sorted({t.slot for t in trials})
        assert slots == list(range(planned)), (stage.name, slots, planned)
        for slot in slots:
            attempts = sorted((t for t in trials if t.slot == slot), key=lambda t: t.attempt)
            complete = [t for t in attempts if t.state is TrialState.COMPLETE]
            assert len(complete) == 1, (stage.name, slot, [t.state for t in attempts])
            assert attempts[-1].state is TrialState.COMPLETE
            assert [t.attempt for t in attempts] == list(range(len(attempts)))
            assert all(t.state is TrialState.INTERRUPTED for t in attempts[:-1])
    assert TrialState.RUNNING not in states(storage, name)


def test_ctrl_c_marks_running_trials_interrupted_and_resume_finishes_them(
        tmp_path: Path, tiny_npz: Path) -> None:
    run_and_interrupt(tmp_path, tiny_npz, "ctrlc", lambda pid: os.killpg(pid, signal.SIGINT))
    storage = Storage(f"sqlite:///{tmp_path / 'ctrlc.db'}")
    after = storage.get_trials("ctrlc")
    interrupted = [t for t in after if t.state is TrialState.INTERRUPTED]
    kept = {t.id: t.metrics["val_acc"] for t in after if t.state is TrialState.COMPLETE}

    resume_sweep("ctrlc", storage, jobs=1)
    assert_each_planned_trial_complete_once(storage, "ctrlc")
    again = {t.id: t.metrics["val_acc"] for t in storage.get_trials("ctrlc")
             if t.id in kept}
    assert again == kept  # nothing finished was lost or redone
    # the interrupted attempts stay, and the new attempts reuse their seeds and parameters
    for old in interrupted:
        [new] = [t for t in storage.get_trials("ctrlc")
                 if t.stage == old.stage and t.slot == old.slot and t.attempt == 1]
        assert new.seed == old.seed and new.params["lam"] == old.params["lam"]


def test_sigterm_stops_a_sweep_as_ctrl_c_does(tmp_path: Path, tiny_npz: Path) -> None:
    run_and_interrupt(tmp_path, tiny_npz, "term", lambda pid: os.kill(pid, signal.SIGTERM))


def run_and_interrupt(tmp_path: Path, tiny_npz: Path, name: str,
                      interrupt: Callable[[int], None]) -> None:
    """Run a sweep, interrupt it while trials run, check what the database and stderr say."""
    # trials long enough to be running still when the sweep acts on the signal (it lets a
    # database write under way end first)
    path = write_spec(tmp_path, spec_dict(name, n_trials=16, cycles=40))
    url = f"sqlite:///{tmp_path / (name + '.db')}"
    proc = numsweep("sweep", "run", path, "--jobs", "2", "--db", url, "--data", tiny_npz)
    storage = Storage(url)

    def some_done_some_running() -> bool:
        counts = states_so_far(storage, name)
        return counts[TrialState.COMPLETE] >= 2 and counts[TrialState.RUNNING] >= 1

    wait_for("complete and running trials", some_done_some_running, [proc])
    signal_while_trials_run(proc, storage, name, interrupt)
    code, _out, err = finish(proc)
    assert code == 130, err
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err
    [line] = [line for line in err.splitlines() if "marked interrupted" in line]
    assert line.startswith(f"sweep {name!r} interrupted: ")  # a line of its own
    assert line.endswith(f"; continue with: numsweep sweep resume {name} --db {url}")
    after = storage.get_trials(name)
    counts = Counter(t.state for t in after)
    assert counts[TrialState.RUNNING] == 0 and counts[TrialState.INTERRUPTED] >= 1
    assert counts[TrialState.COMPLETE] >= 2
    interrupted = [t for t in after if t.state is TrialState.INTERRUPTED]
    assert all("interrupted (Ctrl-C or SIGTERM)" in t.message and t.finished_at
               for t in interrupted)


def test_sigkill_of_every_process_then_resume_completes_each_planned_trial_once(
        tmp_path: Path, tiny_npz: Path) -> None:
    path = write_spec(tmp_path, spec_dict("killed", n_trials=16, cycles=40))
    url = f"sqlite:///{tmp_path / 'k.db'}"
    proc = numsweep("sweep", "run", path, "--jobs", "2", "--db", url, "--data", tiny_npz)
    storage = Storage(url)

    def mid_sweep() -> bool:
        counts = states_so_far(storage, "killed")
        return counts[TrialState.COMPLETE] >= 5 and counts[TrialState.RUNNING] >= 1

    wait_for("a sweep half way", mid_sweep, [proc])
    stuck = signal_while_trials_run(proc, storage, "killed",
                                    lambda pid: os.killpg(pid, signal.SIGKILL))
    proc.communicate(timeout=TIMEOUT)
    assert {t.id for t in storage.get_trials("killed") if t.state is TrialState.RUNNING} == {
        t.id for t in stuck}  # left RUNNING by the killed process

    # the default grace is a minute, but the killed process ran on this machine: its trials
    # are known lost at once
    code, out, err = finish(numsweep("sweep", "resume", "killed", "--jobs", "2", "--db", url))
    assert code == 0, err
    assert "stage fine: 16 complete" in out
    assert_each_planned_trial_complete_once(storage, "killed")
    for t in storage.get_trials(trial_ids=[t.id for t in stuck]):
        assert t.state is TrialState.INTERRUPTED and t.message.startswith("lost: no heartbeat")


def test_resume_takes_the_proposal_turn_of_a_killed_process_at_once(
        tmp_path: Path, tiny_npz: Path) -> None:
    """A process SIGKILLed while it held a stage's proposal turn (a lease of 30 s) held up
    every process of the sweep until the lease ran out (a resume right after the kill took
    about 30 s longer); a holder that no longer exists on this machine is passed over."""
    path = write_spec(tmp_path, spec_dict("leased", n_trials=4))
    url = f"sqlite:///{tmp_path / 'l.db'}"
    code, _, err = finish(numsweep("sweep", "create", path, "--db", url, "--data", tiny_npz))
    assert code == 0, err
    dead = subprocess.Popen(["true"])
    dead.wait()
    storage = Storage(url)
    gone = f"{socket.gethostname()}:{dead.pid}"
    for stage_id in (1, 2):  # the sweep's two stages, once they are stored
        assert storage.take_lease(f"propose:{stage_id}", gone, 600)
    started = time.monotonic()
    code, out, err = finish(numsweep("sweep", "resume", "leased", "--jobs", "1", "--db", url))
    assert code == 0, err
    assert "stage fine: 4 complete" in out
    assert time.monotonic() - started < 60  # was: not before the 600 s lease ran out


def loky_workers(parent: int) -> list[int]:
    """The loky worker processes of process ``parent``."""
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
            cmdline = (stat.parent / "cmdline").read_bytes()
        except (OSError, ValueError, IndexError):
            continue
        if ppid == parent and b"LokyProcess" in cmdline:
            out.append(int(stat.parent.name))
    return out


def computing(pid: int) -> bool:
    """Whether process ``pid`` is on a CPU or waiting for one (training, not idle)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "R"
    except (OSError, IndexError):
        return False


WORKER_MASKS = """
import os, signal, sys
from multiprocessing import resource_tracker
from numsweep.sweeps.executors import make_executor

pool = make_executor(2, "loky")
masks = {}
for _ in range(20):
    pid, mask = pool.submit(lambda: (os.getpid(), signal.pthread_sigmask(signal.SIG_BLOCK, []))
                            ).result()
    masks[pid] = signal.SIGINT in mask
assert resource_tracker._resource_tracker._pid is not None
print(sorted(masks.values()), signal.SIGINT in signal.pthread_sigmask(signal.SIG_BLOCK, []))
"""


def test_loky_workers_never_take_a_terminal_ctrl_c() -> None:
    """A Ctrl-C in a terminal reaches the workers too; they block it from their start (was:
    a KeyboardInterrupt traceback from a worker still importing, or loky's
    _RemoteTraceback from the task's), and this process takes it as before."""
    out = subprocess.run([sys.executable, "-c", WORKER_MASKS], capture_output=True,
                         text=True, timeout=TIMEOUT)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() in ("[True] False", "[True, True] False")


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc")
def test_killed_worker_processes_are_replaced_and_their_trials_run_again(
        tmp_path: Path, tiny_npz: Path) -> None:
    # trials long enough to be still training when the kills land (seen running, then
    # killed: a short trial could finish in between on a loaded machine)
    path = write_spec(tmp_path, spec_dict("wk", n_trials=6, cycles=20, hidden=[512]))
    url = f"sqlite:///{tmp_path / 'w.db'}"
    proc = numsweep("sweep", "run", path, "--jobs", "2", "--db", url, "--data", tiny_npz)
    storage = Storage(url)

    def running_in_workers() -> bool:
        counts = states_so_far(storage, "wk")
        workers = loky_workers(proc.pid)
        return counts[TrialState.COMPLETE] >= 4 and counts[TrialState.RUNNING] == 2 \
            and len(workers) == 2 and all(computing(pid) for pid in workers)

    wait_for("trials running in loky workers", running_in_workers, [proc])
    for pid in loky_workers(proc.pid):  # as an out-of-memory killer would
        os.kill(pid, signal.SIGKILL)
    code, out, err = finish(proc)
    assert code == 0, err
    assert "stage fine: 6 complete" in out
    assert_each_planned_trial_complete_once(storage, "wk")
    lost = [t for t in storage.get_trials("wk") if t.state is TrialState.INTERRUPTED]
    # the first to die counts as lost; one killed a moment later may be taken for loky's
    # clean-up of the pool (re-queued, not counted)
    assert lost and all(t.message.startswith(("worker process lost", "re-queued"))
                        for t in lost)
    assert any(t.message.startswith("worker process lost") for t in lost)


def test_two_concurrent_resumes_split_the_work(tmp_path: Path, tiny_npz: Path) -> None:
    raw = spec_dict("split", n_trials=16, cycles=4, reuse=True, hidden=[256])
    url = f"sqlite:///{tmp_path / 's.db'}"
    storage = Storage(url)
    create_sweep(parse_spec(raw, "<test>"), storage, data_source=str(tiny_npz))
    procs = [numsweep("sweep", "resume", "split", "--jobs", "1", "--db", url)
             for _ in range(2)]
    results = [finish(p) for p in procs]
    assert all(code == 0 for code, _, _ in results), [err[-600:] for _, _, err in results]
    assert_each_planned_trial_complete_once(storage, "split")
    _, fine = storage.list_stages(storage.get_sweep("split").id)
    assert fine.space["reused"] and fine.space["planned"] == 16  # new ones; reused on top
    trials = storage.get_trials("split")
    assert len(trials) == 4 + fine.space["planned"]  # nothing ran twice, no second attempt
    ran_by = Counter(t.worker.rpartition(":")[2] for t in trials)
    assert set(ran_by) == {str(p.pid) for p in procs}, ran_by  # both did part of it
    # the reused grid trials went into the fine stage's study once, whoever added them
    study = optuna.load_study(study_name="split/fine", storage=url)
    added = [t.user_attrs[TRIAL_ID_ATTR] for t in study.trials
             if t.user_attrs.get("reused")]
    assert sorted(added) == sorted(fine.space["reused"])


def test_four_workers_fifty_trials_each_into_one_sqlite_file(tmp_path: Path,
                                                             tiny_npz: Path) -> None:
    raw = {"name": "many", "seed": 1, "fixed": {**FIXED, "n_train": 100, "cycles": 1,
                                                 "hidden": [4]},
           "space": {"lam": {"low": 1e-4, "high": 1e-1, "log": True}},
           "stages": [{"name": "r", "sampler": "random", "n_trials": 200}]}
    url = f"sqlite:///{tmp_path / 'm.db'}"
    storage = Storage(url)
    create_sweep(parse_spec(raw, "<test>"), storage, data_source=str(tiny_npz))
    procs = [numsweep("worker", "many", "--jobs", "1", "--db", url) for _ in range(4)]
    results = [finish(p) for p in procs]
    for code, out, err in results:
        assert code == 0, err
        assert "locked" not in out + err
        assert "stage r: 200 complete" in out
    trials = storage.get_trials("many")
    assert len(trials) == 200 and {t.state for t in trials} == {TrialState.COMPLETE}
    assert sorted(t.slot for t in trials) == list(range(200))
    assert len({t.params["lam"] for t in trials}) == 200
    assert len({t.worker for t in trials}) == 4  # every worker recorded trials


def test_a_diverging_or_raising_trial_is_failed_with_its_reason_and_the_sweep_goes_on(
        tmp_path: Path, tiny_npz: Path) -> None:
    fixed = {k: v for k, v in FIXED.items() if k != "batch_size"}
    spec = parse_spec({"name": "bad", "seed": 0, "fixed": {**fixed, "cycles": 1},
                       "space": {"eta_max": {"low": 1e-3, "high": 1e6, "log": True},
                                 "batch_size": {"type": "int", "low": 10, "high": 1000}},
                       "stages": [{"name": "l", "sampler": "list", "configs": [
                           {"eta_max": 1e6, "batch_size": 50},
                           {"eta_max": 0.05, "batch_size": 1000},
                           {"eta_max": 0.05, "batch_size": 50}]}]}, "<test>")
    storage = Storage(f"sqlite:///{tmp_path / 'b.db'}")
    [summary] = run_sweep(spec, storage, data_source=str(tiny_npz), jobs=2)
    diverged, raised, fine = storage.get_trials("bad")
    assert diverged.state is TrialState.FAILED and "diverged" in diverged.message
    assert raised.state is TrialState.FAILED and "batch_size=1000 exceeds" in raised.message
    assert "Traceback" in raised.traceback and "Error" in raised.traceback
    assert fine.state is TrialState.COMPLETE
    assert summary.counts == {"FAILED": 2, "COMPLETE": 1}


def invoke(*args: object):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


def test_missing_or_read_only_database_folder_is_a_one_line_error(
        tmp_path: Path, tiny_npz: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write_spec(tmp_path, spec_dict("e", n_trials=1))
    missing = invoke("sweep", "run", path, "--db", f"sqlite:///{tmp_path / 'no' / 'x.db'}",
                     "--data", tiny_npz)
    assert missing.exit_code == 1
    assert missing.output.strip().splitlines() == [
        f"Error: cannot open sqlite:///{tmp_path / 'no' / 'x.db'}: folder {tmp_path / 'no'} "
        f"does not exist"]
    for command in (["sweep", "resume", "e"], ["worker", "e"]):
        result = invoke(*command, "--db", f"sqlite:///{tmp_path / 'no' / 'x.db'}")
        assert result.exit_code == 1 and len(result.output.strip().splitlines()) == 1
    # a read-only folder (as root every folder is writable, so pretend it is not)
    folder = tmp_path / "ro"
    folder.mkdir()
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode: False if str(p) == str(folder)
                        else real_access(p, mode))
    result = invoke("worker", "e", "--db", f"sqlite:///{folder / 'x.db'}")
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [
        f"Error: cannot open sqlite:///{folder / 'x.db'}: {folder} is read-only"]


def test_resume_of_an_unknown_sweep_and_run_of_an_existing_one_say_what_to_do(
        tmp_path: Path, tiny_npz: Path) -> None:
    url = f"sqlite:///{tmp_path / 'u.db'}"
    path = write_spec(tmp_path, spec_dict("once", n_trials=1, grid=2))
    assert invoke("sweep", "run", path, "--jobs", "1", "--db", url, "--data",
                  tiny_npz).exit_code == 0
    again = invoke("sweep", "run", path, "--jobs", "1", "--db", url, "--data", tiny_npz)
    assert again.exit_code == 1 and "numsweep sweep resume once" in again.output
    nothing_left = invoke("sweep", "resume", "once", "--jobs", "1", "--db", url)
    assert nothing_left.exit_code == 0, nothing_left.output
    assert "stage coarse: 2 complete" in nothing_left.output
    assert len(Storage(url).get_trials("once")) == 3  # nothing ran again
    unknown = invoke("sweep", "resume", "nope", "--db", url)
    assert unknown.exit_code == 1 and "no sweep named 'nope'" in unknown.output


def test_a_trial_run_again_trains_on_the_device_of_the_process_that_runs_it(
        tmp_path: Path, tiny_npz: Path) -> None:
    """``resume --device`` sets the device of every trial the process trains, also of an
    interrupted one it claims again (was: its stored device, as the first process had it).
    Here cuda has no CuPy: the trial run again fails saying so, as the new ones do."""
    from numsweep.sweeps import SweepInterrupted

    storage = Storage(f"sqlite:///{tmp_path / 'dev.db'}")
    spec = parse_spec(spec_dict("dev", n_trials=1, grid=2), "<test>")

    def interrupt_at_first_point(event: object) -> None:
        if getattr(event, "kind", "") == "point":
            raise KeyboardInterrupt

    with pytest.raises(SweepInterrupted):
        run_sweep(spec, storage, data_source=str(tiny_npz), jobs=1, group_size=1,
                  on_event=interrupt_at_first_point)
    [cut_short] = storage.get_trials("dev")
    assert cut_short.state is TrialState.INTERRUPTED and cut_short.params["device"] == "cpu"
    resume_sweep("dev", storage, jobs=1, group_size=1, device="cuda")
    again = [t for t in storage.get_trials("dev")
             if t.slot == cut_short.slot and t.stage == cut_short.stage and t.attempt == 1]
    assert len(again) == 1 and again[0].state is TrialState.FAILED, again
    assert "device=cuda needs CuPy" in again[0].message
