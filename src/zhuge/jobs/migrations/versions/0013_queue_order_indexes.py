"""The queue in the orders admission reads it, as index ranges (#11). Each tenant's queue by
priority, highest first, then by id (``ix_jobs_tenant_queue``, which replaces
``ix_jobs_tenant_state``, whose ascending priority made that order a sort of the tenant's
whole queue) and by id, the oldest first (``ix_jobs_tenant_age``, where the primary key made
it a scan past every job already run): a scheduler's turn reads the first few of each, and
now only those rows, however deep the queue. The whole queue by priority (``ix_jobs_queue``,
which replaces ``ix_jobs_claim``, whose resource class came before the priority): a chain's
claim checks that no job queued since its plan has a higher priority, a range that is empty
when none has, where it was a scan of every queued row (and of the dead ones a busy queue
leaves behind until vacuum).

Revision ID: 0013
Revises: 0012
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_index("ix_jobs_claim", "jobs")
    op.drop_index("ix_jobs_tenant_state", "jobs")
    op.create_index("ix_jobs_queue", "jobs", ["state", sa.text("priority DESC"), "id"])
    op.create_index(
        "ix_jobs_tenant_queue", "jobs", ["state", "tenant", sa.text("priority DESC"), "id"]
    )
    op.create_index("ix_jobs_tenant_age", "jobs", ["state", "tenant", "id"])


def downgrade() -> None:
    op.drop_index("ix_jobs_tenant_age", "jobs")
    op.drop_index("ix_jobs_tenant_queue", "jobs")
    op.drop_index("ix_jobs_queue", "jobs")
    op.create_index("ix_jobs_tenant_state", "jobs", ["state", "tenant", "priority", "id"])
    op.create_index("ix_jobs_claim", "jobs", ["state", "resource_class", "priority", "id"])
