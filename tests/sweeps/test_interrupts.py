"""Ctrl-C at many moments of a sweep's life: each run ends promptly with exit 130 and no
traceback, leaves no trial RUNNING, and a resume then completes every planned trial once.

Four chains run at once, each on its own SQLite file (``--jobs 1`` and ``--jobs 2``, each with
slot groups and with one trial a task): run (or resume) a sweep, send SIGINT to its process
after a scripted delay, check how it ended, and again, until the chain has interrupted 13 live
processes; then resume to the end. Every other interrupt comes a scripted delay after the
start (imports, data loading, set-up); the others a delay after the run's first trial appears
(trials, writes, stage changes).
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from pathlib import Path

from numsweep.storage import Storage, TrialState
from tests.sweeps.test_durable import (
    assert_each_planned_trial_complete_once,
    finish,
    numsweep,
    spec_dict,
    write_spec,
)

CHAINS = 4
INTERRUPTS_PER_CHAIN = 13  # 52 in all
ENDS_WITHIN = 10.0  # seconds from SIGINT to exit, on a loaded 2-core machine
LONGEST_DELAY = 4.0


def delay(chain: int, k: int) -> float:
    """The k-th interrupt of a chain: the chains interleave, so that together they cover
    1 .. 1 + LONGEST_DELAY seconds evenly (before 1 s, Python itself is still starting)."""
    step = k * CHAINS + chain
    return 1.0 + LONGEST_DELAY * ((step * 7) % (CHAINS * INTERRUPTS_PER_CHAIN)) / (
        CHAINS * INTERRUPTS_PER_CHAIN)


def sweep_exists(url: str, name: str) -> bool:
    storage = Storage(url)
    try:
        return any(s.name == name for s in storage.list_sweeps())
    finally:
        storage.dispose()


def trial_count(url: str, name: str) -> int:
    if not sweep_exists(url, name):
        return 0
    storage = Storage(url)
    try:
        return len(storage.get_trials(name))
    finally:
        storage.dispose()


def running_trials(url: str, name: str) -> list[int]:
    storage = Storage(url)
    try:
        return [t.id for t in storage.get_trials(name) if t.state is TrialState.RUNNING]
    finally:
        storage.dispose()


def chain(index: int, tmp_path: Path, data: Path, problems: list[str],
          interrupted: list[float]) -> None:
    url = f"sqlite:///{tmp_path / f'chain{index}.db'}"
    jobs = "1" if index % 2 == 0 else "2"
    grouping = [] if index < 2 else ["--group-size", "1"]  # slot groups, or a trial a task
    generation = 0
    sent = 0
    while sent < INTERRUPTS_PER_CHAIN:
        name = f"c{index}g{generation}"
        path = write_spec(tmp_path, spec_dict(name, n_trials=16, cycles=2, grid=40,
                                              hidden=[32]))
        args = (["sweep", "resume", name] if sweep_exists(url, name)
                else ["sweep", "run", str(path)])
        before = trial_count(url, name)
        proc = numsweep(*args, "--jobs", jobs, "--force", *grouping, "--db", url,
                        "--data", data)
        started = time.monotonic()
        if sent % 2:  # after this run started trials: in trials, writes, stage changes
            while trial_count(url, name) == before and proc.poll() is None \
                    and time.monotonic() < started + 60:
                time.sleep(0.02)
        time.sleep(delay(index, sent) / (2 if sent % 2 else 1))
        wait = time.monotonic() - started
        if proc.poll() is not None:  # the sweep ended first: check it, start the next one
            code, _, err = finish(proc)
            if code != 0:
                problems.append(f"{name}: exit {code} without an interrupt: {err[-500:]}")
                return
            assert_each_planned_trial_complete_once(Storage(url), name)
            generation += 1
            continue
        os.kill(proc.pid, signal.SIGINT)
        signalled = time.monotonic()
        try:
            _, err = proc.communicate(timeout=ENDS_WITHIN)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            problems.append(f"{name}: still running {ENDS_WITHIN} s after SIGINT "
                            f"(sent {wait:.2f} s after the start)")
            return
        took = time.monotonic() - signalled
        sent += 1
        interrupted.append(wait)
        if proc.returncode not in (130, 0):  # 0: it had just finished
            problems.append(f"{name}: exit {proc.returncode} after SIGINT at {wait:.2f} s: "
                            f"{err[-800:]}")
        if proc.returncode not in (130, 0) or "Traceback" in err:  # all of it, to read
            (tmp_path / f"{name}-{sent}.stderr").write_text(err)
        if "Traceback" in err:
            problems.append(f"{name}: a traceback after SIGINT at {wait:.2f} s: {err[-800:]}")
        if proc.returncode == 130 and trial_count(url, name) != before \
                and f"numsweep sweep resume {name}" not in err:
            problems.append(f"{name}: no resume hint after SIGINT at {wait:.2f} s: {err}")
        if sweep_exists(url, name) and running_trials(url, name):
            problems.append(f"{name}: trials left RUNNING after SIGINT at {wait:.2f} s "
                            f"(ended in {took:.1f} s)")
    code, _, err = finish(numsweep("sweep", "resume", name, "--jobs", jobs, "--force",
                                   "--db", url) if sweep_exists(url, name)
                          else numsweep("sweep", "run", path, "--jobs", jobs, "--force",
                                        "--db", url, "--data", data))
    if code != 0:
        problems.append(f"{name}: the final resume ended with {code}: {err[-800:]}")
        return
    try:
        assert_each_planned_trial_complete_once(Storage(url), name)
    except AssertionError as exc:
        problems.append(f"{name}: not every planned trial complete once: {exc}")


def test_ctrl_c_at_fifty_moments_ends_promptly_and_resume_completes_each_trial_once(
        tmp_path: Path, tiny_npz: Path) -> None:
    problems: list[str] = []
    interrupted: list[float] = []
    threads = [threading.Thread(target=chain, args=(i, tmp_path, tiny_npz, problems,
                                                    interrupted)) for i in range(CHAINS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert problems == [], "\n".join(p[:300] for p in problems)
    assert len(interrupted) >= 50
    assert max(interrupted) - min(interrupted) > LONGEST_DELAY / 2  # spread over the life
