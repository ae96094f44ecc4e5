"""Lost attempts apart from failed ones: ``jobs.lost`` and ``jobs.max_lost``, and the reason
code of a lost attempt on its events (``zhuge.jobs.states.LostReason``).

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("lost", sa.Integer, nullable=False, server_default="0"))
        batch.add_column(sa.Column("max_lost", sa.Integer, nullable=False, server_default="10"))
    with op.batch_alter_table("job_events") as batch:
        batch.add_column(sa.Column("reason", sa.String(32)))
