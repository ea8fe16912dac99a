"""optuna-dashboard (from the test extras) on a numsweep database shows each trial's metrics,
fixed parameters and learning curve, names the objective, and shows no failures that never
happened, after two `numsweep worker --jobs 2` processes ran one sweep together; and the
learning curve of a trial still running."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from numsweep.storage import Storage, TrialState
from numsweep.sweeps.optuna_bridge import TRIAL_ID_ATTR
from tests.sweeps.test_durable import (
    TIMEOUT,
    finish,
    numsweep,
    spec_dict,
    write_spec,
)
from tests.sweeps.test_live import live_spec, stopped_with_points, study_trial, val_points

DASHBOARD = shutil.which("optuna-dashboard")
pytestmark = pytest.mark.skipif(DASHBOARD is None, reason="optuna-dashboard is not installed "
                                                          "(pip install 'numsweep[test]')")
SHOWN = (TRIAL_ID_ATTR, "test_acc", "train_acc", "train_seconds", "eval_seconds",
         "param_count", "updates", "param_n_train", "param_seed", "param_cycles")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=30) as response:
        return json.loads(response.read())


def test_the_dashboard_shows_a_sweep_run_by_two_workers(tmp_path: Path, tiny_npz: Path) -> None:
    raw = spec_dict("dash", n_trials=8, cycles=2)
    raw["fixed"]["curve_points"] = 3
    raw["stages"][1]["pruner"] = "median"
    url = f"sqlite:///{tmp_path / 'dash.db'}"
    code, _, err = finish(numsweep("sweep", "create", write_spec(tmp_path, raw), "--db", url,
                                   "--data", tiny_npz))
    assert code == 0, err
    workers = [numsweep("worker", "dash", "--jobs", "2", "--db", url) for _ in range(2)]
    for code, _, err in [finish(w) for w in workers]:
        assert code == 0, err[-2000:]
    storage = Storage(url)
    trials = storage.get_trials("dash")
    assert len(trials) == 4 + 8 and len({(t.stage, t.slot) for t in trials}) == 12
    assert {t.state for t in trials} <= {TrialState.COMPLETE, TrialState.PRUNED}
    ids = {t.id for t in trials}

    with dashboard(url) as base:
        studies = get(f"{base}/api/studies")["study_summaries"]
        names = {s["study_name"]: s["study_id"] for s in studies}
        assert set(names) == {"dash/coarse", "dash/fine"}
        seen = set()
        for name, study_id in names.items():
            detail = get(f"{base}/api/studies/{study_id}")
            assert detail["objective_names"] == ["val_acc"]
            study_attrs = {a["key"]: a["value"] for a in detail["user_attrs"]}
            assert {"stage_spec", "sampler", "narrowing", "description"} <= set(study_attrs)
            assert detail["has_intermediate_values"]
            trials = detail["trials"]
            assert trials and not [t for t in trials if t["state"] == "Fail"], \
                [(t["number"], t["state"], t["user_attrs"]) for t in trials]
            for t in trials:
                # numsweep's id first, none of its bookkeeping (ns_*) among what is shown
                assert t["user_attrs"][0]["key"] == TRIAL_ID_ATTR, t["user_attrs"]
                assert not [a for a in t["user_attrs"] if a["key"].startswith("ns_")]
                attrs = {a["key"]: a["value"] for a in t["user_attrs"]}
                assert set(SHOWN) <= set(attrs), (name, t["number"], sorted(attrs))
                seen.add(int(attrs[TRIAL_ID_ATTR]))
                if t["state"] == "Complete":
                    assert len(t["intermediate_values"]) >= 3, (name, t["number"])
        assert ids <= seen  # every numsweep trial is in a study


def test_the_dashboard_draws_a_running_trials_curve(tmp_path: Path, tiny_npz: Path) -> None:
    """While a trial trains, its Optuna trial (Running) has its curve points so far as
    intermediate values: the dashboard draws its learning curve before it ends."""
    url = f"sqlite:///{tmp_path / 'running.db'}"
    proc = numsweep("sweep", "run", live_spec(tmp_path, "running"), "--jobs", "2",
                    "--group-size", "1", "--db", url, "--data", tiny_npz)
    storage = Storage(url)
    try:
        with stopped_with_points(proc, storage, "running") as trial, dashboard(url) as base:
            number = study_trial(storage, "running", trial.id)
            curve = dict(val_points(storage, trial.id))
            [summary] = get(f"{base}/api/studies")["study_summaries"]
            detail = get(f"{base}/api/studies/{summary['study_id']}")
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate(timeout=TIMEOUT)
    assert detail["has_intermediate_values"]
    [shown] = [t for t in detail["trials"] if t["number"] == number]
    assert shown["state"] == "Running"
    values = {v["step"]: v["value"] for v in shown["intermediate_values"]}
    assert values.items() <= curve.items() and len(values) >= 2  # its points so far


@contextlib.contextmanager
def dashboard(url: str) -> Iterator[str]:
    """optuna-dashboard on database ``url``; yields its address once it answers."""
    port = free_port()
    server = subprocess.Popen([str(DASHBOARD), url, "--host", "127.0.0.1", "--port", str(port),
                               "--quiet"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True)
    try:
        base = f"http://127.0.0.1:{port}"
        give_up = time.monotonic() + TIMEOUT
        while True:
            try:
                get(f"{base}/api/studies")
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > give_up:
                    out = server.stdout.read() if server.stdout else ""
                    pytest.fail(f"optuna-dashboard did not start: {out}")
                time.sleep(0.2)
        yield base
    finally:
        server.terminate()
        server.wait(timeout=30)
