"""The schema's version: a new database is made at the newest revision, an older one is
upgraded (Alembic migrations in ``migrations/versions``), a newer one is refused.

A database of a numsweep from before schema versions has numsweep's tables but no
``ns_alembic_version`` table: it is stamped as revision 0001 (the schema numsweep had
then) and upgraded from there. Optuna's own ``alembic_version`` table is another one.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import (
    Column,
    Connection,
    Engine,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    create_engine,
    inspect,
    text,
)
from sqlalchemy.pool import StaticPool

from numsweep.storage.errors import StorageError

if TYPE_CHECKING:
    from alembic.config import Config

VERSION_TABLE = "ns_alembic_version"
REVISIONS = ("0001", "0002", "0003", "0004", "0005")
"""The revisions of ``migrations/versions``, oldest first (a test checks them)."""
HEAD = REVISIONS[-1]
"""The newest revision: the one this numsweep reads and writes."""
BEFORE_VERSIONS = "0001"
"""The revision of a numsweep database without a version table."""
MIGRATIONS = Path(__file__).resolve().parent / "migrations"
UPGRADE_COMMAND = "`numsweep sweep resume`"


def revision_of(conn: Connection) -> str | None:
    """The database's schema revision: None for an empty database (or one without numsweep's
    tables), :data:`BEFORE_VERSIONS` for a numsweep database without a version table."""
    tables = set(inspect(conn).get_table_names())
    if VERSION_TABLE in tables:
        found = conn.execute(text(f"SELECT version_num FROM {VERSION_TABLE}")).scalar()
        if found is not None:
            return str(found)
    return BEFORE_VERSIONS if "ns_sweeps" in tables else None


def check_not_newer(revision: str | None, shown: str) -> None:
    """A one-line error when the database was made by a newer numsweep."""
    if revision is not None and revision not in REVISIONS:
        raise StorageError(f"{shown} has schema revision {revision}, newer than this numsweep "
                           f"knows (up to {HEAD}): upgrade numsweep to open it")


def upgrade(engine: Engine, shown: str) -> None:
    """Bring the database to :data:`HEAD`: create it, or run the migrations it lacks, all in
    one transaction that holds the database's write lock, so that processes opening one
    database at once upgrade it once."""
    with engine.connect() as conn:  # the usual case first: nothing to do, no lock taken
        revision = revision_of(conn)
        check_not_newer(revision, shown)
        if revision == HEAD:
            return
    with engine.begin() as conn:
        if conn.dialect.name == "sqlite":
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        elif conn.dialect.name == "postgresql":  # one migrating process at a time
            conn.execute(text("SELECT pg_advisory_xact_lock(7201342)"))
        revision = revision_of(conn)  # again, under the lock
        check_not_newer(revision, shown)
        if revision is None:
            _create(conn)
        elif revision != HEAD:
            _migrate(conn, stamp_first=VERSION_TABLE not in inspect(conn).get_table_names())


def _create(conn: Connection) -> None:
    """A new database: the tables of :mod:`.models` (the same as every migration run from
    nothing makes: a test compares them), stamped :data:`HEAD` (as Alembic stamps it)."""
    from numsweep.storage.models import Base

    Base.metadata.create_all(conn)
    versions = Table(VERSION_TABLE, MetaData(),
                     Column("version_num", String(32), nullable=False),
                     PrimaryKeyConstraint("version_num", name=f"{VERSION_TABLE}_pkc"))
    versions.create(conn)
    conn.execute(versions.insert().values(version_num=HEAD))


def _migrate(conn: Connection, *, stamp_first: bool) -> None:
    from alembic import command

    config = _config(conn)
    if stamp_first:
        command.stamp(config, BEFORE_VERSIONS)
    command.upgrade(config, HEAD)


def migrate_to(conn: Connection, revision: str) -> None:
    """Upgrade or downgrade the database of ``conn`` to ``revision`` (tests and developers;
    numsweep itself only upgrades)."""
    from alembic import command
    from alembic.script import ScriptDirectory

    config = _config(conn)
    current = revision_of(conn)
    if current is not None and VERSION_TABLE not in inspect(conn).get_table_names():
        command.stamp(config, current)
    order = list(REVISIONS)
    assert revision in order and ScriptDirectory.from_config(config).get_current_head() == HEAD
    if current is None or order.index(revision) > order.index(current):
        command.upgrade(config, revision)
    elif order.index(revision) < order.index(current):
        command.downgrade(config, revision)


def _config(conn: Connection) -> Config:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = conn
    return config


def upgraded_copy(file: Path, shown: str) -> Engine:
    """An engine on an in-memory copy of the SQLite ``file`` (opened read-only), upgraded to
    :data:`HEAD`: how a reader reads a database of an older schema without writing to it."""
    from urllib.parse import quote

    memory = sqlite3.connect(":memory:", check_same_thread=False)
    source = sqlite3.connect(f"file:{quote(str(file.resolve()))}?mode=ro", uri=True)
    try:
        source.backup(memory)
    finally:
        source.close()
    engine = create_engine("sqlite://", creator=lambda: memory, poolclass=StaticPool)
    upgrade(engine, shown)
    return engine


def needs_upgrade_message(shown: str, revision: str) -> str:
    """Why a reader cannot read a server database of an older schema, and what upgrades it."""
    return (f"{shown} was made by an older numsweep (schema revision {revision}, this "
            f"numsweep reads {HEAD}): a command that writes to it, such as "
            f"{UPGRADE_COMMAND}, brings it up to date")
