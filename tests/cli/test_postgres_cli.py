"""The command line on a PostgreSQL database whose URL holds a password: no command writes
the password anywhere. ``.ci/run`` starts a PostgreSQL server on loopback and sets
NUMSWEEP_TEST_POSTGRES_URL; without it (or without a password in it) the test skips."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from tests.cli.test_reliability_cli import EXAMPLE, SMALL, invoke

URL = os.environ.get("NUMSWEEP_TEST_POSTGRES_URL", "")
PASSWORD = make_url(URL).password if URL else None

pytestmark = [
    pytest.mark.skipif(not PASSWORD, reason="NUMSWEEP_TEST_POSTGRES_URL with a password is not "
                                            "set"),
    # a password that is also the user's or the database's name shows in every masked URL
    pytest.mark.skipif(bool(PASSWORD) and str(PASSWORD) in URL.replace(f":{PASSWORD}@", ":@"),
                       reason="the test URL's password also names its user, host or database"),
]


def test_no_command_writes_the_database_password(tmp_path: Path, tiny_npz: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # checkpoints and kept results
    monkeypatch.setenv("NUMSWEEP_UNSAVED", str(tmp_path / "home" / "unsaved"))
    name = f"pw-{uuid.uuid4().hex[:8]}"  # the database outlives the test run
    outputs = [invoke("sweep", "run", EXAMPLE, f"name={name}", *SMALL, "coarse.n_trials=2",
                      "--jobs", "1", "--db", URL, "--data", tiny_npz),
               invoke("train", *SMALL, "--sweep", f"{name}-t", "--db", URL, "--data",
                      tiny_npz),
               invoke("sweep", "show", name, "--db", URL),
               invoke("sweep", "list", "--db", URL),
               invoke("trials", "--sweep", name, "--format", "json", "--db", URL),
               invoke("report", name, "-o", tmp_path / "report", "--db", URL),
               invoke("sweep", "resume", f"{name}-missing", "--db", URL)]
    assert all(r.exit_code == 0 for r in outputs[:6]), [r.output for r in outputs]
    for result in outputs:
        assert str(PASSWORD) not in result.output
    for path in tmp_path.rglob("*"):
        if path.is_file():
            assert str(PASSWORD).encode() not in path.read_bytes(), path
    from numsweep.storage import Storage

    for sweep in Storage(URL).list_sweeps():
        assert str(PASSWORD) not in repr(sweep.spec)
