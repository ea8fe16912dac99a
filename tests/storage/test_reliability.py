"""Storage under faults: concurrent writers numbering trials, Ctrl-C in the middle of a write,
another process's lock when Ctrl-C comes, databases made before the data fingerprint
existed; in-memory URLs, readers of missing, foreign and read-only files, a database file
deleted while open."""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import sqlite3
import time
import uuid
from pathlib import Path

import pytest
from sqlalchemy import event, text

from numsweep.storage import Storage, StorageError, StorageGone, TrialState
from tests.storage.before_versions import as_before_versions

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
    storage.dispose()
    as_before_versions(url)
    with sqlite3.connect(tmp_path / "old.db") as conn:  # as an older numsweep made it
        conn.execute("ALTER TABLE ns_sweeps DROP COLUMN data_fingerprint")
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


# Nothing lost without an error: in-memory URLs, readers, a database file that goes away

@pytest.mark.parametrize("url", ["", "sqlite://", "sqlite:///", "sqlite:///:memory:",
                                 "sqlite:///file::memory:?uri=true"])
def test_an_in_memory_or_empty_url_is_refused_unless_asked_for(url: str) -> None:
    with pytest.raises(StorageError, match="is an in-memory database: what is stored there is "
                                           "gone when the command ends"):
        Storage(url)
    with pytest.raises(StorageError, match="in-memory"):
        Storage(url, read_only=True)
    if url:
        held = Storage(url, in_memory=True)  # a caller that reads from this object
        held.get_or_create_sweep("m", {"name": "m"}, 0)
        assert [s.name for s in held.list_sweeps()] == ["m"]


def _file_state(path: Path) -> tuple[bytes, list[str]]:
    """The file's bytes and the names beside it (a reader adds neither tables nor files)."""
    return path.read_bytes(), sorted(p.name for p in path.parent.iterdir())


def test_a_reader_never_creates_or_changes_a_database(tmp_path: Path) -> None:
    import optuna

    missing = tmp_path / "typo_runs.db"
    with pytest.raises(StorageError, match=f"cannot read sqlite:///{missing}: {missing} does "
                                           "not exist"):
        Storage(f"sqlite:///{missing}", read_only=True)
    assert not missing.exists()
    with pytest.raises(StorageError, match="does not exist"):  # resume, worker: no new file
        Storage(f"sqlite:///{missing}", create=False)
    assert not missing.exists()

    foreign = tmp_path / "foreign.db"
    with sqlite3.connect(foreign) as conn:
        conn.execute("CREATE TABLE measurements (x REAL)")
    optuna_only = tmp_path / "optuna.db"
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    optuna.create_study(storage=f"sqlite:///{optuna_only}", study_name="s")
    empty = tmp_path / "empty.db"
    empty.touch()
    for path, why in ((foreign, "its tables: measurements"), (optuna_only, "its tables: "),
                      (empty, "it is empty")):
        before = _file_state(path)
        with pytest.raises(StorageError) as caught:
            Storage(f"sqlite:///{path}", read_only=True)
        assert str(caught.value).startswith(f"sqlite:///{path} is not a numsweep database "
                                            f"(no ns_sweeps table; {why}")
        assert _file_state(path) == before
        with sqlite3.connect(path) as conn:  # not switched to WAL
            assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
        with pytest.raises(StorageError, match="is not a numsweep database"):  # resume, worker
            Storage(f"sqlite:///{path}", create=False)
        assert path.read_bytes() == before[0]


def test_a_reader_of_an_older_database_reads_it_without_writing_to_it(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}"
    storage = Storage(url)
    storage.get_or_create_sweep("old", {"name": "old"}, 3)
    storage.dispose()
    as_before_versions(url)
    with sqlite3.connect(tmp_path / "old.db") as conn:
        conn.execute("ALTER TABLE ns_sweeps DROP COLUMN data_fingerprint")
    before = _file_state(tmp_path / "old.db")
    reader = Storage(url, read_only=True)
    assert [(s.name, s.seed, s.data_fingerprint) for s in reader.list_sweeps()] == [
        ("old", 3, None)]
    reader.dispose()
    assert _file_state(tmp_path / "old.db") == before


def test_a_read_only_database_file_or_folder_reads(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "ro"
    folder.mkdir()
    url = f"sqlite:///{folder / 'r.db'}"
    writer = Storage(url)
    writer.get_or_create_sweep("kept", {"name": "kept"}, 1)
    writer.dispose()
    (folder / "r.db").chmod(0o444)
    folder.chmod(0o555)
    try:
        # as root every file is writable, so pretend it is not, as for another user
        real_access = os.access
        monkeypatch.setattr(os, "access", lambda p, mode: False if mode == os.W_OK and str(
            p).startswith(str(folder)) else real_access(p, mode))
        with pytest.raises(StorageError, match="is read-only"):
            Storage(url)
        reader = Storage(url, read_only=True)
        assert [s.name for s in reader.list_sweeps()] == ["kept"]
        with pytest.raises(StorageError, match="readonly database"):  # SQLite's read-only mode
            reader.get_or_create_sweep("new", {"name": "new"}, 0)
    finally:
        folder.chmod(0o755)


@pytest.mark.parametrize("how", ["deleted", "replaced"])
def test_a_database_file_deleted_or_replaced_while_open_stops_every_call(
        tmp_path: Path, how: str) -> None:
    path = tmp_path / "d.db"
    storage = Storage(f"sqlite:///{path}")
    sweep = storage.get_or_create_sweep("s", {"name": "s"}, 0)
    storage.start_trial(sweep.id, None, 0, {"lam": 0.1}, 0)
    for name in ("d.db", "d.db-wal", "d.db-shm"):
        (tmp_path / name).unlink(missing_ok=True)
    if how == "replaced":
        Storage(f"sqlite:///{path}").dispose()  # a new, empty database under the same name
    with pytest.raises(StorageGone, match=f"database sqlite:///{path} was "
                                          f"{'deleted' if how == 'deleted' else 'replaced'}"):
        storage.start_trial(sweep.id, None, 1, {"lam": 0.2}, 0)  # would be written nowhere
    with pytest.raises(StorageGone):
        storage.list_sweeps()


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

    finish = runner_module.finish

    def finish_then_fill(*args, **kwargs):  # type: ignore[no-untyped-def]
        full.append(True)
        return finish(*args, **kwargs)

    monkeypatch.setattr(runner_module, "finish", finish_then_fill)
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

    execute = single.execute

    def fill_then_train(*args, **kwargs):  # type: ignore[no-untyped-def]
        full.append(True)  # the disk fills once the trial is stored: its points find no room
        return execute(*args, **kwargs)

    monkeypatch.setattr(single, "execute", fill_then_train)
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
