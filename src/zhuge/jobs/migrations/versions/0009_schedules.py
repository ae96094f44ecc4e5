"""Schedules and their runs, one per slot (#13).

Revision ID: 0009
Revises: 0008
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "schedules",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("tenant", sa.String(64), nullable=False),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("cron", sa.String(200), nullable=False),
        sa.Column("timezone", sa.String(64), nullable=False, server_default="UTC"),
        sa.Column("document", sa.Text, nullable=False),
        sa.Column("params", sa.JSON, nullable=False),
        sa.Column("template", sa.String(64)),
        sa.Column("overlap", sa.String(8), nullable=False),
        sa.Column("catch_up", sa.String(8), nullable=False),
        sa.Column("paused", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("paused_reason", sa.Text),
        sa.Column("token_id", sa.String(32)),
        sa.Column("created_at", sa.Double, nullable=False),
        sa.Column("last_slot", sa.Double),
        sa.UniqueConstraint("tenant", "name", name="uq_schedules_name"),
    )
    op.create_table(
        "schedule_runs",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("schedule_id", BigId, nullable=False),
        sa.Column("slot", sa.Double, nullable=False),
        sa.Column("trigger", sa.String(16), nullable=False),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("reason", sa.Text, nullable=False, server_default=""),
        sa.Column("pipeline_id", BigId),
        sa.Column("created_at", sa.Double, nullable=False),
        sa.UniqueConstraint("schedule_id", "slot", name="uq_schedule_runs_slot"),
    )


def downgrade() -> None:
    op.drop_table("schedule_runs")
    op.drop_table("schedules")
