"""The queue configuration in force (``zhuge queues apply``), and what the queues look like.

One row of ``queue_config`` holds the YAML as an admin applied it and the configuration as
parsed (``zhuge.jobs.admission.QueueConfig``). With none applied, every tenant has weight 1
and no nominal quota.

``status`` (per tenant: what it runs and waits for, against its quota and its weight) and
``why`` (where one job stands) read the jobs with counts in SQL: never the queued jobs
themselves, which may be 100k. Only running jobs are loaded, to add up what they hold; the
cluster's capacity bounds how many there are.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from zhuge.jobs import schema
from zhuge.jobs.admission import EPS, Candidate, QueueConfig, effective_priority
from zhuge.jobs.states import JobState

if TYPE_CHECKING:
    from sqlalchemy import Connection

    from zhuge.jobs.model import Job
    from zhuge.jobs.store import JobStore

J = schema.jobs
QUEUED = JobState.QUEUED.value
RUNNING = JobState.RUNNING.value

MAX_GANG = 1024  # copies of one job admitted together: more workers than any cluster we know

# When a job joined the queue, for its order and its aging: what admission is given as
# ``Candidate.queued_at``.
QUEUED_AT = J.c.created_at


@dataclass(frozen=True)
class AppliedDocument:
    """The queues file as an admin applied it."""

    document: str
    applied_at: float
    applied_by: str | None


@dataclass(frozen=True)
class TenantStatus:
    """One tenant's row of ``zhuge queues status``."""

    tenant: str
    weight: float
    cohort: str | None
    nominal: dict[str, float]
    borrowing_limit: dict[str, float] | None
    lending_limit: dict[str, float] | None
    running: int  # jobs
    queued: int  # jobs
    usage: dict[str, float]
    """What its running jobs hold now, per counted resource (resources × gang)."""
    borrowed: dict[str, float]
    """How much of ``usage`` is beyond its nominal, per counted resource."""
    dominant_share: float
    """Its largest share of the cluster's capacity over the counted resources (DRF)."""
    fair_share: float
    """``dominant_share / weight``: admission serves the lowest first."""
    weight_share: float
    """Its weight over the weights of every tenant shown: the share it is entitled to."""
    decayed_usage: dict[str, float]
    """Resource-seconds, decayed over the fair share's half-life to now."""


@dataclass(frozen=True)
class ClusterStatus:
    capacity: dict[str, float]  # what the live workers offer, summed
    usage: dict[str, float]  # what running jobs hold, summed
    running: int
    queued: int
    workers: int


@dataclass(frozen=True)
class QueueStatus:
    resources: list[str]
    tenants: list[TenantStatus]
    cluster: ClusterStatus


@dataclass(frozen=True)
class Why:
    """Where one job stands, and in words (``summary``)."""

    job_id: int
    tenant: str
    state: str
    priority: int
    resources: dict[str, float]
    gang: int
    timeout_s: float | None
    placement: str | None
    summary: str
    pending_reason: str | None = None
    effective_priority: float | None = None
    position_in_tenant: int | None = None  # 1: next in its tenant's queue
    tenant_queued: int | None = None
    position_in_cluster: int | None = None
    cluster_queued: int | None = None
    workers: list[str] = field(default_factory=list)
    started_at: float | None = None
    finished_at: float | None = None
    preempt_requested_at: float | None = None
    error: str | None = None


def ordinal(n: int) -> str:
    """``1st``, ``2nd``, ``3rd``, ``11th``, ``22nd``."""
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def possessive(name: str) -> str:
    """``forecasting's``, ``analytics'``."""
    return f"{name}'" if name.endswith("s") else f"{name}'s"


class Queues:
    def __init__(self, store: JobStore) -> None:
        self.store = store
        self._parsed: tuple[dict[str, Any], QueueConfig] | None = None

    def _read(self, conn: Connection | None = None) -> sa.Row[Any] | None:
        query = sa.select(schema.queue_config).where(schema.queue_config.c.id == 1)
        if conn is not None:
            return conn.execute(query).first()
        with self.store.engine.connect() as c:
            row = c.execute(query).first()
            c.rollback()
        return row

    def config(self, conn: Connection | None = None) -> QueueConfig:
        """The configuration in force (the defaults when none was applied)."""
        row = self._read(conn)
        if row is None:
            return QueueConfig()
        # checked once per configuration, not on every claim that reads it
        cached = self._parsed
        if cached is None or cached[0] != row.config:
            cached = self._parsed = (row.config, QueueConfig.model_validate(row.config))
        return cached[1]

    def document(self) -> AppliedDocument | None:
        """The YAML in force as it was applied, when and by whom; None if none was."""
        row = self._read()
        if row is None:
            return None
        return AppliedDocument(row.document, row.applied_at, row.applied_by)

    def apply(self, document: str, *, applied_by: str | None = None) -> QueueConfig:
        """Check ``document`` (YAML) and make it the configuration in force; InvalidRequest
        naming the field, and nothing changed, if it is not valid."""
        config = QueueConfig.parse(document)
        now = self.store.clock()
        values = {
            "document": document,
            "config": config.model_dump(mode="json"),
            "applied_at": now,
            "applied_by": applied_by,
        }
        with self.store._tx() as conn:
            done = conn.execute(
                schema.queue_config.update().where(schema.queue_config.c.id == 1).values(**values)
            )
            if done.rowcount == 0:
                conn.execute(schema.queue_config.insert().values(id=1, **values))
        return config

    # -- status ---------------------------------------------------------------------------

    def status(self, *, tenant: str | None = None) -> QueueStatus:
        """Every tenant's row (the configured ones, and any with jobs queued, running or
        usage remembered), or only ``tenant``'s; the cluster's totals either way."""
        now = self.store.clock()
        U = schema.tenant_usage
        with self.store.engine.connect() as conn:
            row = self._read(conn)
            config = QueueConfig() if row is None else QueueConfig.model_validate(row.config)
            counts = conn.execute(
                sa.select(J.c.tenant, J.c.state, sa.func.count())
                .where(J.c.state.in_([QUEUED, RUNNING]))
                .group_by(J.c.tenant, J.c.state)
            ).all()
            running_rows = conn.execute(
                sa.select(J.c.tenant, J.c.resources, J.c.gang).where(J.c.state == RUNNING)
            ).all()
            usage_rows = conn.execute(sa.select(U.c.tenant, U.c.usage, U.c.updated_at)).all()
            conn.rollback()
        workers = self.store.workers()
        counted = list(config.resources)

        jobs: dict[str, dict[str, int]] = {}
        for name, state, n in counts:
            jobs.setdefault(name, {})[state] = n
        held: dict[str, dict[str, float]] = {}
        for name, resources, gang in running_rows:
            mine = held.setdefault(name, {})
            for k, v in (resources or {}).items():
                mine[k] = mine.get(k, 0.0) + float(v) * (gang or 1)
        half_life = config.fair_share.half_life
        decayed: dict[str, dict[str, float]] = {}
        for name, usage, updated_at in usage_rows:
            factor = 0.5 ** (max(0.0, now - updated_at) / half_life) if half_life > 0 else 0.0
            decayed[name] = {k: float(v) * factor for k, v in (usage or {}).items()}

        capacity: dict[str, float] = {}
        for w in workers:
            for k, v in w.resources.items():
                capacity[k] = capacity.get(k, 0.0) + float(v)
        names = sorted(set(config.tenants) | set(jobs) | set(held) | set(decayed))
        total_weight = sum(config.queue(n).weight for n in names) or 1.0
        cohorts = {t: name for name, c in config.cohorts.items() for t in c.tenants}

        rows = []
        for name in names:
            if tenant is not None and name != tenant:
                continue
            queue = config.queue(name)
            usage = {r: held.get(name, {}).get(r, 0.0) for r in counted}
            dominant = max(
                (usage[r] / capacity[r] for r in counted if capacity.get(r, 0.0) > 0),
                default=0.0,
            )
            borrowed = {
                r: usage[r] - queue.nominal.get(r, 0.0)
                for r in counted
                if usage[r] > queue.nominal.get(r, 0.0) + EPS
            }
            rows.append(
                TenantStatus(
                    tenant=name,
                    weight=queue.weight,
                    cohort=cohorts.get(name),
                    nominal=dict(queue.nominal),
                    borrowing_limit=queue.borrowing_limit,
                    lending_limit=queue.lending_limit,
                    running=jobs.get(name, {}).get(RUNNING, 0),
                    queued=jobs.get(name, {}).get(QUEUED, 0),
                    usage=usage,
                    borrowed=borrowed,
                    dominant_share=dominant,
                    fair_share=dominant / queue.weight,
                    weight_share=queue.weight / total_weight,
                    decayed_usage=decayed.get(name, {}),
                )
            )
        used: dict[str, float] = {}
        for mine in held.values():
            for k, v in mine.items():
                used[k] = used.get(k, 0.0) + v
        cluster = ClusterStatus(
            capacity=capacity,
            usage=used,
            running=sum(j.get(RUNNING, 0) for j in jobs.values()),
            queued=sum(j.get(QUEUED, 0) for j in jobs.values()),
            workers=len(workers),
        )
        return QueueStatus(resources=counted, tenants=rows, cluster=cluster)

    # -- why ------------------------------------------------------------------------------

    def why(self, job_id: int, *, tenant: str | None = None) -> Why:
        """Where job ``job_id`` stands (JobNotFound outside ``tenant``, when given): a queued
        job's place in its tenant's queue and in the cluster's, by admission's order
        (effective priority, then age), and why it waits; a running job's workers; a
        finished job's end."""
        job = self.store.get(job_id, tenant=tenant)
        base: dict[str, Any] = {
            "job_id": job.id,
            "tenant": job.tenant,
            "state": job.state.value,
            "priority": job.priority,
            "resources": dict(job.resources),
            "gang": job.gang,
            "timeout_s": job.timeout_s,
            "placement": job.placement,
        }
        if job.state == JobState.QUEUED:
            return self._why_queued(job, base)
        if job.state == JobState.RUNNING:
            workers = list(job.assigned_workers or ([job.worker] if job.worker else []))
            where = f"on {', '.join(workers)}" if workers else "(not yet placed on a worker)"
            summary = f"job {job.id} is running {where}"
            if job.preempt_requested_at is not None:
                summary += "; it was asked to yield its place (preempted) and is stopping"
            return Why(
                **base,
                summary=summary,
                workers=workers,
                started_at=job.started_at,
                preempt_requested_at=job.preempt_requested_at,
            )
        if job.state == JobState.BLOCKED:
            upstream = self.store.upstream([job.id])[job.id]
            waiting = [u for u in self.store.list_by_ids(upstream) if u.state != JobState.SUCCEEDED]
            listed = ", ".join(f"job {u.id} ({u.state.value})" for u in waiting)
            return Why(**base, summary=f"job {job.id} is blocked: it waits for {listed}")
        summary = f"job {job.id} is {job.state.value}: it has finished"
        if job.error and job.state != JobState.SUCCEEDED:
            summary += f" ({job.error.splitlines()[0][:200]})"
        return Why(
            **base,
            summary=summary,
            started_at=job.started_at,
            finished_at=job.finished_at,
            error=job.error,
        )

    def _why_queued(self, job: Job, base: dict[str, Any]) -> Why:
        now = self.store.clock()
        with self.store.engine.connect() as conn:
            config = self.config(conn)
            every = config.aging.every
            queued_at = job.created_at
            ahead = _ahead(job.id, job.priority, queued_at, every)
            mine = J.c.tenant == job.tenant
            row = conn.execute(
                sa.select(
                    _count(sa.and_(mine, ahead)), _count(mine), _count(ahead), sa.func.count()
                ).where(J.c.state == QUEUED)
            ).one()
            conn.rollback()
        tenant_ahead, tenant_queued, cluster_ahead, cluster_queued = (int(n) for n in row)
        candidate = Candidate(
            job.id, job.tenant, job.priority, job.resources, queued_at, job.gang, job.timeout_s
        )
        reason = job.pending_reason
        if job.not_before > now and not reason:
            reason = f"backing off: may start again in {math.ceil(job.not_before - now)} s"
        summary = (
            f"job {job.id} is {ordinal(tenant_ahead + 1)} in {possessive(job.tenant)} queue and "
            f"{ordinal(cluster_ahead + 1)} in the cluster: "
            f"{reason or 'not yet considered by admission'}"
        )
        return Why(
            **base,
            summary=summary,
            pending_reason=job.pending_reason,
            effective_priority=effective_priority(candidate, now, config),
            position_in_tenant=tenant_ahead + 1,
            tenant_queued=tenant_queued,
            position_in_cluster=cluster_ahead + 1,
            cluster_queued=cluster_queued,
        )


def _count(condition: sa.ColumnElement[bool]) -> sa.ColumnElement[int]:
    """How many rows meet ``condition`` (``SUM(CASE ...)``: FILTER is not in every SQLite)."""
    return sa.func.coalesce(sa.func.sum(sa.case((condition, 1), else_=0)), 0)


def _ahead(job_id: int, priority: int, queued_at: float, every: float) -> sa.ColumnElement[bool]:
    """Queued jobs admission orders before this one: a higher effective priority, or the
    same and older (then a smaller id). Every queued job ages at the same rate, so the
    order of ``priority + (now - queued_at) / every`` is that of
    ``priority * every - queued_at``, a plain expression over the row: no time in SQL."""
    if every > 0:
        key = J.c.priority * every - QUEUED_AT
        mine = priority * every - queued_at
        higher = key > mine + EPS
        same = sa.and_(key >= mine - EPS, key <= mine + EPS)
    else:
        higher = J.c.priority > priority
        same = J.c.priority == priority
    older = sa.or_(QUEUED_AT < queued_at, sa.and_(QUEUED_AT == queued_at, J.c.id < job_id))
    return sa.and_(J.c.id != job_id, sa.or_(higher, sa.and_(same, older)))
