"""What the command line says when things go wrong: other data for a stored sweep, sweeps
whose every trial failed, --jobs beyond the machine, concurrent `numsweep train` loops;
in-memory, foreign, missing, read-only and deleted databases, a full disk for kept networks,
two `sweep run` of one sweep."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from numsweep.cli import cli
from numsweep.storage import Storage, TrialState
from tests.conftest import write_images_npz

EXAMPLE = Path(__file__).parents[2] / "examples" / "lambda-coarse.toml"
SMALL = ("n_train=200", "n_val=50", "cycles=1", "batch_size=50", "hidden=8", "eval_train=50",
         "curve_points=2")


def invoke(*args: object):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


def one_line_error(output: str) -> str:
    lines = output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), output
    return lines[0]


def test_resume_and_worker_with_other_data_are_one_line_errors(tmp_path: Path,
                                                              tiny_npz: Path) -> None:
    db = f"sqlite:///{tmp_path / 'd.db'}"
    result = invoke("sweep", "run", EXAMPLE, *SMALL, "coarse.n_trials=2", "--jobs", "1",
                    "--db", db, "--data", tiny_npz)
    assert result.exit_code == 0, result.output
    other = write_images_npz(tmp_path / "other.npz", seed=5)
    for command in (("sweep", "resume"), ("worker",)):
        result = invoke(*command, "lambda-coarse", "--jobs", "1", "--db", db, "--data", other)
        assert result.exit_code == 1
        line = one_line_error(result.output)
        assert "was created with other data" in line and "tiny.npz" in line
        assert "other.npz" in line


def test_a_sweep_whose_every_trial_failed_exits_1_and_says_why(tmp_path: Path,
                                                               tiny_npz: Path) -> None:
    db = f"sqlite:///{tmp_path / 'f.db'}"
    result = invoke("sweep", "run", EXAMPLE, *SMALL, "coarse.n_trials=3", "eta_min=1e6",
                    "eta_max=1e7", "--jobs", "1", "--db", db, "--data", tiny_npz)
    assert result.exit_code == 1, result.output
    assert "3 of 3 finished trials failed; most common reason (3x):" in result.output
    assert "Error: no trial of sweep 'lambda-coarse' completed" in result.output
    assert "diverged" in result.output.strip().splitlines()[-1]


def test_n_train_beyond_the_data_is_refused_before_a_trial_is_stored(
        tmp_path: Path, tiny_npz: Path) -> None:
    db = f"sqlite:///{tmp_path / 'n.db'}"
    result = invoke("sweep", "run", EXAMPLE, *SMALL, "n_train=5000", "--jobs", "1", "--db", db,
                    "--data", tiny_npz)
    assert result.exit_code == 1
    assert "n_train + n_val = 5000 + 50 exceeds the 600 training images" in \
        one_line_error(result.output)
    assert Storage(db).list_sweeps() == []


def test_jobs_beyond_the_cores_need_force_and_absurd_jobs_are_refused(
        tmp_path: Path, tiny_npz: Path) -> None:
    db = f"sqlite:///{tmp_path / 'j.db'}"
    cores = os.cpu_count() or 1
    many = invoke("sweep", "run", EXAMPLE, "--jobs", cores + 1, "--db", db, "--data", tiny_npz)
    assert many.exit_code == 1
    assert "pass --force to run anyway" in one_line_error(many.output)
    absurd = invoke("sweep", "run", EXAMPLE, "--jobs", 100_000, "--force", "--db", db,
                    "--data", tiny_npz)
    assert absurd.exit_code == 1 and "--jobs 100000" in one_line_error(absurd.output)
    forced = invoke("sweep", "run", EXAMPLE, *SMALL, "coarse.n_trials=2", "--jobs", cores + 1,
                    "--force", "--db", db, "--data", tiny_npz)
    assert forced.exit_code == 0, forced.output
    assert f"exceed the {cores} cores" in forced.output
    assert Storage(db).list_sweeps() != []  # only the forced run did any work


def test_four_concurrent_train_loops_lose_no_run(tmp_path: Path, tiny_npz: Path) -> None:
    db = f"sqlite:///{tmp_path / 'four.db'}"
    runs = 5
    codes: list[tuple[int, str]] = []

    def loop() -> None:
        for _ in range(runs):
            proc = subprocess.run(
                [sys.executable, "-m", "numsweep", "train", *SMALL, "--sweep", "conc", "--db",
                 db, "--data", str(tiny_npz)], capture_output=True, text=True, timeout=240)
            codes.append((proc.returncode, proc.stderr[-500:]))

    loops = [threading.Thread(target=loop) for _ in range(4)]
    for t in loops:
        t.start()
    for t in loops:
        t.join()
    assert [c for c, _ in codes] == [0] * 4 * runs, [e for c, e in codes if c]
    trials = Storage(db).get_trials("conc")
    assert len(trials) == 4 * runs
    assert sorted(t.number for t in trials) == list(range(4 * runs))
    assert {t.state for t in trials} == {TrialState.COMPLETE}


def test_single_trials_are_not_added_to_a_planned_sweep(tmp_path: Path, tiny_npz: Path) -> None:
    db = f"sqlite:///{tmp_path / 'p.db'}"
    result = invoke("sweep", "create", EXAMPLE, *SMALL, "coarse.n_trials=2", "--db", db,
                    "--data", tiny_npz)
    assert result.exit_code == 0, result.output
    other = write_images_npz(tmp_path / "other.npz", seed=5)
    for command in (("train", "lam=0.5", *SMALL), ("range-test", "lr", *SMALL)):
        result = invoke(*command, "--sweep", "lambda-coarse", "--db", db, "--data", other)
        assert result.exit_code == 1
        line = one_line_error(result.output)
        assert "'lambda-coarse'" in line and "is a planned sweep" in line and "--sweep" in line
    assert Storage(db).get_trials("lambda-coarse") == []
    result = invoke("train", *SMALL, "--sweep", "mine", "--db", db, "--data", tiny_npz)
    assert result.exit_code == 0, result.output
    result = invoke("train", *SMALL, "seed=1", "--sweep", "mine", "--db", db, "--data", tiny_npz)
    assert result.exit_code == 0, result.output  # a sweep of single trials takes more
    assert len(Storage(db).get_trials("mine")) == 2


# Nothing lost without an error and exit 1

IN_MEMORY = ("", "sqlite://", "sqlite:///", "sqlite:///:memory:")


def test_commands_that_store_refuse_an_in_memory_or_empty_database(
        tmp_path: Path, tiny_npz: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))  # where kept networks of such a database went
    for db in IN_MEMORY:
        for command in (("train", *SMALL), ("range-test", "lr", "n_train=200", "n_val=50"),
                        ("sweep", "run", EXAMPLE, *SMALL, "coarse.n_trials=1", "--jobs", "1"),
                        ("sweep", "create", EXAMPLE)):
            result = invoke(*command, "--db", db, "--data", tiny_npz)
            assert result.exit_code == 1, (db, command, result.output)
            assert "is an in-memory database: what is stored there is gone when the command " \
                   "ends" in one_line_error(result.output), (db, command)
    assert not (tmp_path / ".cache" / "numsweep" / "checkpoints").exists()


def _read_commands(sweep: str, tmp_path: Path, data: Path) -> list[tuple[object, ...]]:
    """Every command that only reads the database (trial 1 is a trial of ``sweep``)."""
    return [("sweep", "list"), ("sweep", "show", sweep), ("trials",), ("trials", "--sweep", sweep),
            ("report", sweep, "-o", tmp_path / "report"),
            ("plot", "bars", "--sweep", sweep, "--metric", "val_acc", "-o",
             tmp_path / "bars.png"),
            ("plot", "filters", "1", "-o", tmp_path / "filters.png"),
            ("trial", "weights", "1", "-o", tmp_path / "w.npz"),
            ("evaluate", "1", "--data", data), ("sweep", "gc", sweep)]


def test_read_and_continuing_commands_never_create_or_change_a_database(tmp_path: Path,
                                                         tiny_npz: Path) -> None:
    import optuna

    foreign = tmp_path / "foreign.db"
    with sqlite3.connect(foreign) as conn:
        conn.execute("CREATE TABLE measurements (x REAL)")
    optuna_only = tmp_path / "optuna.db"
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    optuna.create_study(storage=f"sqlite:///{optuna_only}", study_name="s")
    missing = tmp_path / "typo_runs.db"
    continuing = [("sweep", "resume", "lambda-coarse", "--jobs", "1"),
                  ("worker", "lambda-coarse", "--jobs", "1"), ("trial", "rerun", "1")]
    for path in (foreign, optuna_only, missing):
        before = path.read_bytes() if path.exists() else None
        for command in _read_commands("lambda-coarse", tmp_path, tiny_npz) + continuing:
            result = invoke(*command, "--db", path)
            assert result.exit_code == 1, (path.name, command, result.output)
            line = one_line_error(result.output)
            assert ("is not a numsweep database" in line if before is not None
                    else f"{missing} does not exist" in line), (command, line)
            assert (path.read_bytes() if path.exists() else None) == before, command
        if before is not None:
            with sqlite3.connect(path) as conn:  # not switched to WAL
                assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
    assert not missing.exists()


def test_read_commands_read_a_read_only_database(tmp_path: Path, tiny_npz: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "ro"
    folder.mkdir()
    db = folder / "r.db"
    run = invoke("sweep", "run", EXAMPLE, *SMALL, "coarse.n_trials=2", "--jobs", "1",
                 "--keep-weights", "all", "--checkpoint-dir", tmp_path / "kept", "--db", db,
                 "--data", tiny_npz)
    assert run.exit_code == 0, run.output
    db.chmod(0o444)
    folder.chmod(0o555)
    # as root every file is writable, so pretend that these are not, as for another user
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode: False if mode == os.W_OK and str(
        p).startswith(str(folder)) else real_access(p, mode))
    try:
        for command in _read_commands("lambda-coarse", tmp_path, tiny_npz):
            result = invoke(*command, "--db", db)
            assert result.exit_code == 0, (command, result.output)
        assert "lambda-coarse" in invoke("sweep", "list", "--db", db).output
        stores = invoke("train", *SMALL, "--db", db, "--data", tiny_npz)
        assert stores.exit_code == 1 and "is read-only" in one_line_error(stores.output)
    finally:
        folder.chmod(0o755)


@pytest.mark.parametrize("jobs", [1, 2])
def test_a_database_deleted_during_a_sweep_stops_it_with_one_line(
        tmp_path: Path, tiny_npz: Path, monkeypatch: pytest.MonkeyPatch, jobs: int) -> None:
    from numsweep.sweeps import submission

    db = tmp_path / "d.db"
    stored = submission.record_outcome

    def record_then_delete(storage: Storage, outcome: object) -> object:
        state = stored(storage, outcome)  # type: ignore[arg-type]
        for name in ("d.db", "d.db-wal", "d.db-shm"):  # rm d.db d.db-wal d.db-shm
            (tmp_path / name).unlink(missing_ok=True)
        return state

    monkeypatch.setattr(submission, "record_outcome", record_then_delete)
    result = invoke("sweep", "run", EXAMPLE, *SMALL, "coarse.n_trials=4", "--jobs", jobs,
                    "--group-size", "1", "--db", db, "--data", tiny_npz)
    assert result.exit_code == 1, result.output
    assert "results:" not in result.output
    line = result.output.strip().splitlines()[-1]
    assert line.startswith(f"Error: database sqlite:///{db} was deleted while numsweep had "
                           f"it open: nothing more is written to it; sweep 'lambda-coarse' "
                           f"stopped (finished trials stored in it by this process: 1, "
                           f"running trials dropped: "), line  # with 2 jobs: 0 or 1


def test_a_full_disk_for_kept_networks_keeps_the_results_and_rerun_writes_them(
        tmp_path: Path, tiny_npz: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import errno

    from numsweep.engine import checkpoint

    db = tmp_path / "full.db"
    written = checkpoint.write_npz_atomic

    def disk_full(path: object, arrays: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(checkpoint, "write_npz_atomic", disk_full)  # checkpoints and networks
    result = invoke("sweep", "run", EXAMPLE, *SMALL, "coarse.n_trials=3", "--jobs", "1",
                    "--keep-weights", "all", "--db", db, "--data", tiny_npz)
    assert result.exit_code == 1, result.output
    assert "stage coarse: 3 complete" in result.output
    line = result.output.strip().splitlines()[-1]
    assert line.startswith("Error: 3 trials of sweep 'lambda-coarse' kept no network (network "
                           "not kept ("), line
    assert "OSError: [Errno 28] No space left on device); their results are stored; " \
           "`numsweep trial rerun ID` writes each again (trials 1, 2, 3)" in line
    trials = Storage(str(db)).get_trials("lambda-coarse")
    assert {t.state for t in trials} == {TrialState.COMPLETE}
    assert all(0 < t.metrics["val_acc"] <= 1 for t in trials)
    single = invoke("train", *SMALL, "--db", tmp_path / "one.db", "--data", tiny_npz)
    assert single.exit_code == 1
    assert single.output.strip().splitlines()[-1].endswith(
        "OSError: [Errno 28] No space left on device; its result is stored; `numsweep trial "
        "rerun 1` writes it again")
    assert Storage(str(tmp_path / "one.db")).get_trials("train")[0].state is TrialState.COMPLETE

    monkeypatch.setattr(checkpoint, "write_npz_atomic", written)  # space freed
    resumed = invoke("sweep", "resume", "lambda-coarse", "--jobs", "1", "--db", db)
    assert len(Storage(str(db)).get_trials("lambda-coarse")) == 3  # the results stand
    assert resumed.exit_code == 1 and "3 trials of sweep" in resumed.output
    rerun = invoke("trial", "rerun", "2", "--db", db)
    assert rerun.exit_code == 0, rerun.output
    assert "wrote the network trial 2 had not kept" in rerun.output
    assert invoke("trial", "weights", "2", "-o", tmp_path / "w.npz", "--db", db).exit_code == 0
    left = invoke("sweep", "resume", "lambda-coarse", "--jobs", "1", "--db", db)
    assert "2 trials of sweep 'lambda-coarse' kept no network" in left.output
    assert "(trials 1, 3)" in left.output


def test_a_second_sweep_run_of_the_same_sweep_is_refused(tmp_path: Path,
                                                          tiny_npz: Path) -> None:
    db = f"sqlite:///{tmp_path / 'twice.db'}"
    command = [sys.executable, "-m", "numsweep", "sweep", "run", str(EXAMPLE), *SMALL,
               "coarse.n_trials=2", "--jobs", "1", "--db", db, "--data", str(tiny_npz)]
    procs = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for _ in range(2)]
    ended = [(p.wait(timeout=240), p.stderr.read() if p.stderr else "") for p in procs]
    assert sorted(code for code, _ in ended) == [0, 1], ended
    refused = next(err for code, err in ended if code == 1).strip().splitlines()
    assert len(refused) == 1 and ("is being started by" in refused[0]
                                  or "already has 2 trials" in refused[0]), refused
    assert len(Storage(str(db)).get_trials("lambda-coarse")) == 2


def test_sweep_run_or_create_beside_a_running_one_is_refused_and_a_killed_ones_turn_is_taken(
        tmp_path: Path, tiny_npz: Path) -> None:
    import socket

    db = f"sqlite:///{tmp_path / 'held.db'}"
    storage = Storage(db)
    storage.take_lease("start:lambda-coarse", "other-host:4242", 3600)  # running elsewhere
    result = invoke("sweep", "run", EXAMPLE, *SMALL, "coarse.n_trials=2", "--jobs", "1",
                    "--db", db, "--data", tiny_npz)
    assert result.exit_code == 1
    assert "is being started by other-host:4242 (another `numsweep sweep run` or `sweep " \
           "create`); join it with `numsweep worker lambda-coarse`" in one_line_error(
               result.output)
    created = invoke("sweep", "create", EXAMPLE, "--db", db, "--data", tiny_npz)
    assert created.exit_code == 1 and "is being started by other-host:4242" in \
        one_line_error(created.output)
    assert storage.list_sweeps() == []
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True).stdout.strip()
    storage.take_lease("start:lambda-coarse", f"{socket.gethostname()}:{dead}", 3600,
                       taking_from="other-host:4242")  # a run of this machine, killed
    result = invoke("sweep", "run", EXAMPLE, *SMALL, "coarse.n_trials=2", "--jobs", "1",
                    "--db", db, "--data", tiny_npz)
    assert result.exit_code == 0, result.output
    assert storage.lease_holder("start:lambda-coarse") is None  # given back at its end


def test_train_refuses_what_cannot_run_on_the_data_before_a_trial_is_stored(
        tmp_path: Path, tiny_npz: Path) -> None:
    db = f"sqlite:///{tmp_path / 't.db'}"
    for args, message in (
            (("n_train=1000", "n_val=10"), "n_train=1000 + n_val=10 exceeds the 600 training"),
            (("n_val=600",), "n_val=600 leaves none of the 600 training images"),
            (("n_train=50", "n_val=10", "batch_size=100"), "batch_size=100 exceeds n_train=50"),
            (("n_s=1e12",), "n_s=1000000000000 is invalid: expected at most 1,000,000,000"),
            (("cycles=60", "cycle_mult=10"), "cycles=60 with cycle_mult=10"),
            (("schedule=constant", "n_updates=10000000000000"), "n_updates=10000000000000 is"),
            (("n_s=1e8", "cycles=1", "n_val=100"),
             "plans 200,000,000 updates, more than 10,000,000 (days of "
             "training); pass --force")):
        result = invoke("train", *args, "--db", db, "--data", tiny_npz)
        assert result.exit_code == 1, result.output
        assert message in one_line_error(result.output)
    assert Storage(db).get_trials() == []  # was: a FAILED trial for each data error
    result = invoke("train", *SMALL, "--force", "--db", db, "--data", tiny_npz)
    assert result.exit_code == 0, result.output


def test_ctrl_c_of_train_marks_its_trial_interrupted(tmp_path: Path, tiny_npz: Path) -> None:
    from tests.sweeps.test_durable import finish, numsweep, signal_while_trials_run

    url = f"sqlite:///{tmp_path / 'i.db'}"
    proc = numsweep("train", *SMALL[:-1], "curve_points=1", "cycles=400", "--db", url,
                    "--data", tiny_npz)
    storage = Storage(url)

    def running(name: str) -> list:
        try:
            return [t for t in storage.get_trials(name) if t.state is TrialState.RUNNING]
        except Exception:  # the database or the sweep is not there yet
            return []

    give_up = time.monotonic() + 120
    while not running("train") and proc.poll() is None and time.monotonic() < give_up:
        time.sleep(0.05)
    [trial] = signal_while_trials_run(proc, storage, "train",
                                      lambda pid: os.killpg(pid, signal.SIGINT))  # a terminal
    code, _, err = finish(proc)
    assert code == 130, err
    assert "Traceback" not in err
    assert err.strip().splitlines()[-1] == (f"trial {trial.id} interrupted; the same command "
                                            "continues it from its checkpoint")
    [after] = storage.get_trials("train")
    assert after.state is TrialState.INTERRUPTED  # was: RUNNING for ever


def test_hints_after_a_run_quote_names_as_a_shell_needs(tmp_path: Path,
                                                        tiny_npz: Path) -> None:
    db = f"sqlite:///{tmp_path / 'a b.db'}"
    result = invoke("sweep", "run", EXAMPLE, *SMALL, "coarse.n_trials=2", "name=my sweep;x",
                    "--jobs", "1", "--db", db, "--data", tiny_npz)
    assert result.exit_code == 0, result.output
    quoted_db = f"'{db}'"
    assert f"next: numsweep sweep show 'my sweep;x' --db {quoted_db}" in result.output
    assert (f"numsweep report 'my sweep;x' -o 'report-my sweep;x/' --db {quoted_db}"
            in result.output)  # was: unquoted, three words and a second command
    result = invoke("sweep", "create", EXAMPLE, "name=my sweep;x", "--db", db, "--data",
                    tiny_npz)
    assert result.exit_code == 1
    assert "`numsweep worker 'my sweep;x'`" in result.output


def test_networks_beyond_the_memory_and_endless_range_tests_are_refused_before_any_trial(
        tmp_path: Path, tiny_npz: Path) -> None:
    db = f"sqlite:///{tmp_path / 'm.db'}"
    for command, args, message in (
            ("train", ("hidden=100000000",), "model=mlp hidden=[100000000] with batch 50 x "
                                            "aug_copies=1 needs about"),
            ("train", ("aug_copies=100000000",), "aug_copies=100000000 needs about"),
            ("train", ("model=convnet3", "hidden=[50]", "nf=1000000"),
             "model=convnet3 filter_size=3 nf=1000000"),
            ("range-test", ("lr", "n_updates=1e9"), "n_updates=1000000000 is invalid: expected "
                                                    "at most 100,000 for a range test")):
        mode = args[:1] if command == "range-test" else ()
        result = invoke(command, *mode, *SMALL, *args[len(mode):], "--db", db, "--data",
                        tiny_npz)
        assert result.exit_code == 1, result.output  # was: numpy's MemoryError traceback
        line = one_line_error(result.output)
        assert message in line and ("more than this machine's" in line or "range" in line)
    assert Storage(db).get_trials() == []
    spec = tmp_path / "big.toml"
    spec.write_text('name = "big"\n[fixed]\nhidden = [100000000]\nn_train = 200\nn_val = 50\n'
                    '[space]\nlam = { low = 1e-4, high = 1e-1, log = true, grid = 2 }\n'
                    '[[stages]]\nname = "g"\nsampler = "grid"\n')
    result = invoke("sweep", "run", spec, "--jobs", "1", "--db", db, "--data", tiny_npz)
    assert result.exit_code == 1
    assert "fixed: model=mlp hidden=[100000000]" in one_line_error(result.output)


def test_augmentation_beyond_the_images_is_refused_before_any_trial(tmp_path: Path,
                                                                   tiny_npz: Path) -> None:
    db = f"sqlite:///{tmp_path / 'a.db'}"
    for args, message in ((("translate=1000000000",), "translate=1000000000 is invalid: "
                           "expected fewer pixels than the 16x16 images have (15 at most)"),
                          (("cutout=17",), "cutout=17 is invalid: expected at most 16")):
        result = invoke("train", *SMALL, *args, "--db", db, "--data", tiny_npz)
        assert result.exit_code == 1  # was: a FAILED trial ("array is too big")
        assert message in one_line_error(result.output)
    result = invoke("sweep", "run", EXAMPLE, *SMALL, "translate=16", "--jobs", "1", "--db", db,
                    "--data", tiny_npz)
    assert result.exit_code == 1 and "translate=16 is invalid" in one_line_error(result.output)
    assert Storage(db).get_trials() == []
    assert invoke("train", *SMALL, "translate=15", "cutout=16", "--db", db, "--data",
                  tiny_npz).exit_code == 0
