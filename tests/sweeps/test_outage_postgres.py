"""Two ``numsweep worker`` processes ride out a 20 s PostgreSQL outage: the sweep completes
with every planned trial exactly once and neither worker exits. ``.ci/run`` sets
NUMSWEEP_TEST_POSTGRES_URL and the commands that stop and start the server
(NUMSWEEP_TEST_POSTGRES_STOP, NUMSWEEP_TEST_POSTGRES_START); without them the test skips."""

from __future__ import annotations

import os
import shlex
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from numsweep.storage import Storage, StorageError, TrialState
from tests.sweeps.test_durable import (
    assert_each_planned_trial_complete_once,
    finish,
    numsweep,
    spec_dict,
    wait_for,
    write_spec,
)

URL = os.environ.get("NUMSWEEP_TEST_POSTGRES_URL", "")
STOP = os.environ.get("NUMSWEEP_TEST_POSTGRES_STOP", "")
START = os.environ.get("NUMSWEEP_TEST_POSTGRES_START", "")
OUTAGE_SECONDS = 20

pytestmark = pytest.mark.skipif(not (URL and STOP and START), reason=(
    "NUMSWEEP_TEST_POSTGRES_URL, _STOP and _START are not set (.ci/run sets them)"))


def complete(storage: Storage, name: str) -> int:
    try:
        return sum(t.state is TrialState.COMPLETE for t in storage.get_trials(name))
    except StorageError:
        return 0


def test_two_workers_ride_out_a_database_outage(tmp_path: Path, tiny_npz: Path) -> None:
    name = f"outage-{uuid.uuid4().hex[:8]}"  # the database outlives the test run
    path = write_spec(tmp_path, spec_dict(name, n_trials=24, cycles=6, hidden=[256]))
    code, _, err = finish(numsweep("sweep", "create", path, "--db", URL, "--data", tiny_npz))
    assert code == 0, err
    workers = [numsweep("worker", name, "--jobs", "1", "--db", URL, "--db-wait", "180")
               for _ in range(2)]
    storage = Storage(URL)
    stopped = False
    try:
        wait_for("a few complete trials", lambda: complete(storage, name) >= 3, workers)
        before = complete(storage, name)
        storage.dispose()
        subprocess.run(shlex.split(STOP), check=True)
        stopped = True
        time.sleep(OUTAGE_SECONDS)
        assert [w.poll() for w in workers] == [None, None]  # both still waiting
        subprocess.run(shlex.split(START), check=True)
        stopped = False
    finally:
        if stopped:
            subprocess.run(shlex.split(START), check=False)
    results = [finish(w) for w in workers]
    for code, out, err in results:
        assert code == 0, err[-3000:]
        assert "stage fine: 24 complete" in out, out[-2000:]
    storage = Storage(URL)
    assert_each_planned_trial_complete_once(storage, name)
    trials = storage.get_trials(name)
    assert len(trials) == 4 + 24  # no trial ran twice, none lost
    assert before < 28  # the outage came while trials were left to run


def test_past_db_wait_a_worker_stops_with_one_line_and_keeps_what_finished(
        tmp_path: Path, tiny_npz: Path) -> None:
    name = f"gone-{uuid.uuid4().hex[:8]}"
    path = write_spec(tmp_path, spec_dict(name, n_trials=6, cycles=6, hidden=[256]))
    code, _, err = finish(numsweep("sweep", "create", path, "--db", URL, "--data", tiny_npz))
    assert code == 0, err
    env = {**os.environ, "NUMSWEEP_UNSAVED": str(tmp_path / "unsaved")}
    worker = numsweep("worker", name, "--jobs", "2", "--db", URL, "--db-wait", "8", env=env)
    storage = Storage(URL)
    stopped = False
    try:
        wait_for("a complete trial", lambda: complete(storage, name) >= 1, [worker])
        storage.dispose()
        subprocess.run(shlex.split(STOP), check=True)
        stopped = True
        code, _, err = finish(worker)
        subprocess.run(shlex.split(START), check=True)
        stopped = False
    finally:
        if stopped:
            subprocess.run(shlex.split(START), check=False)
    assert code == 1
    errors = [line for line in err.splitlines() if line.startswith("Error: ")]
    assert len(errors) == 1 and err.rstrip().endswith(errors[0]), err[-3000:]
    assert "unreachable for 8 s (--db-wait): " in errors[0]
    assert "Traceback" not in err
    kept = list((tmp_path / "unsaved").glob("*/*.json"))
    assert ("finished trial results kept in" in errors[0]) == bool(kept)
    code, _, err = finish(numsweep("worker", name, "--jobs", "2", "--db", URL, env=env))
    assert code == 0, err[-3000:]
    storage = Storage(URL)
    assert_each_planned_trial_complete_once(storage, name)
    assert not list((tmp_path / "unsaved").glob("*/*.json"))
