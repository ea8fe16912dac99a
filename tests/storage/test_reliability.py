"""Storage under faults: concurrent writers numbering trials, a write lock this process itself
holds when Ctrl-C comes, databases made before the data fingerprint existed."""

from __future__ import annotations

import multiprocessing
import os
import threading
import time
import uuid
from pathlib import Path

import pytest
from sqlalchemy import text

from numsweep.storage import Storage, TrialState

POSTGRES = os.environ.get("NUMSWEEP_TEST_POSTGRES_URL", "")
URLS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.skipif(
    not POSTGRES, reason="NUMSWEEP_TEST_POSTGRES_URL is not set"))]


def _url(kind: str, tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'r.db'}" if kind == "sqlite" else POSTGRES


def _number_trials(url: str, sweep_id: int, count: int, errors: multiprocessing.Queue) -> None:
    """What `numsweep train` does per run: read the next number, then start the trial."""
    storage = Storage(url)
    try:
        for _ in range(count):
            storage.start_trial(sweep_id, None, storage.next_trial_number(sweep_id), {"k": 1}, 0)
    except Exception as exc:  # reported to the test: a lost run
        errors.put(f"{type(exc).__name__}: {exc}")
    finally:
        storage.dispose()


@pytest.mark.parametrize("kind", URLS)
def test_four_concurrent_writers_number_every_trial_once(kind: str, tmp_path: Path) -> None:
    url = _url(kind, tmp_path)
    storage = Storage(url)
    sweep = storage.get_or_create_sweep(f"conc-{uuid.uuid4().hex[:8]}", {"single": True}, 0)
    ctx = multiprocessing.get_context("fork")
    errors: multiprocessing.Queue = ctx.Queue()
    procs = [ctx.Process(target=_number_trials, args=(url, sweep.id, 40, errors))
             for _ in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    lost = [errors.get() for _ in range(errors.qsize())] if not errors.empty() else []
    assert lost == []
    trials = storage.get_trials(sweep.name)
    assert len(trials) == 160
    assert sorted(t.number for t in trials) == list(range(160))


def test_start_trial_without_a_number_takes_the_next_free_one(tmp_path: Path) -> None:
    storage = Storage(f"sqlite:///{tmp_path / 'n.db'}")
    sweep = storage.get_or_create_sweep("s", {"single": True}, 0)
    first = storage.start_trial(sweep.id, None, None, {}, 0)
    taken = storage.start_trial(sweep.id, None, 0, {}, 0)  # 0 is taken: renumbered
    numbers = {t.id: t.number for t in storage.get_trials("s")}
    assert numbers == {first: 0, taken: 1}


def test_interrupt_does_not_wait_on_a_lock_its_own_process_holds(tmp_path: Path) -> None:
    """A write transaction cut short by Ctrl-C in this process (here: a pooled connection left
    inside one) would make marking the trials interrupted wait out the busy timeout."""
    storage = Storage(f"sqlite:///{tmp_path / 'i.db'}")
    sweep = storage.get_or_create_sweep("s", {"single": True}, 0)
    trial = storage.start_trial(sweep.id, None, None, {}, 0)
    leaked = storage.engine.raw_connection()
    leaked.cursor().execute("UPDATE ns_sweeps SET seed = 1")  # holds the write lock
    marked: list[int] = []
    marker = threading.Thread(target=lambda: marked.append(storage.interrupt_trials_promptly(
        [trial], "interrupted")), daemon=True)
    started = time.monotonic()
    marker.start()
    marker.join(15)
    assert not marker.is_alive(), "waited on its own process's write lock"
    assert marked == [1] and time.monotonic() - started < 10
    assert storage.get_trials("s")[0].state is TrialState.INTERRUPTED


def _hold_lock(url: str, ready: multiprocessing.Event, seconds: float) -> None:
    storage = Storage(url)
    with storage.engine.connect() as conn:
        conn.execute(text("UPDATE ns_sweeps SET seed = 2"))
        ready.set()
        time.sleep(seconds)
        conn.rollback()


def test_interrupt_gives_up_quickly_when_another_process_holds_the_lock(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'o.db'}"
    storage = Storage(url)
    sweep = storage.get_or_create_sweep("s", {"single": True}, 0)
    trial = storage.start_trial(sweep.id, None, None, {}, 0)
    ctx = multiprocessing.get_context("fork")
    ready = ctx.Event()
    holder = ctx.Process(target=_hold_lock, args=(url, ready, 20.0))
    holder.start()
    try:
        assert ready.wait(30)
        started = time.monotonic()
        assert storage.interrupt_trials_promptly([trial], "interrupted", wait=1.0) == 0
        assert time.monotonic() - started < 6
    finally:
        holder.kill()
        holder.join()
    # the lock is gone: the next marking works, with the pooled connections' usual patience
    assert storage.interrupt_trials_promptly([trial], "interrupted") == 1


def test_a_database_made_before_fingerprints_gains_the_column_and_keeps_its_sweeps(
        tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}"
    storage = Storage(url)
    storage.get_or_create_sweep("old", {"name": "old"}, 3)
    with storage.engine.begin() as conn:  # as an older numsweep made it
        conn.execute(text("ALTER TABLE ns_sweeps DROP COLUMN data_fingerprint"))
    storage.dispose()
    reopened = Storage(url)
    old = reopened.get_sweep("old")
    assert old.seed == 3 and old.data_fingerprint is None
    assert reopened.claim_data_fingerprint(old.id, "abc") == "abc"
    assert reopened.claim_data_fingerprint(old.id, "other") == "abc"  # the first one stays
    assert reopened.get_sweep("old").data_fingerprint == "abc"


def test_stage_plan_updates_merge_instead_of_overwriting(tmp_path: Path) -> None:
    """Two processes updating different keys of a stage's plan (the study set up, the time
    budget's cut) both keep their change; each reads and writes in one transaction."""
    storage = Storage(f"sqlite:///{tmp_path / 'm.db'}")
    sweep = storage.get_or_create_sweep("s", {"name": "s"}, 0)
    stage = storage.get_or_create_stage(sweep.id, 0, "g", "grid",
                                        {"n_configs": 8, "study_ready": False}, "plan")
    other = Storage(f"sqlite:///{tmp_path / 'm.db'}")
    storage.merge_stage_space(stage.id, {"study_ready": True})
    other.merge_stage_space(stage.id, {"n_configs": 5}, note="time budget used up")
    got = storage.get_stage(sweep.id, 0)
    assert got is not None
    assert got.space == {"n_configs": 5, "study_ready": True}
    assert got.note == "plan; time budget used up"
