"""A stage's slot groups (engine ``train_slots``) get a table, ``ns_slot_groups``: one row per
group that ended, with its size and how full its slots were (for ``sweep show``).

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "ns_slot_groups",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("stage_id", sa.Integer, sa.ForeignKey("ns_stages.id"), nullable=False),
        sa.Column("group_id", sa.Integer, nullable=False),
        sa.Column("worker", sa.String(200), nullable=False),
        sa.Column("size", sa.Integer, nullable=False),
        sa.Column("steps", sa.BigInteger, nullable=False),
        sa.Column("slot_updates", sa.BigInteger, nullable=False),
        sa.Column("trials", sa.Integer, nullable=False),
        sa.Column("full_steps", sa.BigInteger, nullable=False),
        sa.Column("full_slot_updates", sa.BigInteger, nullable=False),
        sa.Column("started_at", sa.DateTime, nullable=False),
        sa.Column("finished_at", sa.DateTime, nullable=False),
        sa.UniqueConstraint("stage_id", "group_id"))


def downgrade() -> None:
    op.drop_table("ns_slot_groups")
