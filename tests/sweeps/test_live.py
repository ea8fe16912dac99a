"""A running trial's curve as it trains: in the database (``ns_curve_points``, what ``plot
curves`` reads), as its Optuna trial's intermediate values, and as lines of the progress
output when it goes to a file; the channels that bring the workers' points to the sweep."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest

from numsweep.analysis import load_curves
from numsweep.engine import CurvePoint
from numsweep.storage import Storage, TrialRecord, TrialState
from numsweep.sweeps.live import FileChannel, FilePoints
from tests.sweeps.test_durable import FIXED, TIMEOUT, finish, invoke, write_spec

LIVE_CYCLES = 160
"""Cycles of 16 updates and 2 curve points each: trials long enough to be seen running with
points told twice (the sweep looks every 0.5 s) also on a quick, quiet machine."""
LIVE_UPDATES = 16 * LIVE_CYCLES
LIVE_POINTS = 2 * LIVE_CYCLES + 1


def live_spec(tmp_path: Path, name: str) -> Path:
    """A grid of 2 whose trials train long enough (:data:`LIVE_UPDATES` updates,
    :data:`LIVE_POINTS` curve points) to be seen running with points."""
    return write_spec(tmp_path, {
        "name": name, "seed": 3, "fixed": {**FIXED, "cycles": LIVE_CYCLES},
        "space": {"lam": {"low": 1e-4, "high": 1e-2, "log": True, "grid": 2}},
        "stages": [{"name": "coarse", "sampler": "grid"}]})


def val_points(storage: Storage, trial_id: int) -> list[tuple[int, float]]:
    return [(c.step, c.acc) for c in storage.get_curves([trial_id]) if c.split == "val"]


def study_trial(storage: Storage, name: str, trial_id: int) -> int | None:
    """The number of the Optuna trial that numsweep trial ``trial_id`` reports to."""
    for stage in storage.list_stages(storage.get_sweep(name).id):
        for slot in storage.stage_slots(stage.id):
            if slot.trial_id == trial_id:
                return slot.study_trial
    return None


def told_so_far(url: str, name: str, number: int | None) -> dict[int, float]:
    """The intermediate values of Optuna trial ``number`` of study ``name``."""
    study = optuna.load_study(study_name=name, storage=url)
    return next((t.intermediate_values for t in study.get_trials(deepcopy=False)
                 if t.number == number), {})


@contextlib.contextmanager
def stopped_with_points(proc: subprocess.Popen, storage: Storage, name: str,
                        points: int = 3) -> Iterator[TrialRecord]:
    """The sweep's processes stopped (SIGSTOP) at a moment a trial of sweep ``name`` is
    RUNNING with at least ``points`` validation curve points stored and two of them told to
    its Optuna trial (a moment later); yields that trial."""
    give_up = time.monotonic() + TIMEOUT
    while True:
        assert proc.poll() is None, finish(proc)
        assert time.monotonic() < give_up, "no running trial with curve points seen"
        os.killpg(proc.pid, signal.SIGSTOP)  # the sweep process and its loky workers
        try:
            running = [t for t in storage.get_trials(name) if t.state is TrialState.RUNNING]
        except Exception:
            running = []  # not in the database yet
        seen = [t for t in running if len(val_points(storage, t.id)) >= points
                and len(told_so_far(storage.url, f"{name}/coarse",
                                    study_trial(storage, name, t.id))) >= 2]
        if seen:
            try:
                yield seen[0]
            finally:
                os.killpg(proc.pid, signal.SIGCONT)
            return
        os.killpg(proc.pid, signal.SIGCONT)
        time.sleep(0.05)


def test_a_running_trials_curve_is_in_the_database_and_the_log_while_it_trains(
        tmp_path: Path, tiny_npz: Path) -> None:
    url = f"sqlite:///{tmp_path / 'live.db'}"
    log = tmp_path / "stderr.txt"
    with log.open("w") as stderr:  # not a terminal: the progress comes as lines
        proc = subprocess.Popen(
            [sys.executable, "-m", "numsweep", "sweep", "run", live_spec(tmp_path, "live"),
             "--jobs", "2", "--group-size", "1", "--db", url, "--data", tiny_npz],
            stdout=subprocess.PIPE, stderr=stderr, text=True, start_new_session=True)
        storage = Storage(url)
        with stopped_with_points(proc, storage, "live") as trial:
            curve = val_points(storage, trial.id)
            frame = load_curves(url, [trial.id])  # what `numsweep plot curves` draws
            study = optuna.load_study(study_name="live/coarse", storage=url)
            [running] = [t for t in study.get_trials()
                         if t.state is optuna.trial.TrialState.RUNNING
                         and t.number == study_trial(storage, "live", trial.id)]
            written = log.read_text()
            drawn = invoke("plot", "curves", "--sweep", "live", "--trial", trial.id, "--db", url,
                           "-o", tmp_path / "running.png")
        assert drawn.exit_code == 0, drawn.output
        assert (tmp_path / "running.png").stat().st_size > 0
        assert [s for s, _ in curve] == sorted({s for s, _ in curve}) and curve[0][0] == 0
        assert set(frame["step"]) == {s for s, _ in curve} and set(frame["split"]) == {
            "train", "val"}
        # what optuna-dashboard draws: the points so far (the latest one at each look)
        assert running.intermediate_values.items() <= dict(curve).items()
        line = rf"^coarse trial {trial.id} update \d+/{LIVE_UPDATES} val_acc \d\.\d{{4}}$"
        assert re.search(line, written, re.MULTILINE), written
        code, _, _ = finish(proc)
    assert code == 0, log.read_text()[-3000:]
    # ended: each trial's whole curve once, as its result holds it, told to its study
    trials = storage.get_trials("live")
    assert {t.state for t in trials} == {TrialState.COMPLETE}
    study = optuna.load_study(study_name="live/coarse", storage=url)
    values = {t.number: t.intermediate_values for t in study.get_trials()}
    for t in trials:
        points = [(c.step, c.split) for c in storage.get_curves([t.id])]
        assert len(points) == len(set(points)) == 2 * LIVE_POINTS
        assert values[study_trial(storage, "live", t.id)] == dict(val_points(storage, t.id))


def test_file_channel_takes_whole_lines_only_and_each_once(tmp_path: Path) -> None:
    """A line a worker is writing waits for the next look; a line is taken once."""
    channel = FileChannel(tmp_path)
    sink = FilePoints(str(tmp_path))
    point = CurvePoint(5, "val", 1.5, 1.6, 0.25, 0.01)
    sink.put(12, 100, [point])
    path = tmp_path / "live-12.jsonl"
    with path.open("ab") as f:
        f.write(b'[12, 100, [[6, "val"')  # half a line
    assert channel.take() == [(12, 100, (point,))]
    with path.open("ab") as f:
        f.write(b', 1.0, 1.1, 0.5, 0.02]]]\n')
    assert channel.take() == [(12, 100, (CurvePoint(6, "val", 1.0, 1.1, 0.5, 0.02),))]
    assert channel.take() == []
    channel.forget(12)
    assert not path.exists()


def test_dask_channel_brings_a_workers_points(tmp_path: Path) -> None:
    distributed = pytest.importorskip("distributed")
    from numsweep.sweeps.live import DaskChannel

    point = CurvePoint(3, "val", 1.0, 1.1, 0.75, 0.01)
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=True,
                                  host="127.0.0.1", dashboard_address=None) as cluster, \
            distributed.Client(cluster.scheduler_address, set_as_default=False) as client:
        channel = DaskChannel(client)
        sink = channel.sink
        client.submit(sink.put, 8, 30, [point], pure=False).result(timeout=TIMEOUT)
        assert channel.take() == [(8, 30, (point,))]
        assert channel.take() == []


def test_a_single_trial_stores_its_curve_points_as_it_trains(
        tmp_path: Path, tiny_npz: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``numsweep train`` (and ``trial rerun``) train in this process: each curve point is
    in the database while the trial is still RUNNING; its whole curve replaces them."""
    from numsweep.engine import TrialSpec
    from numsweep.sweeps.single import run_single

    storage = Storage(f"sqlite:///{tmp_path / 'single.db'}")
    seen: list[tuple[TrialState, int]] = []
    store = Storage.add_running_curve_points

    def store_and_look(self: Storage, trial_id: int, curves: list) -> bool:
        stored = store(self, trial_id, curves)
        [trial] = self.get_trials(trial_ids=[trial_id])
        seen.append((trial.state, len(self.get_curves([trial_id]))))
        return stored

    monkeypatch.setattr(Storage, "add_running_curve_points", store_and_look)
    spec = TrialSpec.from_mapping({**FIXED, "cycles": 2, "lam": 0.001})
    trial_id, outcome = run_single(spec, storage, data_source=str(tiny_npz),
                                   checkpoint_dir=tmp_path / "ckpt")
    assert outcome.result is not None
    assert [state for state, _ in seen] == [TrialState.RUNNING] * len(outcome.result.curves[::2])
    assert [n for _, n in seen] == list(range(2, len(outcome.result.curves) + 1, 2))
    assert len(storage.get_curves([trial_id])) == len(outcome.result.curves)
