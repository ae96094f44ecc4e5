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
    # server-side path prefixes this tenant's jobs may read directly, beyond ZHUGE_DATA_ROOTS
    sa.Column("data_roots", sa.JSON),
)

tokens = sa.Table(
    "tokens",
    metadata,
    sa.Column("token_sha256", sa.String(64), primary_key=True),  # the token itself is never kept
    sa.Column("id", sa.String(32), nullable=False, unique=True),  # what tokens ls shows
    sa.Column("tenant", sa.String(64), sa.ForeignKey("tenants.name"), nullable=False),
    sa.Column("role", sa.String(16), nullable=False, server_default="member"),  # member|admin
    sa.Column("name", sa.String(100), nullable=False, server_default=""),
    sa.Column("created_at", Time, nullable=False),
    sa.Column("expires_at", Time),
    sa.Column("last_used_at", Time),
    sa.Column("revoked_at", Time),
    sa.Column("description", sa.String(200), nullable=False, server_default=""),
)

audit_log = sa.Table(
    "audit_log",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("at", Time, nullable=False),
    sa.Column("token_id", sa.String(32)),  # None: no valid token (a refused request)
    sa.Column("tenant", sa.String(64)),
    sa.Column("action", sa.String(64), nullable=False),  # e.g. job.submit, token.revoke
    sa.Column("target", sa.String(300), nullable=False, server_default=""),
    sa.Column("outcome", sa.String(32), nullable=False),  # ok, or the refusal's error type
    sa.Column("client", sa.String(100), nullable=False, server_default=""),
    sa.Column("details", sa.JSON),
    sa.Index("ix_audit_log_tenant", "tenant", "id"),
    sa.Index("ix_audit_log_at", "at"),
)

datasets = sa.Table(
    "datasets",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("tenant", sa.String(64), nullable=False),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("sha256", sa.String(64), nullable=False),  # of the content: its address
    sa.Column("size_bytes", sa.BigInteger, nullable=False),
    sa.Column("format", sa.String(16), nullable=False),  # csv, parquet
    sa.Column("path", sa.String(500), nullable=False),  # key under the artifacts root
    sa.Column("created_at", Time, nullable=False),
    sa.Column("created_by", sa.String(32)),  # token id
    sa.UniqueConstraint("tenant", "name", "sha256", name="uq_datasets_version"),
    sa.Index("ix_datasets_tenant_name", "tenant", "name", "id"),
)

connections = sa.Table(
    "connections",
    metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("kind", sa.String(16), nullable=False),  # sql, objects
    sa.Column("url", sa.Text, nullable=False),  # with credentials: never shown back
    sa.Column("tenant", sa.String(64)),  # None: admins only
    sa.Column("created_at", Time, nullable=False),
    sa.Column("created_by", sa.String(32)),
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
    sa.Column("pending_reason", sa.Text),  # why a queued job does not start now, in words
    # admission (zhuge.jobs.admission): copies on distinct workers admitted together or not
    # at all; the attempt's time limit; binpack|spread (None: the queue configuration's)
    sa.Column("gang", sa.Integer, nullable=False, server_default="1"),
    sa.Column("timeout_s", sa.Double),
    sa.Column("placement", sa.String(16)),
    sa.Column("assigned_workers", sa.JSON),  # where admission placed the running attempt
    sa.Column("preempt_requested_at", sa.Double),  # asked to yield its place (reclaim)
    # the queued jobs planned to follow the running attempt in its worker's chain
    # (admission.Decision.plans; claims.ChainPlan: {"seen": newest id, "jobs": [[id, tenant]]})
    sa.Column("chain_plan", sa.JSON),
    # dependencies (zhuge.jobs.dependencies): the pipeline and step a job belongs to, and
    # the upstream job whose dead or cancelled end cancelled this one (its retry re-blocks it)
    sa.Column("pipeline_id", BigId),
    sa.Column("step", sa.String(64)),
    sa.Column("cancelled_by", BigId),
    # some job waits for this one: its success looks for dependents to release (set by link)
    sa.Column("has_dependents", sa.Boolean, nullable=False, server_default=sa.false()),
    # the registry reference the job was given (model_from NAME@ALIAS) and the version it
    # resolved to as the job started (NAME@VERSION): set once, never moved by a promotion
    sa.Column("model_ref", sa.String(300)),
    sa.Column("model_version", sa.String(300)),
    sa.UniqueConstraint("tenant", "idempotency_key", name="uq_jobs_idempotency"),
    sa.Index("ix_jobs_lease", "state", "lease_expires_at"),
    sa.Index("ix_jobs_tenant", "tenant", "id"),
    sa.Index("ix_jobs_pipeline", "pipeline_id"),
)
# The queue in the orders admission reads it (``zhuge.jobs.claims``, migration 0013): all of
# it by priority, highest first, then FIFO (a chain's claim checks nothing newer outranks
# its job); each tenant's the same way, and FIFO alone (the oldest, so an aged job is seen).
sa.Index("ix_jobs_queue", jobs.c.state, jobs.c.priority.desc(), jobs.c.id)
sa.Index("ix_jobs_tenant_queue", jobs.c.state, jobs.c.tenant, jobs.c.priority.desc(), jobs.c.id)
sa.Index("ix_jobs_tenant_age", jobs.c.state, jobs.c.tenant, jobs.c.id)

# A job waits (blocked) until every job it was submitted after has succeeded.
job_dependencies = sa.Table(
    "job_dependencies",
    metadata,
    sa.Column("job_id", BigId, primary_key=True),  # the dependent
    sa.Column("upstream_id", BigId, primary_key=True),  # the job it waits for
    sa.Index("ix_job_dependencies_upstream", "upstream_id"),
)

# A graph of jobs submitted at once (zhuge.jobs.pipelines); its state is derived from its jobs.
pipelines = sa.Table(
    "pipelines",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("tenant", sa.String(64), nullable=False),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("spec", sa.JSON, nullable=False),  # the document as parsed, parameters rendered
    sa.Column("params", sa.JSON, nullable=False),  # the parameters' values it ran with
    sa.Column("origin", sa.String(200)),  # who made it: None (a user), schedule:NAME, ...
    sa.Column("created_at", Time, nullable=False),
    sa.Index("ix_pipelines_tenant", "tenant", "id"),
)

# -- schedules (zhuge.jobs.schedules): a pipeline document on a cron expression --------------
schedules = sa.Table(
    "schedules",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("tenant", sa.String(64), nullable=False),
    sa.Column("name", sa.String(100), nullable=False),
    sa.Column("cron", sa.String(200), nullable=False),
    sa.Column("timezone", sa.String(64), nullable=False, server_default="UTC"),  # IANA
    sa.Column("document", sa.Text, nullable=False),  # the pipeline document, rendered per slot
    sa.Column("params", sa.JSON, nullable=False),  # its parameters' values
    sa.Column("template", sa.String(64)),  # the shipped template it came from, if any
    sa.Column("overlap", sa.String(8), nullable=False),  # skip|queue
    sa.Column("catch_up", sa.String(8), nullable=False),  # latest|none
    sa.Column("paused", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("paused_reason", sa.Text),
    sa.Column("token_id", sa.String(32)),  # whose permissions its runs have
    sa.Column("created_at", Time, nullable=False),
    sa.Column("last_slot", Time),  # the latest slot fired, skipped or missed
    sa.UniqueConstraint("tenant", "name", name="uq_schedules_name"),
)

# One row per slot of a schedule: the unique key makes each slot fire once, across
# schedulers and restarts (zhuge.jobs.schedules says how).
schedule_runs = sa.Table(
    "schedule_runs",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("schedule_id", BigId, nullable=False),
    sa.Column("slot", Time, nullable=False),
    sa.Column("trigger", sa.String(16), nullable=False),  # cron | manual
    sa.Column("outcome", sa.String(16), nullable=False),  # fired|skipped|missed|failed
    sa.Column("reason", sa.Text, nullable=False, server_default=""),
    sa.Column("pipeline_id", BigId),
    sa.Column("created_at", Time, nullable=False),
    sa.UniqueConstraint("schedule_id", "slot", name="uq_schedule_runs_slot"),
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

# Scheduler loops that are alive: each beats every few seconds (zhuge.jobs.liveness), so
# /readyz on any API process knows whether some scheduler admits the queue.
schedulers = sa.Table(
    "schedulers",
    metadata,
    sa.Column("name", sa.String(200), primary_key=True),
    sa.Column("host", sa.String(200), nullable=False),
    sa.Column("pid", sa.Integer, nullable=False),
    sa.Column("version", sa.String(64), nullable=False),  # zhuge's version
    sa.Column("started_at", Time, nullable=False),
    sa.Column("last_beat", Time, nullable=False),
)

queue_config = sa.Table(
    "queue_config",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),  # one row: the configuration in force
    sa.Column("document", sa.Text, nullable=False),  # the YAML as applied
    sa.Column("config", sa.JSON, nullable=False),  # as parsed and checked
    sa.Column("applied_at", Time, nullable=False),
    sa.Column("applied_by", sa.String(32)),  # token id
)

tenant_usage = sa.Table(
    "tenant_usage",
    metadata,
    sa.Column("tenant", sa.String(64), primary_key=True),
    # resource-seconds per resource, decayed with the fair share's half-life
    sa.Column("usage", sa.JSON, nullable=False),
    sa.Column("updated_at", Time, nullable=False),
)

# -- the model registry (zhuge.jobs.registry): tenant-scoped names, numbered versions, aliases
registered_models = sa.Table(
    "registered_models",
    metadata,
    sa.Column("tenant", sa.String(64), primary_key=True),
    sa.Column("name", sa.String(200), primary_key=True),
    sa.Column("created_at", Time, nullable=False),
    sa.Column("created_by", sa.String(32)),
    sa.Column("config", sa.JSON, nullable=False),  # the release gate's and drift's settings
    # what its versions are: forecast (gated) or cluster (promoted by hand)
    sa.Column("task", sa.String(16), nullable=False, server_default="forecast"),
)

model_versions = sa.Table(
    "model_versions",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("tenant", sa.String(64), nullable=False),
    sa.Column("model", sa.String(200), nullable=False),
    sa.Column("version", sa.Integer, nullable=False),  # 1, 2, ... per model, never reused
    sa.Column("created_at", Time, nullable=False),
    sa.Column("created_by", sa.String(32)),
    sa.Column("job_id", BigId),  # the job that trained it
    sa.Column("artifact", sa.String(500), nullable=False),  # the model folder, under artifacts
    sa.Column("manifest_sha256", sa.String(64), nullable=False),  # of its manifest.json
    sa.Column("lineage", sa.JSON, nullable=False),  # datasets + digests, params, versions
    sa.Column("metrics", sa.JSON),  # its backtest metrics
    sa.Column("gate", sa.JSON),  # the release gate's decision and evidence
    sa.UniqueConstraint("tenant", "model", "version", name="uq_model_versions"),
)

model_aliases = sa.Table(
    "model_aliases",
    metadata,
    sa.Column("tenant", sa.String(64), primary_key=True),
    sa.Column("model", sa.String(200), primary_key=True),
    sa.Column("alias", sa.String(64), primary_key=True),  # champion, challenger, ...
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("updated_at", Time, nullable=False),
)

model_events = sa.Table(
    "model_events",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("tenant", sa.String(64), nullable=False),
    sa.Column("model", sa.String(200), nullable=False),
    sa.Column("at", Time, nullable=False),
    # register, alias, promote, rollback, gate, remove, use, score, drift
    sa.Column("action", sa.String(32), nullable=False),
    sa.Column("alias", sa.String(64)),
    sa.Column("version", sa.Integer),
    sa.Column("previous_version", sa.Integer),  # what the alias pointed at before
    sa.Column("job_id", BigId),
    sa.Column("actor", sa.String(32)),  # token id; None: the platform
    sa.Column("reason", sa.Text, nullable=False, server_default=""),
    sa.Column("details", sa.JSON),
    sa.Index("ix_model_events_model", "tenant", "model", "id"),
)

model_scores = sa.Table(
    "model_scores",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("tenant", sa.String(64), nullable=False),
    sa.Column("model", sa.String(200), nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("at", Time, nullable=False),
    sa.Column("job_id", BigId),  # the scoring job
    sa.Column("metrics", sa.JSON, nullable=False),  # MASE, coverage, per level, windows scored
    sa.Column("drifted", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Index("ix_model_scores_model", "tenant", "model", "id"),
)

# -- elastic capacity and cost (zhuge.jobs.elastic) ------------------------------------------
# The pools file applied through the API (`zhuge pools apply`): sizes and policies of pools
# whose providers the server's own file configures. One row: the document in force.
pool_config = sa.Table(
    "pool_config",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("document", sa.Text, nullable=False),  # the YAML as applied
    sa.Column("config", sa.JSON, nullable=False),  # as parsed and checked
    sa.Column("applied_at", Time, nullable=False),
    sa.Column("applied_by", sa.String(32)),  # token id
)

# Which scheduler process runs the autoscaler: the holder renews its row; another takes it
# over only once it has expired.
autoscaler_lease = sa.Table(
    "autoscaler_lease",
    metadata,
    sa.Column("name", sa.String(32), primary_key=True),  # "autoscaler"
    sa.Column("holder", sa.String(200), nullable=False),  # the scheduler's name
    sa.Column("acquired_at", Time, nullable=False),
    sa.Column("expires_at", Time, nullable=False),
)

# Every decision of the autoscaler, one per interval per pool (changes and holds alike).
autoscaler_decisions = sa.Table(
    "autoscaler_decisions",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("at", Time, nullable=False),
    sa.Column("pool", sa.String(64), nullable=False),
    sa.Column("from_size", sa.Integer, nullable=False),
    sa.Column("to_size", sa.Integer, nullable=False),
    sa.Column("policy", sa.String(32), nullable=False),
    sa.Column("reason", sa.Text, nullable=False, server_default=""),
    sa.Column("inputs", sa.JSON),  # demand, capacity, what the policy looked at
    sa.Column("scheduler", sa.String(200)),  # the lease holder that decided
    sa.Index("ix_autoscaler_decisions_pool", "pool", "id"),
)

# Workers being drained: they take no new attempt and are retired once idle.
worker_drains = sa.Table(
    "worker_drains",
    metadata,
    sa.Column("address", sa.String(200), primary_key=True),
    sa.Column("pool", sa.String(64), nullable=False),
    sa.Column("requested_at", Time, nullable=False),
    sa.Column("reason", sa.Text, nullable=False, server_default=""),
)

# Up-time of every worker: an interval per worker process, open (ended_at NULL) while it is up.
worker_uptime = sa.Table(
    "worker_uptime",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("worker", sa.String(200), nullable=False),  # its address
    sa.Column("pool", sa.String(64), nullable=False),
    sa.Column("resources", sa.JSON, nullable=False),  # what it offered
    sa.Column("started_at", Time, nullable=False),
    sa.Column("ended_at", Time),
    sa.Index("ix_worker_uptime_worker", "worker", "ended_at"),
    sa.Index("ix_worker_uptime_started", "started_at"),
)

# What each attempt was allocated and for how long, and its measured CPU time: a row per
# attempt that ran, written when it ends (zhuge.jobs.elastic.costs). Resource-seconds count
# every copy of a gang; ctx.map parts run within the booking and their CPU time is the job's.
attempt_usage = sa.Table(
    "attempt_usage",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("job_id", BigId, nullable=False),
    sa.Column("attempt", sa.Integer, nullable=False),
    sa.Column("tenant", sa.String(64), nullable=False),
    sa.Column("kind", sa.String(64), nullable=False),
    sa.Column("pool", sa.String(64), nullable=False),
    sa.Column("worker", sa.String(200)),
    sa.Column("outcome", sa.String(16), nullable=False),  # succeeded, failed, lost, ...
    sa.Column("started_at", Time, nullable=False),
    sa.Column("ended_at", Time, nullable=False),
    sa.Column("resources", sa.JSON, nullable=False),  # per copy
    sa.Column("gang", sa.Integer, nullable=False, server_default="1"),
    sa.Column("cpu_alloc_seconds", sa.Double, nullable=False, server_default="0"),
    sa.Column("gpu_alloc_seconds", sa.Double, nullable=False, server_default="0"),
    sa.Column("memory_gb_seconds", sa.Double, nullable=False, server_default="0"),
    sa.Column("cpu_seconds", sa.Double, nullable=False, server_default="0"),  # measured
    sa.Index("ix_attempt_usage_ended", "ended_at"),
    sa.Index("ix_attempt_usage_tenant", "tenant", "ended_at"),
)
