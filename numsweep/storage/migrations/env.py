"""Alembic's environment: numsweep passes the open connection in ``config.attributes``; the
``alembic`` command (for developers) opens ``-x db=URL``. Only numsweep's ``ns_`` tables
are compared and versioned (in ``ns_alembic_version``): Optuna keeps its own tables, and
its own ``alembic_version``, in the same database."""

from __future__ import annotations

from typing import Any

from alembic import context
from sqlalchemy import create_engine

from numsweep.storage.models import Base
from numsweep.storage.schema import VERSION_TABLE


def _ours(_object: Any, name: str | None, type_: str, _reflected: bool, _compare: Any) -> bool:
    return type_ != "table" or (name or "").startswith("ns_")


def _run(connection: Any) -> None:
    context.configure(connection=connection, target_metadata=Base.metadata,
                      version_table=VERSION_TABLE, include_object=_ours,
                      render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


connection = context.config.attributes.get("connection")
if connection is not None:
    _run(connection)
else:
    url = context.get_x_argument(as_dictionary=True).get("db")
    if not url:
        raise SystemExit("give the database: alembic -c ... -x db=sqlite:///dev.db ...")
    engine = create_engine(url)
    with engine.begin() as conn:
        _run(conn)
