"""SQL tables of the store (SQLAlchemy Core), identical on SQLite and PostgreSQL.

Times are epoch seconds in double-precision columns: comparable and portable across both
engines, with no time-zone ambiguity; the API renders them as ISO 8601.
"""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()

# BIGINT on PostgreSQL; INTEGER on SQLite so it aliases the rowid and autoincrements.
BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
Time = sa.Double

tenants = sa.Table(
    "tenants",
    metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("created_at", Time, nullable=False),
)

tokens = sa.Table(
    "tokens",
    metadata,
    sa.Column("token_sha256", sa.String(64), primary_key=True),
    sa.Column("tenant", sa.String(64), sa.ForeignKey("tenants.name"), nullable=False),
    sa.Column("created_at", Time, nullable=False),
    sa.Column("description", sa.String(200), nullable=False, server_default=""),
)

jobs = sa.Table(
    "jobs",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("tenant", sa.String(64), nullable=False),
    sa.Column("kind", sa.String(64), nullable=False),
    sa.Column("params", sa.JSON, nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("priority", sa.Integer, nullable=False, server_default="0"),
    sa.Column("resources", sa.JSON, nullable=False),
    # "cpu" or "gpu": lets a claim skip jobs no live worker can run, without JSON in SQL.
    sa.Column("resource_class", sa.String(8), nullable=False, server_default="cpu"),
    sa.Column("attempt", sa.Integer, nullable=False, server_default="0"),
    sa.Column("failures", sa.Integer, nullable=False, server_default="0"),
    sa.Column("max_attempts", sa.Integer, nullable=False, server_default="3"),
    # attempts the infrastructure lost involuntarily (states.LostReason), apart from failures
    sa.Column("lost", sa.Integer, nullable=False, server_default="0"),
    sa.Column("max_lost", sa.Integer, nullable=False, server_default="10"),
    sa.Column("idempotency_key", sa.String(200)),
    sa.Column("request_sha256", sa.String(64), nullable=False),
    sa.Column("created_at", Time, nullable=False),
    sa.Column("updated_at", Time, nullable=False),
    sa.Column("not_before", Time, nullable=False),
    sa.Column("started_at", Time),
    sa.Column("finished_at", Time),
    sa.Column("lease_expires_at", Time),
    sa.Column("lease_owner", sa.String(200)),  # the scheduler process that claimed the attempt
    sa.Column("worker", sa.String(200)),  # the Dask worker running the attempt
    sa.Column("progress", sa.JSON),
    sa.Column("result", sa.JSON),
    sa.Column("error", sa.Text),
    sa.Column("traceback", sa.Text),
    sa.Column("cpu_seconds", sa.Double, nullable=False, server_default="0"),
    sa.Column("gpu_seconds", sa.Double, nullable=False, server_default="0"),
    sa.UniqueConstraint("tenant", "idempotency_key", name="uq_jobs_idempotency"),
    sa.Index("ix_jobs_claim", "state", "resource_class", "priority", "id"),
    sa.Index("ix_jobs_lease", "state", "lease_expires_at"),
    sa.Index("ix_jobs_tenant", "tenant", "id"),
)

job_events = sa.Table(
    "job_events",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("job_id", BigId, nullable=False),
    sa.Column("at", Time, nullable=False),
    sa.Column("attempt", sa.Integer, nullable=False),
    sa.Column("from_state", sa.String(16)),
    sa.Column("to_state", sa.String(16), nullable=False),
    sa.Column("message", sa.Text, nullable=False, server_default=""),
    sa.Column("reason", sa.String(32)),  # a lost attempt's states.LostReason
    sa.Index("ix_job_events_job", "job_id", "id"),
)

job_logs = sa.Table(
    "job_logs",
    metadata,
    sa.Column("seq", BigId, primary_key=True, autoincrement=True),
    sa.Column("job_id", BigId, nullable=False),
    sa.Column("attempt", sa.Integer, nullable=False),
    sa.Column("at", Time, nullable=False),
    sa.Column("line", sa.Text, nullable=False),
    sa.Index("ix_job_logs_job", "job_id", "seq"),
)

workers = sa.Table(
    "workers",
    metadata,
    sa.Column("address", sa.String(200), primary_key=True),
    sa.Column("scheduler", sa.String(200), nullable=False),
    sa.Column("resources", sa.JSON, nullable=False),
    sa.Column("running", sa.Integer, nullable=False, server_default="0"),
    sa.Column("last_seen", Time, nullable=False),
)
