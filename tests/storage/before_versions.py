"""Databases as numsweep wrote them before its schema had versions."""

from __future__ import annotations

from sqlalchemy import create_engine, text

from numsweep.storage.schema import VERSION_TABLE, migrate_to


def as_before_versions(url: str, revision: str = "0002") -> None:
    """Take the database at ``url`` back to the schema of ``revision`` (its rows moved back
    by the migrations' downgrades) and remove its version table: a database as the last
    numsweep without schema versions left it (``0002``: with every column it added)."""
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            migrate_to(conn, revision)
            conn.execute(text(f"DROP TABLE {VERSION_TABLE}"))
    finally:
        engine.dispose()
