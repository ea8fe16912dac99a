"""A pbt stage's exploit steps get a table, ``ns_lineage``: one row per member replaced at an
exploit step (which member, at which update, copied from which, both metrics, and its
explored values before and after).

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "ns_lineage",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("stage_id", sa.Integer, sa.ForeignKey("ns_stages.id"), nullable=False),
        sa.Column("trial_id", sa.Integer, sa.ForeignKey("ns_trials.id"), nullable=False),
        sa.Column("update", sa.BigInteger, nullable=False),
        sa.Column("source_trial_id", sa.Integer, sa.ForeignKey("ns_trials.id"),
                  nullable=False),
        sa.Column("metric_member", sa.Float, nullable=True),
        sa.Column("metric_source", sa.Float, nullable=True),
        sa.Column("before_json", sa.Text, nullable=False),
        sa.Column("after_json", sa.Text, nullable=False))
    op.create_index("ix_ns_lineage_stage_id", "ns_lineage", ["stage_id"])


def downgrade() -> None:
    op.drop_index("ix_ns_lineage_stage_id", table_name="ns_lineage")
    op.drop_table("ns_lineage")
