"""Worker pools, autoscaler decisions and its lease, allocated resource-seconds per attempt, worker up-time (#14).

Revision ID: 0010
Revises: 0009
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "pool_config",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("document", sa.Text, nullable=False),
        sa.Column("config", sa.JSON, nullable=False),
        sa.Column("applied_at", sa.Double, nullable=False),
        sa.Column("applied_by", sa.String(32)),
    )
    op.create_table(
        "autoscaler_lease",
        sa.Column("name", sa.String(32), primary_key=True),
        sa.Column("holder", sa.String(200), nullable=False),
        sa.Column("acquired_at", sa.Double, nullable=False),
        sa.Column("expires_at", sa.Double, nullable=False),
    )
    op.create_table(
        "autoscaler_decisions",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("at", sa.Double, nullable=False),
        sa.Column("pool", sa.String(64), nullable=False),
        sa.Column("from_size", sa.Integer, nullable=False),
        sa.Column("to_size", sa.Integer, nullable=False),
        sa.Column("policy", sa.String(32), nullable=False),
        sa.Column("reason", sa.Text, nullable=False, server_default=""),
        sa.Column("inputs", sa.JSON),
        sa.Column("scheduler", sa.String(200)),
    )
    op.create_index("ix_autoscaler_decisions_pool", "autoscaler_decisions", ["pool", "id"])
    op.create_table(
        "worker_drains",
        sa.Column("address", sa.String(200), primary_key=True),
        sa.Column("pool", sa.String(64), nullable=False),
        sa.Column("requested_at", sa.Double, nullable=False),
        sa.Column("reason", sa.Text, nullable=False, server_default=""),
    )
    op.create_table(
        "worker_uptime",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("worker", sa.String(200), nullable=False),
        sa.Column("pool", sa.String(64), nullable=False),
        sa.Column("resources", sa.JSON, nullable=False),
        sa.Column("started_at", sa.Double, nullable=False),
        sa.Column("ended_at", sa.Double),
    )
    op.create_index("ix_worker_uptime_worker", "worker_uptime", ["worker", "ended_at"])
    op.create_index("ix_worker_uptime_started", "worker_uptime", ["started_at"])
    op.create_table(
        "attempt_usage",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("job_id", BigId, nullable=False),
        sa.Column("attempt", sa.Integer, nullable=False),
        sa.Column("tenant", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(64), nullable=False),
        sa.Column("pool", sa.String(64), nullable=False),
        sa.Column("worker", sa.String(200)),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("started_at", sa.Double, nullable=False),
        sa.Column("ended_at", sa.Double, nullable=False),
        sa.Column("resources", sa.JSON, nullable=False),
        sa.Column("gang", sa.Integer, nullable=False, server_default="1"),
        sa.Column("cpu_alloc_seconds", sa.Double, nullable=False, server_default="0"),
        sa.Column("gpu_alloc_seconds", sa.Double, nullable=False, server_default="0"),
        sa.Column("memory_gb_seconds", sa.Double, nullable=False, server_default="0"),
        sa.Column("cpu_seconds", sa.Double, nullable=False, server_default="0"),
    )
    op.create_index("ix_attempt_usage_ended", "attempt_usage", ["ended_at"])
    op.create_index("ix_attempt_usage_tenant", "attempt_usage", ["tenant", "ended_at"])


def downgrade() -> None:
    op.drop_index("ix_attempt_usage_tenant", table_name="attempt_usage")
    op.drop_index("ix_attempt_usage_ended", table_name="attempt_usage")
    op.drop_table("attempt_usage")
    op.drop_index("ix_worker_uptime_started", table_name="worker_uptime")
    op.drop_index("ix_worker_uptime_worker", table_name="worker_uptime")
    op.drop_table("worker_uptime")
    op.drop_table("worker_drains")
    op.drop_index("ix_autoscaler_decisions_pool", table_name="autoscaler_decisions")
    op.drop_table("autoscaler_decisions")
    op.drop_table("autoscaler_lease")
    op.drop_table("pool_config")
