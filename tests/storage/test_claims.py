"""Planned trials in the database: atomic claims, attempts after an interruption or a lost
process, heartbeats, a finish that never overwrites a taken-over attempt, retries on a locked
database, and databases made by an older numsweep."""

from __future__ import annotations

import os
import socket
import sqlite3
import threading
import time
from datetime import timedelta
from pathlib import Path

import pytest

from numsweep.storage import Storage, StorageBusy, StorageError, TrialState
from numsweep.storage.storage import _retrying, now
from numsweep.sweeps.liveness import Heartbeat, is_lost
from tests.storage.before_versions import as_before_versions


def stage(tmp_path: Path) -> tuple[Storage, int, int]:
    storage = Storage(f"sqlite:///{tmp_path / 'c.db'}")
    sweep = storage.get_or_create_sweep("s", {"name": "s"}, seed=1)
    st = storage.get_or_create_stage(sweep.id, 0, "coarse", "grid", {})
    return storage, sweep.id, st.id


def test_a_slot_is_claimed_once(tmp_path: Path) -> None:
    storage, sweep_id, stage_id = stage(tmp_path)
    first = storage.claim_slots(sweep_id, stage_id, [(0, {"lam": 0.1}, 5), (1, {"lam": 0.1}, 6)],
                                study_trial=0, worker="a:1")
    assert first is not None and [n for _, n in first] == [0, 1]
    assert storage.claim_slots(sweep_id, stage_id, [(1, {"lam": 0.2}, 6)], study_trial=1,
                               worker="b:2") is None
    again = storage.claim_slots(sweep_id, stage_id, [(2, {"lam": 0.3}, 7)], study_trial=1,
                                worker="b:2")
    assert again is not None and again[0][1] == 2
    slots = storage.stage_slots(stage_id)
    assert [(s.slot, s.attempt, s.state, s.worker) for s in slots] == [
        (0, 0, TrialState.RUNNING, "a:1"), (1, 0, TrialState.RUNNING, "a:1"),
        (2, 0, TrialState.RUNNING, "b:2")]


def test_a_lost_attempt_runs_again_once_and_its_late_result_is_not_kept(tmp_path: Path) -> None:
    storage, sweep_id, stage_id = stage(tmp_path)
    [(old_id, _)] = storage.claim_slots(sweep_id, stage_id, [(0, {"lam": 0.1}, 5)],
                                        study_trial=3, worker="gone:1")
    [seen] = storage.stage_slots(stage_id)
    storage.heartbeat([old_id])  # still alive after all: the claim must not take it
    assert storage.claim_again(old_id, worker="b:2", seen_heartbeat=seen.heartbeat_at) is None
    [fresh] = storage.stage_slots(stage_id)
    claimed = storage.claim_again(old_id, worker="b:2", seen_heartbeat=fresh.heartbeat_at,
                                  lost_message="lost: no heartbeat")
    assert claimed is not None
    new_id, number = claimed
    assert storage.claim_again(old_id, worker="c:3", seen_heartbeat=fresh.heartbeat_at) is None
    old, new = storage.get_trials("s")
    assert (old.state, old.message) == (TrialState.INTERRUPTED, "lost: no heartbeat")
    assert (new.id, new.number, new.slot, new.attempt, new.state, new.seed, new.params) == (
        new_id, number, 0, 1, TrialState.RUNNING, 5, {"lam": 0.1})
    assert storage.stage_slots(stage_id)[-1].study_trial == 3
    # the lost process finishes after all: nothing of it is kept
    assert not storage.finish_trial(old_id, TrialState.COMPLETE, metrics={"val_acc": 0.9})
    assert storage.get_trials(trial_ids=[old_id])[0].metrics == {}
    assert storage.finish_trial(new_id, TrialState.COMPLETE, metrics={"val_acc": 0.8})
    assert storage.stage_slots(stage_id)[-1].val_acc == 0.8
    assert storage.claim_again(new_id, worker="c:3", seen_heartbeat=None) is None  # final


def test_interrupted_trials_and_heartbeats_touch_only_running_ones(tmp_path: Path) -> None:
    storage, sweep_id, stage_id = stage(tmp_path)
    claimed = storage.claim_slots(sweep_id, stage_id, [(0, {}, 1), (1, {}, 2)], study_trial=0,
                                  worker="a:1")
    assert claimed is not None
    (a, _), (b, _) = claimed
    storage.finish_trial(a, TrialState.COMPLETE, metrics={"val_acc": 0.5})
    assert storage.interrupt_trials([a, b], "interrupted (Ctrl-C)") == 1
    before = {s.trial_id: s.heartbeat_at for s in storage.stage_slots(stage_id)}
    time.sleep(0.01)
    storage.heartbeat([a, b])
    after = {s.trial_id: s.heartbeat_at for s in storage.stage_slots(stage_id)}
    assert after == before
    states = {t.id: t.state for t in storage.get_trials("s")}
    assert states == {a: TrialState.COMPLETE, b: TrialState.INTERRUPTED}


def test_an_interrupt_also_takes_the_trials_its_process_claimed_but_did_not_track(
        tmp_path: Path) -> None:
    storage, sweep_id, stage_id = stage(tmp_path)
    claimed = storage.claim_slots(sweep_id, stage_id, [(0, {}, 1), (1, {}, 2)], study_trial=0,
                                  worker="me:1")
    other = storage.claim_slots(sweep_id, stage_id, [(2, {}, 3)], study_trial=1, worker="you:2")
    assert claimed is not None and other is not None
    tracked = claimed[0][0]  # slot 1 was claimed just as Ctrl-C came
    assert storage.interrupt_trials([tracked], "interrupted", sweep_id=sweep_id,
                                    worker="me:1") == 2
    states = {s.slot: s.state for s in storage.stage_slots(stage_id)}
    assert states == {0: TrialState.INTERRUPTED, 1: TrialState.INTERRUPTED,
                      2: TrialState.RUNNING}  # another process's trial is left alone


def test_the_heartbeat_thread_stamps_running_trials(tmp_path: Path) -> None:
    storage, sweep_id, stage_id = stage(tmp_path)
    [(tid, _)] = storage.claim_slots(sweep_id, stage_id, [(0, {}, 1)], study_trial=0,
                                     worker="a:1")
    [first] = storage.stage_slots(stage_id)
    heart = Heartbeat(storage, interval=0.02)
    heart.add(tid)
    heart.start()
    try:
        give_up = time.monotonic() + 60
        while storage.stage_slots(stage_id)[0].heartbeat_at == first.heartbeat_at:
            assert time.monotonic() < give_up, "no heartbeat"
            time.sleep(0.02)
    finally:
        heart.stop()


def test_a_running_trial_is_lost_without_heartbeat_or_when_its_local_process_is_gone(
        tmp_path: Path) -> None:
    storage, sweep_id, stage_id = stage(tmp_path)
    host = socket.gethostname()
    gone = os.fork()
    if gone == 0:
        os._exit(0)
    os.waitpid(gone, 0)
    for worker in ("elsewhere:1", f"{host}:{gone}", f"{host}:{os.getppid()}"):
        storage.claim_slots(sweep_id, stage_id, [(len(storage.stage_slots(stage_id)), {}, 1)],
                            study_trial=0, worker=worker)
    elsewhere, dead, alive = storage.stage_slots(stage_id)
    t = now()
    assert not is_lost(elsewhere, grace=60, now=t)  # fresh heartbeat, another machine
    assert is_lost(elsewhere, grace=60, now=t + timedelta(seconds=61))
    assert is_lost(dead, grace=60, now=t)  # this machine, its process is gone
    assert not is_lost(alive, grace=60, now=t)
    storage.finish_trial(alive.trial_id, TrialState.FAILED, message="x")
    [*_, done] = storage.stage_slots(stage_id)
    assert not is_lost(done, grace=60, now=t + timedelta(days=1))


def test_a_locked_database_is_retried_not_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    monkeypatch.setattr(time, "sleep", lambda _s: None)

    class Fake:
        @_retrying
        def write(self) -> str:
            calls.append(1)
            if len(calls) < 3:
                raise StorageBusy("database error on x: database is locked")
            return "done"

    assert Fake().write() == "done" and len(calls) == 3


def test_a_writer_holding_the_lock_delays_but_never_fails_a_claim(tmp_path: Path) -> None:
    storage, sweep_id, stage_id = stage(tmp_path)
    other = sqlite3.connect(tmp_path / "c.db", isolation_level=None, check_same_thread=False)
    other.execute("BEGIN IMMEDIATE")  # another process's write transaction
    release = threading.Timer(0.5, lambda: other.execute("COMMIT"))
    release.start()
    claimed = storage.claim_slots(sweep_id, stage_id, [(0, {}, 1)], study_trial=0,
                                  worker="a:1")
    release.join()
    other.close()
    assert claimed is not None


def test_a_database_made_by_an_older_numsweep_gets_the_new_columns(tmp_path: Path) -> None:
    storage, sweep_id, stage_id = stage(tmp_path)
    storage.start_trial(sweep_id, None, 0, {"lam": 0.1}, seed=3)
    storage.dispose()
    as_before_versions(f"sqlite:///{tmp_path / 'c.db'}")
    raw = sqlite3.connect(tmp_path / "c.db")
    raw.execute("DROP INDEX uq_ns_trials_slot_attempt")
    for column in ("slot", "attempt", "study_trial", "setup_json"):
        raw.execute(f"ALTER TABLE ns_trials DROP COLUMN {column}")
    raw.commit()
    raw.close()
    again = Storage(f"sqlite:///{tmp_path / 'c.db'}")
    [old] = again.get_trials("s")
    assert (old.slot, old.attempt, old.params, old.setup) == (None, 0, {"lam": 0.1}, {})
    with_setup = again.start_trial(sweep_id, None, 1, {}, seed=1, setup={"data": "/d.npz"})
    assert again.get_trials(trial_ids=[with_setup])[0].setup == {"data": "/d.npz"}
    assert again.claim_slots(sweep_id, stage_id, [(0, {}, 1)], study_trial=0, worker="a:1")
    assert again.claim_slots(sweep_id, stage_id, [(0, {}, 1)], study_trial=0,
                             worker="b:1") is None  # the unique index is back


def test_an_unreachable_server_is_a_one_line_error_without_the_password() -> None:
    with pytest.raises(StorageError) as info:
        Storage("postgresql://me:secret@127.0.0.1:1/sweeps")
    message = str(info.value)
    assert message.startswith("cannot open postgresql://me:***@127.0.0.1:1/sweeps: ")
    assert "secret" not in message and len(message.splitlines()) == 1
