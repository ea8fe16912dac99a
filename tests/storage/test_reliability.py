"""Storage under faults: concurrent writers numbering trials, Ctrl-C in the middle of a write,
another process's lock when Ctrl-C comes, databases made before the data fingerprint
existed."""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import time
import uuid
from pathlib import Path

import pytest
from sqlalchemy import event, text

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


@pytest.mark.usefixtures("ctrl_c_waits_for_the_database")
def test_ctrl_c_during_a_write_lets_it_commit_and_leaves_no_lock_behind(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Problem 3: a Ctrl-C that landed inside a transaction left this process holding the
    write lock, and marking the trials interrupted then waited on it. Now the write ends
    (committed), KeyboardInterrupt comes after it, and the marking does not wait."""
    storage = Storage(f"sqlite:///{tmp_path / 'i.db'}")
    sweep = storage.get_or_create_sweep("s", {"single": True}, 0)
    first = storage.start_trial(sweep.id, None, None, {}, 0)

    sent: list[str] = []

    def ctrl_c(_conn: object, _cursor: object, statement: str, *_args: object) -> None:
        if not sent:  # once: a second Ctrl-C would insist
            sent.append(statement)
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.01)  # the handler runs here, in the middle of the transaction

    event.listen(storage.engine, "before_cursor_execute", ctrl_c)
    with caplog.at_level(logging.ERROR, logger="sqlalchemy"), \
            pytest.raises(KeyboardInterrupt):
        storage.start_trial(sweep.id, None, None, {}, 0)
    event.remove(storage.engine, "before_cursor_execute", ctrl_c)
    assert sent and caplog.records == []  # no "Error closing cursor" from a closed connection
    assert [t.number for t in storage.get_trials("s")] == [0, 1]  # the write committed
    started = time.monotonic()
    assert storage.interrupt_trials_promptly([first], "interrupted") == 1
    assert time.monotonic() - started < 2
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


def test_a_full_disk_under_the_database_stops_a_sweep_in_one_line_leaving_nothing_running(
        tmp_path: Path, tiny_npz: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The disk fills as the first trial finished: SQLite may then use only the pages the
    file has (``max_page_count``), as on a full disk; numsweep's and Optuna's writes meet
    it."""
    from click.testing import CliRunner
    from sqlalchemy.engine import Engine

    import numsweep.sweeps.runner as runner_module
    from numsweep.cli import cli
    from tests.sweeps.test_durable import spec_dict, write_spec

    full: list[bool] = []

    def no_room(_conn, cursor, *_args) -> None:  # type: ignore[no-untyped-def]
        if full:
            pages = cursor.connection.execute("PRAGMA page_count").fetchone()[0]
            cursor.connection.execute(f"PRAGMA max_page_count = {pages}")

    finish = runner_module.SweepRunner._finish

    def finish_then_fill(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        full.append(True)
        return finish(self, *args, **kwargs)

    monkeypatch.setattr(runner_module.SweepRunner, "_finish", finish_then_fill)
    path = write_spec(tmp_path, spec_dict("full", n_trials=6, grid=6, hidden=[64]))
    db = f"sqlite:///{tmp_path / 'full.db'}"
    event.listen(Engine, "before_cursor_execute", no_room)
    try:
        result = CliRunner().invoke(cli, ["sweep", "run", str(path), "--jobs", "1",
                                          "--group-size", "1", "--db", db, "--data",
                                          str(tiny_npz)])
    finally:
        event.remove(Engine, "before_cursor_execute", no_room)
    assert result.exit_code == 1, result.output
    assert result.output.strip().splitlines()[-1].startswith(
        f"Error: cannot write to {db}: its disk is full (database or disk is full)"), \
        result.output  # was: Optuna's 150-line StorageInternalError
    assert "Traceback" not in result.output
    trials = Storage(db).get_trials("full")
    assert trials and TrialState.RUNNING not in {t.state for t in trials}  # was: RUNNING
    assert all("its disk is full" in t.message for t in trials
               if t.state is TrialState.INTERRUPTED)


def test_a_full_disk_as_train_stores_its_result_is_one_line_and_marks_the_trial(
        tmp_path: Path, tiny_npz: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from click.testing import CliRunner
    from sqlalchemy.engine import Engine

    import numsweep.sweeps.single as single
    from numsweep.cli import cli

    full: list[bool] = []

    def no_room(_conn, cursor, *_args) -> None:  # type: ignore[no-untyped-def]
        if full:
            pages = cursor.connection.execute("PRAGMA page_count").fetchone()[0]
            cursor.connection.execute(f"PRAGMA max_page_count = {pages}")

    record = single.record_outcome

    def fill_then_record(*args, **kwargs):  # type: ignore[no-untyped-def]
        full.append(True)
        return record(*args, **kwargs)

    monkeypatch.setattr(single, "record_outcome", fill_then_record)
    db = f"sqlite:///{tmp_path / 'full.db'}"
    event.listen(Engine, "before_cursor_execute", no_room)
    try:  # a long curve: its rows need new pages
        result = CliRunner().invoke(cli, ["train", "n_train=200", "n_val=50", "hidden=8",
                                          "batch_size=10", "cycles=4", "curve_points=50",
                                          "--db", db, "--data", str(tiny_npz)])
    finally:
        event.remove(Engine, "before_cursor_execute", no_room)
    assert result.exit_code == 1, result.output
    assert result.output.strip().splitlines() == [
        f"Error: cannot write to {db}: its disk is full (database or disk is full)"]
    [trial] = Storage(db).get_trials()
    assert trial.state is TrialState.INTERRUPTED and "disk is full" in trial.message
