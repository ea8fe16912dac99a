"""Schema versions: a new database is made at the head revision, the migrations make the
same tables, a database of numsweep before schema versions (the committed fixture) is
upgraded keeping every row and reads back as it did, a newer one is refused, a reader never
writes the schema."""

from __future__ import annotations

import json
import multiprocessing
import os
import shutil
import sqlite3
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import MetaData, create_engine, inspect, text
from sqlalchemy.engine import make_url

from numsweep.storage import StagePlan, Storage, StorageError
from numsweep.storage.models import Base
from numsweep.storage.schema import HEAD, MIGRATIONS, REVISIONS, VERSION_TABLE, migrate_to
from tests.storage.fixtures.read_unversioned import reads

FIXTURES = Path(__file__).parent / "fixtures"
RUN_KEYS = {"data": "data", "threads": "threads", "checkpoint_dir": "checkpoint_dir",
            "keep_weights": "keep_weights"}
POSTGRES = os.environ.get("NUMSWEEP_TEST_POSTGRES_URL", "")


def _ours(_object: Any, name: str | None, type_: str, _reflected: bool, _compare: Any) -> bool:
    return type_ != "table" or (name or "").startswith("ns_")


def _differences(url: str) -> list[Any]:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"include_object": _ours,
                                                             "version_table": VERSION_TABLE,
                                                             "compare_type": True})
            return compare_metadata(context, Base.metadata)
    finally:
        engine.dispose()


def test_the_revisions_listed_are_the_migrations_in_order() -> None:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    script = ScriptDirectory.from_config(config)
    assert script.get_current_head() == HEAD
    walked = [s.revision for s in script.walk_revisions()]  # newest first
    assert tuple(reversed(walked)) == REVISIONS


def test_the_migrations_make_the_tables_a_new_database_gets(tmp_path: Path) -> None:
    migrated = f"sqlite:///{tmp_path / 'migrated.db'}"
    engine = create_engine(migrated)
    with engine.begin() as conn:
        migrate_to(conn, HEAD)
    engine.dispose()
    Storage(f"sqlite:///{tmp_path / 'new.db'}").dispose()
    assert _differences(migrated) == []
    assert _differences(f"sqlite:///{tmp_path / 'new.db'}") == []
    for name in ("migrated.db", "new.db"):
        with sqlite3.connect(tmp_path / name) as conn:
            assert conn.execute(f"SELECT version_num FROM {VERSION_TABLE}").fetchall() == [
                (HEAD,)]


def _rows(path: Path) -> dict[str, list[dict[str, Any]]]:
    """Every row of every table, by table, ordered by every column."""
    conn = sqlite3.connect(path)
    conn.row_factory = sqlite3.Row
    try:
        tables = [t for (t,) in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")]
        return {t: sorted((dict(r) for r in conn.execute(f'SELECT * FROM "{t}"')),
                          key=lambda r: json.dumps(r, sort_keys=True, default=str))
                for t in tables}
    finally:
        conn.close()


def _as_before(read: dict[str, Any]) -> dict[str, Any]:
    """What the new schema reads in the form numsweep read before it: run settings inside
    the spec, stage plans as stored (the oldest form as the full form reads it)."""
    sweeps = []
    for sweep in read["sweeps"]:
        run = sweep.pop("run")
        sweeps.append({**sweep, "spec": {**sweep["spec"], **(run or {})}})
    return {**read, "sweeps": sweeps}


def _fixture_copy(tmp_path: Path) -> Path:
    path = tmp_path / "old.db"
    shutil.copyfile(FIXTURES / "unversioned.db", path)
    return path


def test_a_database_from_before_versions_is_upgraded_keeping_every_row(tmp_path: Path) -> None:
    path = _fixture_copy(tmp_path)
    before = _rows(path)
    assert VERSION_TABLE not in before and before["ns_trials"]  # the fixture as committed
    storage = Storage(f"sqlite:///{path}")
    read = reads(storage)
    storage.dispose()
    after = _rows(path)

    assert after.pop(VERSION_TABLE) == [{"version_num": HEAD}]
    assert after.pop("ns_slot_groups") == [] and after.pop("ns_lineage") == []
    runs = {r["sweep_id"]: r for r in after.pop("ns_sweep_runs")}
    for old, new in zip(before.pop("ns_sweeps"), after.pop("ns_sweeps"), strict=True):
        spec = json.loads(new.pop("spec_json"))
        run = runs.pop(new["id"], None)
        if run is not None:
            spec.update(data=run["data_source"], threads=run["threads"],
                        checkpoint_dir=run["checkpoint_dir"], keep_weights=run["keep_weights"])
        assert spec == json.loads(old.pop("spec_json")) and new == old
    assert runs == {}
    for old, new in zip(before.pop("ns_stages"), after.pop("ns_stages"), strict=True):
        plan = json.loads(new.pop("plan_json"))
        was = json.loads(old.pop("space_json"))
        ranges = {k: v for k, v in was.items() if isinstance(v, dict)}
        assert plan == was or ("space" not in was and plan == {
            "space": ranges, "fixed": {}, "reused": [], "configs": [], "study_ready": True,
            **{k: v for k, v in was.items() if k not in ranges}})
        assert new == old
    assert after == before  # every other table, Optuna's too, row for row

    expected = json.loads((FIXTURES / "unversioned_reads.json").read_text())
    legacy = {st["id"] for st in expected["stages"] if "space" not in st["space"]}
    assert legacy  # the fixture has a stage plan of the oldest form
    got = _as_before(read)
    for stage in got["stages"]:
        if stage["id"] in legacy:  # now in the full form: the same plan
            old = next(st for st in expected["stages"] if st["id"] == stage["id"])
            assert StagePlan.from_dict(stage["space"]).space == StagePlan.from_dict(
                old["space"]).space
            stage["space"] = old["space"]
    assert got == expected


def test_a_reader_reads_a_database_from_before_versions_as_it_was_and_writes_nothing(
        tmp_path: Path) -> None:
    path = _fixture_copy(tmp_path)
    before = path.read_bytes()
    storage = Storage(f"sqlite:///{path}", read_only=True)
    read = _as_before(reads(storage))
    storage.dispose()
    assert path.read_bytes() == before
    assert {p.name for p in tmp_path.iterdir()} <= {"old.db", "old.db-wal", "old.db-shm"}
    expected = json.loads((FIXTURES / "unversioned_reads.json").read_text())
    assert read["trials"] == expected["trials"] and read["sweeps"] == expected["sweeps"]


def test_an_upgraded_database_goes_on_working_for_writers(tmp_path: Path) -> None:
    storage = Storage(f"sqlite:///{_fixture_copy(tmp_path)}")
    sweep = storage.get_sweep("lam")
    assert sweep.run is not None and sweep.run.threads == 1 and "data" not in sweep.spec
    trial = storage.start_trial(sweep.id, None, None, {"lam": 0.5}, seed=1)
    assert storage.get_trials(trial_ids=[trial])[0].number == 11  # after its 11 kept
    storage.merge_stage_space(storage.list_stages(sweep.id)[2].id, {"study_ready": False})
    assert not storage.list_stages(sweep.id)[2].plan.study_ready
    assert storage.delete_sweep(sweep.id) == 12
    assert [s.name for s in storage.list_sweeps()] == ["train"]


def _schema(path: Path) -> dict[str, str]:
    """Every table's and index's SQL, by name."""
    with sqlite3.connect(path) as conn:
        return dict(conn.execute("SELECT name, sql FROM sqlite_master WHERE sql IS NOT NULL"))


def _at_revision(path: Path, revision: str) -> None:
    """The SQLite database at ``path`` migrated to ``revision``."""
    engine = create_engine(f"sqlite:///{path}")
    with engine.begin() as conn:
        migrate_to(conn, revision)
    engine.dispose()


def test_a_database_of_0003_gets_the_slot_groups_table_and_nothing_else_changes(
        tmp_path: Path) -> None:
    path = _fixture_copy(tmp_path)
    _at_revision(path, "0003")
    rows, schema = _rows(path), _schema(path)
    assert "ns_slot_groups" not in rows and rows["ns_trials"]
    reader = Storage(f"sqlite:///{path}", read_only=True)  # reads it as of today, writes nothing
    assert reader.slot_groups(sweep="lam") == []
    reader.dispose()
    assert (_rows(path), _schema(path)) == (rows, schema)

    storage = Storage(f"sqlite:///{path}")
    stage = storage.list_stages(storage.get_sweep("lam").id)[0]
    after, after_schema = _rows(path), _schema(path)
    assert after.pop(VERSION_TABLE) == [{"version_num": HEAD}]
    assert after.pop("ns_slot_groups") == [] and "ns_slot_groups" in after_schema
    after.pop("ns_lineage")
    rows.pop(VERSION_TABLE)
    assert after == rows
    assert {k: v for k, v in after_schema.items()
            if "ns_slot_groups" not in k and "ns_lineage" not in k} == schema
    storage.record_slot_group(stage.id, 1, "host:1", 2, 10, 18, 3, 8, 16)
    assert [g.occupancy for g in storage.slot_groups(sweep="lam")] == [0.9]
    storage.dispose()
    _at_revision(path, "0003")  # and the downgrade takes the table away again
    assert _schema(path) == schema


def test_a_database_of_0004_gets_the_lineage_table_and_nothing_else_changes(
        tmp_path: Path) -> None:
    path = _fixture_copy(tmp_path)
    _at_revision(path, "0004")
    rows, schema = _rows(path), _schema(path)
    assert "ns_lineage" not in rows and rows["ns_trials"]
    reader = Storage(f"sqlite:///{path}", read_only=True)  # reads it as of today, writes nothing
    assert reader.lineage(sweep="lam") == []
    reader.dispose()
    assert (_rows(path), _schema(path)) == (rows, schema)

    storage = Storage(f"sqlite:///{path}")
    stage = storage.list_stages(storage.get_sweep("lam").id)[0]
    after, after_schema = _rows(path), _schema(path)
    assert after.pop(VERSION_TABLE) == [{"version_num": HEAD}]
    assert after.pop("ns_lineage") == [] and "ns_lineage" in after_schema
    rows.pop(VERSION_TABLE)
    assert after == rows
    assert {k: v for k, v in after_schema.items() if "ns_lineage" not in k} == schema
    a, b = (t.id for t in storage.get_trials("lam")[:2])
    storage.record_lineage(stage.id, [(a, 10, b, 0.1, 0.2, {"lam": 0.1}, {"lam": 0.12})])
    assert [(r.trial_id, r.source_trial_id) for r in storage.lineage(sweep="lam")] == [(a, b)]
    storage.dispose()
    _at_revision(path, "0004")  # and the downgrade takes the table away again
    assert _schema(path) == schema


def _open_and_count(url: str, errors: multiprocessing.Queue) -> None:
    try:
        storage = Storage(url)
        errors.put(len(storage.get_trials()))
        storage.dispose()
    except Exception as exc:  # reported to the test
        errors.put(f"{type(exc).__name__}: {exc}")


@pytest.mark.parametrize("fresh", [False, True], ids=["from-before-versions", "new"])
def test_processes_opening_one_database_at_once_make_or_upgrade_it_once(
        tmp_path: Path, fresh: bool) -> None:
    path = tmp_path / "new.db" if fresh else _fixture_copy(tmp_path)
    ctx = multiprocessing.get_context("fork")
    results: multiprocessing.Queue = ctx.Queue()
    procs = [ctx.Process(target=_open_and_count, args=(f"sqlite:///{path}", results))
             for _ in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    assert sorted(results.get(timeout=5) for _ in procs) == [0 if fresh else 13] * 4
    rows = _rows(path)
    assert rows[VERSION_TABLE] == [{"version_num": HEAD}]
    assert len(rows["ns_sweep_runs"]) == (0 if fresh else 1)


def test_a_database_of_a_newer_numsweep_is_a_one_line_error(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'new.db'}"
    Storage(url).dispose()
    with sqlite3.connect(tmp_path / "new.db") as conn:
        conn.execute(f"UPDATE {VERSION_TABLE} SET version_num = '9999'")
    for read_only in (False, True):
        with pytest.raises(StorageError) as caught:
            Storage(url, read_only=read_only)
        assert str(caught.value) == (f"{url} has schema revision 9999, newer than this "
                                     f"numsweep knows (up to {HEAD}): upgrade numsweep to "
                                     f"open it")


def test_the_downgrades_give_back_the_schema_and_rows_from_before_versions(
        tmp_path: Path) -> None:
    path = _fixture_copy(tmp_path)
    before = _rows(path)
    Storage(f"sqlite:///{path}").dispose()
    engine = create_engine(f"sqlite:///{path}")
    with engine.begin() as conn:
        migrate_to(conn, "0002")
        conn.execute(text(f"DROP TABLE {VERSION_TABLE}"))
    engine.dispose()
    after = _rows(path)
    legacy = [r for r in before["ns_stages"] if "space" not in json.loads(r["space_json"])]
    for rows in (before, after):  # the oldest plan form comes back as the full form
        rows["ns_stages"] = [r for r in rows["ns_stages"] if r["id"] not in
                             {x["id"] for x in legacy}]
    assert after == before


# The same upgrade on a PostgreSQL server, in a schema of its own

@pytest.fixture
def postgres_schema() -> Iterator[str]:
    """A URL of a fresh schema on the test server (dropped afterwards)."""
    if not POSTGRES:
        pytest.skip("NUMSWEEP_TEST_POSTGRES_URL is not set")
    name = f"ns_upgrade_{uuid.uuid4().hex[:8]}"
    admin = create_engine(Storage(POSTGRES).engine_url)
    with admin.begin() as conn:
        conn.execute(text(f"CREATE SCHEMA {name}"))
    url = make_url(Storage(POSTGRES).engine_url).update_query_dict(
        {"options": f"-csearch_path={name}"}).render_as_string(hide_password=False)
    try:
        yield url
    finally:
        with admin.begin() as conn:
            conn.execute(text(f"DROP SCHEMA {name} CASCADE"))
        admin.dispose()


def test_a_postgresql_database_from_before_versions_is_upgraded(postgres_schema: str,
                                                                tmp_path: Path) -> None:
    """The fixture's numsweep tables copied into a server database of the schema from before
    versions; upgraded, it reads back as the fixture did."""
    _copy_fixture_to(postgres_schema)
    reader_refuses = pytest.raises(StorageError, match=r"made by an older numsweep \(schema "
                                                       r"revision 0001, .*`numsweep sweep resume`")
    with reader_refuses:
        Storage(postgres_schema, read_only=True)
    storage = Storage(postgres_schema)
    got = _as_before(reads(storage))
    storage.dispose()
    assert {"ns_sweep_runs", "ns_slot_groups"} <= set(
        inspect(create_engine(postgres_schema)).get_table_names())
    expected = json.loads((FIXTURES / "unversioned_reads.json").read_text())
    assert got["trials"] == expected["trials"] and got["sweeps"] == expected["sweeps"]
    assert got["curves"] == expected["curves"] and got["slots"] == expected["slots"]


def _copy_fixture_to(url: str) -> None:
    """The fixture's numsweep tables, row for row, in the server database at ``url``, with
    the schema from before versions."""
    engine = create_engine(url)
    with engine.begin() as conn:
        migrate_to(conn, "0002")
        conn.execute(text(f"DROP TABLE {VERSION_TABLE}"))
    source = create_engine(f"sqlite:///{FIXTURES / 'unversioned.db'}")
    tables = MetaData()
    tables.reflect(engine)
    with source.connect() as read, engine.begin() as write:
        for table in tables.sorted_tables:
            rows = [dict(r._mapping) for r in read.execute(table.select())]
            if rows:
                write.execute(table.insert(), rows)
    source.dispose()
    engine.dispose()


@pytest.mark.parametrize("fresh", [False, True], ids=["from-before-versions", "new"])
def test_processes_opening_one_postgresql_database_at_once_make_or_upgrade_it_once(
        postgres_schema: str, fresh: bool) -> None:
    if not fresh:
        _copy_fixture_to(postgres_schema)
    ctx = multiprocessing.get_context("fork")
    results: multiprocessing.Queue = ctx.Queue()
    procs = [ctx.Process(target=_open_and_count, args=(postgres_schema, results))
             for _ in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    assert [results.get(timeout=5) for _ in procs] == [0 if fresh else 13] * 4
    engine = create_engine(postgres_schema)
    with engine.connect() as conn:
        assert conn.execute(text(f"SELECT version_num FROM {VERSION_TABLE}")).all() == [(HEAD,)]
        assert conn.execute(text("SELECT count(*) FROM ns_sweep_runs")).scalar() == (
            0 if fresh else 1)
    engine.dispose()


def _server_rows(url: str) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every numsweep table on the server, by table, in id order."""
    engine = create_engine(url)
    tables = MetaData()
    tables.reflect(engine)
    try:
        with engine.connect() as conn:
            return {t.name: sorted((tuple(r) for r in conn.execute(t.select())), key=repr)
                    for t in tables.sorted_tables if t.name.startswith("ns_")}
    finally:
        engine.dispose()


def test_a_postgresql_database_of_0003_gets_the_slot_groups_table(postgres_schema: str) -> None:
    _copy_fixture_to(postgres_schema)
    engine = create_engine(postgres_schema)
    with engine.begin() as conn:
        migrate_to(conn, "0003")
    engine.dispose()
    before = _server_rows(postgres_schema)
    assert "ns_slot_groups" not in before and before["ns_trials"]
    storage = Storage(postgres_schema)
    after = _server_rows(postgres_schema)
    assert after.pop(VERSION_TABLE) == [(HEAD,)] and before.pop(VERSION_TABLE) == [("0003",)]
    assert after.pop("ns_slot_groups") == [] and after.pop("ns_lineage") == []
    assert after == before
    sweep = storage.get_sweep("lam")
    stage = storage.list_stages(sweep.id)[0]
    big = 3 * 2**31  # group updates of a long stage: above a 32-bit integer
    storage.record_slot_group(stage.id, 1, "host:1", 2, big, 2 * big - 10, 3, big, 2 * big)
    storage.record_slot_group(stage.id, 1, "host:2", 2, big, 2 * big, 3, big, 2 * big)
    [group] = storage.slot_groups(sweep="lam")
    assert (group.worker, group.slot_updates, group.occupancy) == ("host:2", 2 * big, 1.0)
    storage.delete_sweep(sweep.id)
    assert storage.slot_groups(stage.id) == []
    storage.dispose()


def test_a_postgresql_database_of_0004_gets_the_lineage_table(postgres_schema: str) -> None:
    _copy_fixture_to(postgres_schema)
    engine = create_engine(postgres_schema)
    with engine.begin() as conn:
        migrate_to(conn, "0004")
    engine.dispose()
    before = _server_rows(postgres_schema)
    assert "ns_lineage" not in before and before["ns_trials"]
    storage = Storage(postgres_schema)
    after = _server_rows(postgres_schema)
    assert after.pop(VERSION_TABLE) == [(HEAD,)] and before.pop(VERSION_TABLE) == [("0004",)]
    assert after.pop("ns_lineage") == [] and after == before
    sweep = storage.get_sweep("lam")
    stage = storage.list_stages(sweep.id)[0]
    a, b = (t.id for t in storage.get_trials("lam")[:2])
    big = 3 * 2**31  # the update of a long population: above a 32-bit integer
    storage.record_lineage(stage.id, [(a, big, b, float("nan"), 0.5, {"lam": 0.1},
                                       {"lam": 0.12})])
    [step] = storage.lineage(sweep="lam")
    assert (step.trial_id, step.update, step.source_trial_id, step.metric_source) == (
        a, big, b, 0.5)
    storage.delete_sweep(sweep.id)
    assert storage.lineage(stage.id) == []
    storage.dispose()
