"""The trust boundary: tokens with an id, a name, a role, an expiry, last use and revocation;
per-tenant data roots; the audit log; datasets; connections; and a queued job's
``pending_reason``.

Tokens of v0.1.0 get an id from their hash; those of tenant ``default`` (the one ``zhuge up``
writes) become admins, every other one a member of its tenant.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("tenants") as batch:
        batch.add_column(sa.Column("data_roots", sa.JSON))
    with op.batch_alter_table("tokens") as batch:
        batch.add_column(sa.Column("id", sa.String(32)))
        batch.add_column(sa.Column("role", sa.String(16), nullable=False, server_default="member"))
        batch.add_column(sa.Column("name", sa.String(100), nullable=False, server_default=""))
        batch.add_column(sa.Column("expires_at", sa.Double))
        batch.add_column(sa.Column("last_used_at", sa.Double))
        batch.add_column(sa.Column("revoked_at", sa.Double))
    op.execute("UPDATE tokens SET id = 'tok_' || substr(token_sha256, 1, 16)")
    op.execute("UPDATE tokens SET role = 'admin' WHERE tenant = 'default'")
    with op.batch_alter_table("tokens") as batch:
        batch.alter_column("id", existing_type=sa.String(32), nullable=False)
        batch.create_unique_constraint("uq_tokens_id", ["id"])
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("pending_reason", sa.Text))
    op.create_table(
        "audit_log",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("at", sa.Double, nullable=False),
        sa.Column("token_id", sa.String(32)),
        sa.Column("tenant", sa.String(64)),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("target", sa.String(300), nullable=False, server_default=""),
        sa.Column("outcome", sa.String(32), nullable=False),
        sa.Column("client", sa.String(100), nullable=False, server_default=""),
        sa.Column("details", sa.JSON),
    )
    op.create_index("ix_audit_log_tenant", "audit_log", ["tenant", "id"])
    op.create_index("ix_audit_log_at", "audit_log", ["at"])
    op.create_table(
        "datasets",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("tenant", sa.String(64), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("size_bytes", sa.BigInteger, nullable=False),
        sa.Column("format", sa.String(16), nullable=False),
        sa.Column("path", sa.String(500), nullable=False),
        sa.Column("created_at", sa.Double, nullable=False),
        sa.Column("created_by", sa.String(32)),
        sa.UniqueConstraint("tenant", "name", "sha256", name="uq_datasets_version"),
    )
    op.create_index("ix_datasets_tenant_name", "datasets", ["tenant", "name", "id"])
    op.create_table(
        "connections",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("url", sa.Text, nullable=False),
        sa.Column("tenant", sa.String(64)),
        sa.Column("created_at", sa.Double, nullable=False),
        sa.Column("created_by", sa.String(32)),
    )
