"""One sweep in a PostgreSQL database run by two ``numsweep worker`` processes, as on two
machines. ``.ci/run`` starts a PostgreSQL server on loopback and sets
NUMSWEEP_TEST_POSTGRES_URL; without it the test skips, with it an unreachable server fails."""

from __future__ import annotations

import os
import shlex
import uuid
from collections import Counter
from pathlib import Path

import pytest

from numsweep.storage import Storage, shown_url
from tests.sweeps.test_durable import (
    assert_each_planned_trial_complete_once,
    finish,
    numsweep,
    spec_dict,
    write_spec,
)

URL = os.environ.get("NUMSWEEP_TEST_POSTGRES_URL", "")

pytestmark = pytest.mark.skipif(not URL, reason="NUMSWEEP_TEST_POSTGRES_URL is not set "
                                                "(.ci/run starts PostgreSQL and sets it)")


def test_two_workers_on_postgresql_run_every_planned_trial_once(tmp_path: Path,
                                                                tiny_npz: Path) -> None:
    name = f"pg-{uuid.uuid4().hex[:8]}"  # the database outlives the test run
    path = write_spec(tmp_path, spec_dict(name, n_trials=12, cycles=4, hidden=[256]))
    code, out, err = finish(numsweep("sweep", "create", path, "--db", URL, "--data", tiny_npz))
    assert code == 0, err
    # no password shown; quoted for a shell (the mask is ***)
    assert f"numsweep worker {name} --db {shlex.quote(shown_url(URL))}" in out
    workers = [numsweep("worker", name, "--jobs", "1", "--db", URL) for _ in range(2)]
    results = [finish(w) for w in workers]
    for code, out, err in results:
        assert code == 0, err[-2000:]
        assert "stage coarse: 4 complete" in out and "stage fine: 12 complete" in out
    storage = Storage(URL)
    assert storage.engine.dialect.name == "postgresql"
    assert_each_planned_trial_complete_once(storage, name)
    trials = storage.get_trials(name)
    assert len(trials) == 16  # no trial ran twice
    ran_by = Counter(t.worker.rpartition(":")[2] for t in trials)
    assert set(ran_by) == {str(w.pid) for w in workers}, ran_by
