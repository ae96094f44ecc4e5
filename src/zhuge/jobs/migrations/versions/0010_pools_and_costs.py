"""Worker pools, autoscaler decisions and its lease, allocated resource-seconds per attempt, worker up-time (#14).

Revision ID: 0010
Revises: 0009
"""

from __future__ import annotations

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
