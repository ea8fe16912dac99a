"""A sweep's run settings (data path, BLAS threads, checkpoint folder, keep policy) get
their own table, ``ns_sweep_runs``, instead of riding in ``ns_sweeps.spec_json``; a
stage's plan its own column, ``ns_stages.plan_json`` (was ``space_json``), always in the
full form (the oldest databases stored the searched ranges alone).

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02
"""

from __future__ import annotations

import json
from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

# spec key -> ns_sweep_runs column; the values of this revision, frozen here
RUN_KEYS = {"data": "data_source", "threads": "threads", "checkpoint_dir": "checkpoint_dir",
            "keep_weights": "keep_weights"}

sweeps = sa.table("ns_sweeps", sa.column("id", sa.Integer), sa.column("spec_json", sa.Text))
stages = sa.table("ns_stages", sa.column("id", sa.Integer), sa.column("plan_json", sa.Text))


def upgrade() -> None:
    runs = op.create_table(
        "ns_sweep_runs",
        sa.Column("sweep_id", sa.Integer, sa.ForeignKey("ns_sweeps.id"), primary_key=True),
        sa.Column("data_source", sa.Text, nullable=True),
        sa.Column("threads", sa.Integer, nullable=True),
        sa.Column("checkpoint_dir", sa.Text, nullable=True),
        sa.Column("keep_weights", sa.String(20), nullable=True))
    bind = op.get_bind()
    for sweep_id, spec_json in bind.execute(sa.select(sweeps.c.id, sweeps.c.spec_json)).all():
        spec = json.loads(spec_json)
        if not any(key in spec for key in RUN_KEYS):
            continue  # single trials' sweeps record none
        row = {column: spec.pop(key, None) for key, column in RUN_KEYS.items()}
        if row["threads"] is not None:
            row["threads"] = int(row["threads"])
        bind.execute(runs.insert().values(sweep_id=sweep_id, **row))
        bind.execute(sweeps.update().where(sweeps.c.id == sweep_id)
                     .values(spec_json=json.dumps(spec)))
    op.execute("ALTER TABLE ns_stages RENAME COLUMN space_json TO plan_json")
    for stage_id, plan_json in bind.execute(sa.select(stages.c.id, stages.c.plan_json)).all():
        plan = json.loads(plan_json)
        if not isinstance(plan.get("space"), dict):
            bind.execute(stages.update().where(stages.c.id == stage_id)
                         .values(plan_json=json.dumps(_full_plan(plan))))


def _full_plan(ranges: dict[str, Any]) -> dict[str, Any]:
    """The oldest stored form (the searched ranges, and keys merged into it later) in the
    full form: ranges under ``space``, other keys kept."""
    plan: dict[str, Any] = {"space": {k: v for k, v in ranges.items() if isinstance(v, dict)},
                            "fixed": {}, "reused": [], "configs": [], "study_ready": True}
    plan.update({k: v for k, v in ranges.items() if not isinstance(v, dict)})
    return plan


def downgrade() -> None:
    bind = op.get_bind()
    runs = sa.table("ns_sweep_runs", *(sa.column(c) for c in ("sweep_id", *RUN_KEYS.values())))
    for sweep_id, *values in bind.execute(sa.select(runs)).all():
        spec_json = bind.execute(sa.select(sweeps.c.spec_json)
                                 .where(sweeps.c.id == sweep_id)).scalar_one()
        spec = {**json.loads(spec_json), **dict(zip(RUN_KEYS, values, strict=True))}
        bind.execute(sweeps.update().where(sweeps.c.id == sweep_id)
                     .values(spec_json=json.dumps(spec)))
    op.drop_table("ns_sweep_runs")
    op.execute("ALTER TABLE ns_stages RENAME COLUMN plan_json TO space_json")
