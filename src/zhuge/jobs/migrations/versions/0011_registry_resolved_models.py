"""The registry version a job's model reference resolved to (#12): ``jobs.model_ref`` (the
reference as given, ``fleet-cpu@champion``) and ``jobs.model_version`` (what it named as the
job started, ``fleet-cpu@3``); and ``registered_models.task``, what a model's versions are
(``forecast``, gated; ``cluster``, promoted by hand).

Revision ID: 0011
Revises: 0010
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("model_ref", sa.String(300)))
        batch.add_column(sa.Column("model_version", sa.String(300)))
    with op.batch_alter_table("registered_models") as batch:
        batch.add_column(
            sa.Column("task", sa.String(16), nullable=False, server_default="forecast")
        )


def downgrade() -> None:
    with op.batch_alter_table("registered_models") as batch:
        batch.drop_column("task")
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("model_version")
        batch.drop_column("model_ref")
