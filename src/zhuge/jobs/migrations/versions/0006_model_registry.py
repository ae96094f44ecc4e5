"""The model registry: registered models (tenant-scoped names with their gate's settings),
numbered versions with lineage and the release gate's evidence, aliases, the history of
every alias change and action, and the live record of scorings.

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "registered_models",
        sa.Column("tenant", sa.String(64), primary_key=True),
        sa.Column("name", sa.String(200), primary_key=True),
        sa.Column("created_at", sa.Double, nullable=False),
        sa.Column("created_by", sa.String(32)),
        sa.Column("config", sa.JSON, nullable=False),
    )
    op.create_table(
        "model_versions",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("tenant", sa.String(64), nullable=False),
        sa.Column("model", sa.String(200), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("created_at", sa.Double, nullable=False),
        sa.Column("created_by", sa.String(32)),
        sa.Column("job_id", BigId),
        sa.Column("artifact", sa.String(500), nullable=False),
        sa.Column("manifest_sha256", sa.String(64), nullable=False),
        sa.Column("lineage", sa.JSON, nullable=False),
        sa.Column("metrics", sa.JSON),
        sa.Column("gate", sa.JSON),
        sa.UniqueConstraint("tenant", "model", "version", name="uq_model_versions"),
    )
    op.create_table(
        "model_aliases",
        sa.Column("tenant", sa.String(64), primary_key=True),
        sa.Column("model", sa.String(200), primary_key=True),
        sa.Column("alias", sa.String(64), primary_key=True),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("updated_at", sa.Double, nullable=False),
    )
    op.create_table(
        "model_events",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("tenant", sa.String(64), nullable=False),
        sa.Column("model", sa.String(200), nullable=False),
        sa.Column("at", sa.Double, nullable=False),
        sa.Column("action", sa.String(32), nullable=False),
        sa.Column("alias", sa.String(64)),
        sa.Column("version", sa.Integer),
        sa.Column("previous_version", sa.Integer),
        sa.Column("job_id", BigId),
        sa.Column("actor", sa.String(32)),
        sa.Column("reason", sa.Text, nullable=False, server_default=""),
        sa.Column("details", sa.JSON),
    )
    op.create_index("ix_model_events_model", "model_events", ["tenant", "model", "id"])
    op.create_table(
        "model_scores",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("tenant", sa.String(64), nullable=False),
        sa.Column("model", sa.String(200), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("at", sa.Double, nullable=False),
        sa.Column("job_id", BigId),
        sa.Column("metrics", sa.JSON, nullable=False),
        sa.Column("drifted", sa.Boolean, nullable=False, server_default=sa.false()),
    )
    op.create_index("ix_model_scores_model", "model_scores", ["tenant", "model", "id"])


def downgrade() -> None:
    op.drop_index("ix_model_scores_model", "model_scores")
    op.drop_table("model_scores")
    op.drop_index("ix_model_events_model", "model_events")
    for table in ("model_events", "model_aliases", "model_versions", "registered_models"):
        op.drop_table(table)
