"""What the command line says when things go wrong: other data for a stored sweep, sweeps
whose every trial failed, --jobs beyond the machine, concurrent `numsweep train` loops."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

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
            ("train", ("model=convnet3", "nf=1000000"), "model=convnet3 filter_size=3 nf=1000000"),
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
