"""Admission: what a job asks beyond resources (a gang of workers, a time limit, a
placement), where admission placed its attempt and whether it was asked to yield; the queue
configuration as applied; each tenant's decayed usage for fair share.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("gang", sa.Integer, nullable=False, server_default="1"))
        batch.add_column(sa.Column("timeout_s", sa.Double))
        batch.add_column(sa.Column("placement", sa.String(16)))
        batch.add_column(sa.Column("assigned_workers", sa.JSON))
        batch.add_column(sa.Column("preempt_requested_at", sa.Double))
    op.create_index("ix_jobs_tenant_state", "jobs", ["state", "tenant", "priority", "id"])
    op.create_table(
        "queue_config",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("document", sa.Text, nullable=False),
        sa.Column("config", sa.JSON, nullable=False),
        sa.Column("applied_at", sa.Double, nullable=False),
        sa.Column("applied_by", sa.String(32)),
    )
    op.create_table(
        "tenant_usage",
        sa.Column("tenant", sa.String(64), primary_key=True),
        sa.Column("usage", sa.JSON, nullable=False),
        sa.Column("updated_at", sa.Double, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("tenant_usage")
    op.drop_table("queue_config")
    op.drop_index("ix_jobs_tenant_state", "jobs")
    with op.batch_alter_table("jobs") as batch:
        for column in (
            "preempt_requested_at",
            "assigned_workers",
            "placement",
            "timeout_s",
            "gang",
        ):
            batch.drop_column(column)
