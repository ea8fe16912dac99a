"""The schema of the last numsweep without schema versions.

Every database numsweep made before its schema had versions (no ``ns_alembic_version``
table) is stamped with this revision when opened, and then upgraded: 0002 adds what the
oldest of them lack. A new database gets these tables here.

Revision ID: 0001
Revises:
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "ns_sweeps",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(200), nullable=False, unique=True),
        sa.Column("spec_json", sa.Text, nullable=False),
        sa.Column("seed", sa.Integer, nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.Column("data_fingerprint", sa.String(100), nullable=True))
    op.create_table(
        "ns_stages",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("sweep_id", sa.Integer, sa.ForeignKey("ns_sweeps.id"), nullable=False),
        sa.Column("index", sa.Integer, nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("sampler", sa.String(50), nullable=False),
        sa.Column("space_json", sa.Text, nullable=False),
        sa.Column("note", sa.Text, nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.UniqueConstraint("sweep_id", "index"))
    op.create_table(
        "ns_trials",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("sweep_id", sa.Integer, sa.ForeignKey("ns_sweeps.id"), nullable=False),
        sa.Column("stage_id", sa.Integer, sa.ForeignKey("ns_stages.id"), nullable=True),
        sa.Column("number", sa.Integer, nullable=False),
        sa.Column("state", sa.String(12), nullable=False),
        sa.Column("seed", sa.BigInteger, nullable=False),
        sa.Column("worker", sa.String(200), nullable=False),
        sa.Column("started_at", sa.DateTime, nullable=True),
        sa.Column("finished_at", sa.DateTime, nullable=True),
        sa.Column("heartbeat_at", sa.DateTime, nullable=True),
        sa.Column("message", sa.Text, nullable=False),
        sa.Column("traceback", sa.Text, nullable=False),
        sa.Column("slot", sa.Integer, nullable=True),
        sa.Column("attempt", sa.Integer, nullable=False, server_default="0"),
        sa.Column("study_trial", sa.Integer, nullable=True),
        sa.Column("setup_json", sa.Text, nullable=True),
        sa.Column("group_id", sa.Integer, nullable=True),
        sa.Column("group_size", sa.Integer, nullable=True),
        sa.UniqueConstraint("sweep_id", "number"))
    op.create_index("ix_ns_trials_state", "ns_trials", ["sweep_id", "state"])
    op.create_index("uq_ns_trials_slot_attempt", "ns_trials", ["stage_id", "slot", "attempt"],
                    unique=True)
    op.create_table(
        "ns_trial_params",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("trial_id", sa.Integer, sa.ForeignKey("ns_trials.id"), nullable=False,
                  index=True),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("value_json", sa.Text, nullable=False),
        sa.Column("value_num", sa.Float, nullable=True),
        sa.UniqueConstraint("trial_id", "name"))
    op.create_table(
        "ns_trial_metrics",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("trial_id", sa.Integer, sa.ForeignKey("ns_trials.id"), nullable=False,
                  index=True),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("value", sa.Float, nullable=True),
        sa.Column("kind", sa.String(8), nullable=False),
        sa.UniqueConstraint("trial_id", "name"))
    op.create_table(
        "ns_curve_points",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("trial_id", sa.Integer, sa.ForeignKey("ns_trials.id"), nullable=False,
                  index=True),
        sa.Column("step", sa.Integer, nullable=False),
        sa.Column("split", sa.String(20), nullable=False),
        sa.Column("loss", sa.Float, nullable=True),
        sa.Column("cost", sa.Float, nullable=True),
        sa.Column("acc", sa.Float, nullable=True),
        sa.Column("lr", sa.Float, nullable=True))
    op.create_table(
        "ns_leases",
        sa.Column("name", sa.String(200), primary_key=True),
        sa.Column("holder", sa.String(200), nullable=False),
        sa.Column("expires_at", sa.DateTime, nullable=False))


def downgrade() -> None:
    for table in ("ns_leases", "ns_curve_points", "ns_trial_metrics", "ns_trial_params",
                  "ns_trials", "ns_stages", "ns_sweeps"):
        op.drop_table(table)
