"""The columns and indexes that numsweep added to older databases, one by one, before its
schema had versions: a claimed trial's slot, attempt and Optuna trial, a single trial's
setup, its fused group, and a sweep's data fingerprint. A database stamped 0001 may lack
any of them; each is added only where it is missing.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

ADDED = {
    "ns_trials": [sa.Column("slot", sa.Integer, nullable=True),
                  sa.Column("attempt", sa.Integer, nullable=False, server_default="0"),
                  sa.Column("study_trial", sa.Integer, nullable=True),
                  sa.Column("setup_json", sa.Text, nullable=True),
                  sa.Column("group_id", sa.Integer, nullable=True),
                  sa.Column("group_size", sa.Integer, nullable=True)],
    "ns_sweeps": [sa.Column("data_fingerprint", sa.String(100), nullable=True)],
}
INDEXES = {"ix_ns_trials_state": (["sweep_id", "state"], False),
           "uq_ns_trials_slot_attempt": (["stage_id", "slot", "attempt"], True)}


def upgrade() -> None:
    inspector = sa.inspect(op.get_bind())
    tables = set(inspector.get_table_names())
    for table, columns in ADDED.items():
        have = {c["name"] for c in inspector.get_columns(table)}
        for column in columns:
            if column.name not in have:
                op.add_column(table, column)
    indexes = {i["name"] for i in sa.inspect(op.get_bind()).get_indexes("ns_trials")}
    for name, (columns, unique) in INDEXES.items():
        if name not in indexes:
            op.create_index(name, "ns_trials", columns, unique=unique)
    if "ns_leases" not in tables:
        op.create_table(
            "ns_leases",
            sa.Column("name", sa.String(200), primary_key=True),
            sa.Column("holder", sa.String(200), nullable=False),
            sa.Column("expires_at", sa.DateTime, nullable=False))


def downgrade() -> None:
    """Nothing: revision 0001 stands for every unversioned database, with these columns or
    without them."""
