"""Whether any job waits for this one (#11): ``jobs.has_dependents``, set as a dependent is
linked to it, so an attempt's success looks for dependents to release only where there are
some (read in the statement that records the success, not by one more query per job).

Revision ID: 0012
Revises: 0011
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(
            sa.Column("has_dependents", sa.Boolean, nullable=False, server_default=sa.false())
        )
    op.execute(
        "UPDATE jobs SET has_dependents = TRUE "
        "WHERE id IN (SELECT upstream_id FROM job_dependencies)"
    )


def downgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("has_dependents")
