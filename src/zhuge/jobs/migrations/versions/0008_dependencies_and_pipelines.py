"""Job dependencies (the blocked state, after) and pipelines (#13).

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("pipeline_id", BigId))
        batch.add_column(sa.Column("step", sa.String(64)))
        batch.add_column(sa.Column("cancelled_by", BigId))
        batch.create_index("ix_jobs_pipeline", ["pipeline_id"])
    op.create_table(
        "job_dependencies",
        sa.Column("job_id", BigId, primary_key=True),
        sa.Column("upstream_id", BigId, primary_key=True),
    )
    op.create_index("ix_job_dependencies_upstream", "job_dependencies", ["upstream_id"])
    op.create_table(
        "pipelines",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("tenant", sa.String(64), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("spec", sa.JSON, nullable=False),
        sa.Column("params", sa.JSON, nullable=False),
        sa.Column("origin", sa.String(200)),
        sa.Column("created_at", sa.Double, nullable=False),
    )
    op.create_index("ix_pipelines_tenant", "pipelines", ["tenant", "id"])


def downgrade() -> None:
    op.drop_index("ix_pipelines_tenant", table_name="pipelines")
    op.drop_table("pipelines")
    op.drop_index("ix_job_dependencies_upstream", table_name="job_dependencies")
    op.drop_table("job_dependencies")
    with op.batch_alter_table("jobs") as batch:
        batch.drop_index("ix_jobs_pipeline")
        batch.drop_column("cancelled_by")
        batch.drop_column("step")
        batch.drop_column("pipeline_id")
