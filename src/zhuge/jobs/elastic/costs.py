"""Cost accounting: what each attempt was allocated and for how long, each worker's up-time,
and both turned into money with the pools' prices and billing granularity.

**What is recorded** (store rows, written where the facts happen):

- ``attempt_usage``: a row per attempt that ran, written in the transaction that ends it
  (succeeded, failed, lost, cancelled, released): its tenant, kind, pool (the pool of the
  worker it ran on, ``static`` for a worker no provider runs), the resources it was allocated
  per copy and its gang, the seconds it held them (from its start on a worker to its end),
  allocated resource-seconds (``CPU``, ``GPU`` — a fraction counts as its fraction — and
  ``memory_gb``, times the gang) and its measured CPU-seconds beside them. ``ctx.map`` parts
  run within the job's booking (``zhuge.jobs.fanout``): they are in its allocation already,
  and their CPU time is added to its measured CPU-seconds.
- ``worker_uptime``: an interval per worker process, (worker, pool, resources, started_at,
  ended_at), opened when the autoscaler's census first sees a worker and closed when it
  leaves (``record_uptime``).

**What it costs** (``cost_report``): each pool's up-intervals are billed with its granularity
and minimum at its prices (``zhuge.jobs.elastic.billing.pool_cost``; with ``spot: f`` a
fraction f of the pool's intervals, spread evenly in the order they started, is billed at
the spot price). What attempts used of a pool is their dominant share of one of its workers
(``PoolSpec.worker_fraction``: a ``CPU=2`` job on a ``CPU=4`` worker uses half of it) times
their gang times their seconds; the part of the bill they used is divided among them in that
proportion, so the attempts' charges and the pool's **idle cost** (capacity paid for that no
job used) add up to its bill. **Spot savings**: what the same up-time would have cost less
all on spot (pools with a spot price). Money is in the unit of ``price_per_hour``; attempts
and up-time are clipped to the period asked for.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from zhuge.jobs import schema

if TYPE_CHECKING:
    from zhuge.jobs.elastic.pools import PoolSpec
    from zhuge.jobs.model import Worker
    from zhuge.jobs.store import JobStore

STATIC_POOL = "static"
"""The pool of workers no provider runs (``zhuge worker``): up-time recorded, never scaled."""
BY = ("tenant", "kind", "pool", "day", "job")

U = schema.attempt_usage
W = schema.worker_uptime


# -- recording ------------------------------------------------------------------------------


def usage_row(
    job: Mapping[str, Any], *, ended_at: float, outcome: str, cpu_seconds: float = 0.0
) -> dict[str, Any] | None:
    """The ``attempt_usage`` row of an attempt ending now, from its job row's columns
    (``id``, ``attempt``, ``tenant``, ``kind``, ``resources``, ``gang``, ``started_at``,
    ``worker``); None for an attempt no worker started (it held nothing on a worker)."""
    started = job.get("started_at")
    if started is None:
        return None
    held = max(0.0, float(ended_at) - float(started))
    resources = {k: float(v) for k, v in (job.get("resources") or {}).items()}
    gang = int(job.get("gang") or 1)
    return {
        "job_id": job["id"],
        "attempt": job["attempt"],
        "tenant": job["tenant"],
        "kind": job["kind"],
        "b_worker": job.get("worker") or "",
        "worker": job.get("worker"),
        "outcome": outcome,
        "started_at": float(started),
        "ended_at": float(ended_at),
        "resources": resources,
        "gang": gang,
        "cpu_alloc_seconds": resources.get("CPU", 0.0) * gang * held,
        "gpu_alloc_seconds": resources.get("GPU", 0.0) * gang * held,
        "memory_gb_seconds": resources.get("memory_gb", 0.0) * gang * held,
        "cpu_seconds": float(cpu_seconds or 0.0),
    }


def _pool_of_worker() -> sa.ColumnElement[Any]:
    """The pool of the worker an attempt ran on: its open up-time interval's (latest first),
    else ``static``."""
    pool = (
        sa.select(W.c.pool)
        .where(W.c.worker == sa.bindparam("b_worker"))
        .order_by(W.c.id.desc())
        .limit(1)
        .scalar_subquery()
    )
    return sa.func.coalesce(pool, STATIC_POOL)


_RECORD = U.insert().values(pool=_pool_of_worker())


def record_usage(conn: Connection, rows: Iterable[dict[str, Any] | None]) -> None:
    """Insert the usage rows of attempts ending in ``conn``'s transaction (None: skipped)."""
    batch = [r for r in rows if r is not None]
    if batch:
        conn.execute(_RECORD, batch)


def record_uptime(
    store: JobStore, live: Sequence[Worker], pools: Mapping[str, str], now: float
) -> None:
    """Bring ``worker_uptime`` in step with the census: open an interval for each live worker
    without one (its pool from ``pools``, address → pool, else ``static``), and close the
    open intervals of workers no longer live, at the time they were last seen (``now`` if
    unknown). Run by one process at a time (the autoscaler's lease holder)."""
    from zhuge.jobs.store import transaction

    seen = {w.address: w for w in live}
    with store.engine.connect() as conn:  # most turns change nothing: no write transaction
        was_open = set(conn.execute(sa.select(W.c.worker).where(W.c.ended_at.is_(None))).scalars())
        conn.rollback()
    if was_open == set(seen):
        return
    with transaction(store.engine) as conn:
        open_rows = conn.execute(sa.select(W.c.id, W.c.worker).where(W.c.ended_at.is_(None))).all()
        is_open = {r.worker for r in open_rows}
        gone = [r for r in open_rows if r.worker not in seen]
        if gone:
            last = dict(
                conn.execute(
                    sa.select(schema.workers.c.address, schema.workers.c.last_seen).where(
                        schema.workers.c.address.in_([r.worker for r in gone])
                    )
                ).all()
            )
            conn.execute(
                W.update()
                .where(W.c.id == sa.bindparam("b_id"))
                .values(ended_at=sa.bindparam("b_end")),
                [{"b_id": r.id, "b_end": min(now, last.get(r.worker) or now)} for r in gone],
            )
        fresh = [w for a, w in seen.items() if a not in is_open]
        if fresh:
            conn.execute(
                W.insert(),
                [
                    {
                        "worker": w.address,
                        "pool": pools.get(w.address, STATIC_POOL),
                        "resources": dict(w.resources),
                        "started_at": now,
                        "ended_at": None,
                    }
                    for w in fresh
                ],
            )


def close_uptime(store: JobStore, workers: Iterable[str], now: float) -> None:
    """Close the open intervals of ``workers`` (retired, or stopped with their platform)."""
    from zhuge.jobs.store import transaction

    addresses = list(workers)
    if not addresses:
        return
    with transaction(store.engine) as conn:
        conn.execute(
            W.update().where(W.c.worker.in_(addresses), W.c.ended_at.is_(None)).values(ended_at=now)
        )


# -- reading --------------------------------------------------------------------------------


@dataclass(frozen=True)
class AttemptUsage:
    job_id: int
    attempt: int
    tenant: str
    kind: str
    pool: str
    worker: str | None
    outcome: str
    started_at: float
    ended_at: float
    resources: dict[str, float]
    gang: int
    cpu_alloc_seconds: float
    gpu_alloc_seconds: float
    memory_gb_seconds: float
    cpu_seconds: float

    @property
    def seconds(self) -> float:
        return self.ended_at - self.started_at


@dataclass(frozen=True)
class Uptime:
    worker: str
    pool: str
    resources: dict[str, float]
    started_at: float
    ended_at: float | None


def attempts(
    store: JobStore, *, since: float | None = None, tenant: str | None = None
) -> list[AttemptUsage]:
    """Usage rows of attempts that ended since ``since`` (of ``tenant`` alone if given)."""
    query = sa.select(U).order_by(U.c.id)
    if since is not None:
        query = query.where(U.c.ended_at >= since)
    if tenant is not None:
        query = query.where(U.c.tenant == tenant)
    with store.engine.connect() as conn:
        return [
            AttemptUsage(
                **{
                    f: (dict(r._mapping[f]) if f == "resources" else r._mapping[f])
                    for f in AttemptUsage.__dataclass_fields__
                }
            )
            for r in conn.execute(query)
        ]


def uptimes(store: JobStore, *, since: float | None = None) -> list[Uptime]:
    """Up-time intervals that were open at any time since ``since``."""
    query = sa.select(W).order_by(W.c.id)
    if since is not None:
        query = query.where(sa.or_(W.c.ended_at.is_(None), W.c.ended_at >= since))
    with store.engine.connect() as conn:
        return [
            Uptime(r.worker, r.pool, dict(r.resources), r.started_at, r.ended_at)
            for r in conn.execute(query)
        ]


def usage_totals(store: JobStore) -> dict[str, Any]:
    """Totals for the Prometheus counters: allocated resource-seconds and measured CPU-seconds
    per (tenant, pool), and worker up-seconds per pool (open intervals counted to now)."""
    now = store.clock()
    with store.engine.connect() as conn:
        by_tenant = conn.execute(
            sa.select(
                U.c.tenant,
                U.c.pool,
                sa.func.sum(U.c.cpu_alloc_seconds),
                sa.func.sum(U.c.gpu_alloc_seconds),
                sa.func.sum(U.c.memory_gb_seconds),
                sa.func.sum(U.c.cpu_seconds),
            ).group_by(U.c.tenant, U.c.pool)
        ).all()
        up = conn.execute(
            sa.select(
                W.c.pool, sa.func.sum(sa.func.coalesce(W.c.ended_at, now) - W.c.started_at)
            ).group_by(W.c.pool)
        ).all()
    return {
        "allocated": {
            (t, p): {"CPU": float(c or 0), "GPU": float(g or 0), "memory_gb": float(m or 0)}
            for t, p, c, g, m, _ in by_tenant
        },
        "cpu_seconds": {(t, p): float(s or 0) for t, p, _, _, _, s in by_tenant},
        "uptime_seconds": {p: max(0.0, float(s or 0)) for p, s in up},
    }


# -- money ----------------------------------------------------------------------------------


@dataclass
class CostLine:
    """One row of a cost report: a group (a tenant, kind, pool or day) and what it cost."""

    key: str
    cost: float = 0.0
    attempts: int = 0
    allocated: dict[str, float] = field(default_factory=dict)
    """Resource-seconds allocated (CPU, GPU, memory_gb)."""
    cpu_seconds: float = 0.0
    """Measured."""


@dataclass
class CostReport:
    by: str
    since: float | None
    until: float
    lines: list[CostLine]
    total: float
    """What attempts were charged, summed over ``lines``."""
    capacity_cost: float | None
    """What the pools' workers cost over the period (None for a member: the cluster's)."""
    idle_cost: float | None
    """Capacity paid for that no job used."""
    spot_savings: float | None
    """What the same up-time would have cost less all on spot (pools with a spot price)."""
    pools: dict[str, dict[str, float | None]]
    """Per pool: cost, charged, idle_cost, spot_would_save, up_s, billed_s, used_worker_s."""
    unpriced_pools: list[str]
    """Pools with attempts or up-time that the pools in force do not name (charged 0)."""

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["since"] = _iso(self.since)
        out["until"] = _iso(self.until)
        return out


def _iso(at: float | None) -> str | None:
    return None if at is None else datetime.fromtimestamp(at, UTC).isoformat()


def _group_key(by: str, usage: AttemptUsage) -> str:
    if by == "day":
        return datetime.fromtimestamp(usage.ended_at, UTC).strftime("%Y-%m-%d")
    if by == "job":
        return str(usage.job_id)
    return str(getattr(usage, by))


def used_worker_seconds(usage: AttemptUsage, pool: PoolSpec, since: float | None) -> float:
    """Worker-seconds an attempt used of ``pool``: its dominant share of one worker, times
    its gang, times its seconds within the period."""
    start = max(usage.started_at, since) if since is not None else usage.started_at
    return pool.worker_fraction(usage.resources) * usage.gang * max(0.0, usage.ended_at - start)


def _spot_flags(count: int, fraction: float) -> list[bool]:
    """Which of ``count`` intervals ran on spot: ``fraction`` of them, spread evenly."""
    return [math.floor((i + 1) * fraction + 1e-9) > math.floor(i * fraction + 1e-9)
            for i in range(count)]  # fmt: skip


def cost_report(
    attempts_: Sequence[AttemptUsage],
    uptime: Sequence[Uptime],
    pools: Mapping[str, PoolSpec],
    *,
    by: str = "tenant",
    since: float | None,
    until: float,
    tenant: str | None = None,
) -> CostReport:
    """Money from usage rows and up-times (see the module's docstring), from every attempt
    and up-interval of the period. A member's report (``tenant``) has that tenant's lines
    only, without the cluster's capacity, idle cost or savings."""
    from zhuge.jobs.elastic import billing

    if by not in BY:
        from zhuge.errors import InvalidRequest

        raise InvalidRequest(f"by {by!r}: choose one of {', '.join(BY)}")
    used: dict[str, float] = {}
    for usage in attempts_:
        pool = pools.get(usage.pool)
        if pool is not None:
            used[usage.pool] = used.get(usage.pool, 0.0) + used_worker_seconds(usage, pool, since)
    intervals: dict[str, list[billing.UpInterval]] = {}
    for up in sorted(uptime, key=lambda u: (u.started_at, u.worker)):
        start = max(up.started_at, since) if since is not None else up.started_at
        end = min(up.ended_at if up.ended_at is not None else until, until)
        if end > start:
            intervals.setdefault(up.pool, []).append(billing.UpInterval(up.worker, start, end))
    bills: dict[str, billing.PoolCost] = {}
    for name, spans in intervals.items():
        pool = pools.get(name)
        if pool is None:
            continue
        flags = _spot_flags(len(spans), pool.spot)
        spans = [billing.UpInterval(i.worker, i.start, i.end, spot=f)
                 for i, f in zip(spans, flags, strict=True)]  # fmt: skip
        bills[name] = billing.pool_cost(pool, spans, used.get(name, 0.0))
    # the used part of each bill, per worker-second used
    rate = {
        name: (bill.cost - bill.idle_cost) / bill.used_worker_s if bill.used_worker_s else 0.0
        for name, bill in bills.items()
    }
    lines: dict[str, CostLine] = {}
    charged: dict[str, float] = {}
    for usage in attempts_:
        if tenant is not None and usage.tenant != tenant:
            continue
        pool = pools.get(usage.pool)
        charge = (
            used_worker_seconds(usage, pool, since) * rate.get(usage.pool, 0.0) if pool else 0.0
        )
        charged[usage.pool] = charged.get(usage.pool, 0.0) + charge
        key = _group_key(by, usage)
        line = lines.setdefault(key, CostLine(key))
        line.cost += charge
        line.attempts += 1
        for resource, value in (
            ("CPU", usage.cpu_alloc_seconds),
            ("GPU", usage.gpu_alloc_seconds),
            ("memory_gb", usage.memory_gb_seconds),
        ):
            if value:
                line.allocated[resource] = line.allocated.get(resource, 0.0) + value
        line.cpu_seconds += usage.cpu_seconds
    # job ids in their order (10 after 9), other keys as text
    ordered = sorted(
        lines.values(), key=lambda line: (len(line.key) if by == "job" else 0, line.key)
    )
    total = sum(line.cost for line in ordered)
    if tenant is not None:
        return CostReport(by, since, until, ordered, total, None, None, None, {}, [])
    per_pool: dict[str, dict[str, float | None]] = {}
    for name in sorted(set(intervals) | set(charged)):
        bill = bills.get(name)
        per_pool[name] = {
            "cost": bill.cost if bill else 0.0,
            "charged": charged.get(name, 0.0),
            "idle_cost": bill.idle_cost if bill else 0.0,
            "spot_would_save": bill.spot_would_save if bill else None,
            "up_s": bill.up_s if bill else sum(i.seconds for i in intervals.get(name, [])),
            "billed_s": bill.billed_s if bill else 0.0,
            "used_worker_s": bill.used_worker_s if bill else 0.0,
        }
    return CostReport(
        by,
        since,
        until,
        ordered,
        total,
        capacity_cost=sum(b.cost for b in bills.values()),
        idle_cost=sum(b.idle_cost for b in bills.values()),
        spot_savings=sum(b.spot_would_save or 0.0 for b in bills.values()),
        pools=per_pool,
        unpriced_pools=sorted(n for n in per_pool if n not in pools),
    )


def report(
    store: JobStore,
    settings: Any,
    *,
    by: str = "tenant",
    since: float | None = None,
    tenant: str | None = None,
) -> CostReport:
    """``zhuge costs``: the report since ``since`` with the pools in force (an admin's when
    ``tenant`` is None, else that member tenant's)."""
    from zhuge.jobs.elastic.pool_config import pools_in_force

    config, _ = pools_in_force(store, settings)
    pools = {p.name: p for p in config.pools} if config else {}
    return cost_report(
        attempts(store, since=since),
        uptimes(store, since=since),
        pools,
        by=by,
        since=since,
        until=store.clock(),
        tenant=tenant,
    )
