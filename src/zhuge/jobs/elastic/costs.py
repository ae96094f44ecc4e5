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

**What it costs** (``cost_report``): each up-interval of a pool's worker is billed with its
pool's granularity and minimum (``zhuge.jobs.elastic.billing``) at its price per hour (the
pool's spot fraction at the spot price). An attempt is charged for the dominant share of its
worker it held (``PoolSpec.worker_fraction``: a ``CPU=2`` job on a ``CPU=4`` worker pays half
the worker's price while it runs), times its gang. A pool's **idle cost** is what its
workers cost beyond what attempts were charged: capacity paid for that no job used. **Spot
savings** is what the same up-time would have cost less at the spot price (where the pool has
one). Money is in the unit of ``price_per_hour``.
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
BY = ("tenant", "kind", "pool", "day")

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
    """What the pools' workers cost over the period (None for a member: not its to see)."""
    idle_cost: float | None
    """Capacity paid for that no job used: ``capacity_cost`` less what attempts were charged
    in pools with prices."""
    spot_savings: float | None
    """What the same up-time would have cost less at each pool's spot price."""
    pools: dict[str, dict[str, float]]
    """Per pool: capacity cost, charged, idle, spot savings, up-seconds (admins only)."""
    unpriced_pools: list[str]
    """Pools with attempts or up-time but no price in the pools configuration."""

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
    return str(getattr(usage, by))


def _clipped(start: float, end: float, since: float | None) -> tuple[float, float]:
    return (max(start, since) if since is not None else start), end


def attempt_charge(usage: AttemptUsage, pool: PoolSpec | None, since: float | None) -> float:
    """What one attempt is charged: the dominant share of its pool's worker it held, times
    its gang, for the seconds it held it (within the period), at the pool's blended price."""
    if pool is None:
        return 0.0
    start, end = _clipped(usage.started_at, usage.ended_at, since)
    seconds = max(0.0, end - start)
    share = pool.worker_fraction(usage.resources) * usage.gang
    return share * seconds / 3600.0 * blended_price(pool)


def blended_price(pool: PoolSpec) -> float:
    """A worker's price per hour with the pool's spot fraction at the spot price."""
    prices = pool.price_per_hour
    spot = prices.spot if prices.spot is not None else prices.on_demand
    return (1.0 - pool.spot) * prices.on_demand + pool.spot * spot


def interval_cost(
    pool: PoolSpec, start: float, end: float, *, price_per_hour: float | None = None
) -> float:
    """What one up-interval of one worker is billed: its seconds rounded up to the pool's
    granularity, never under its minimum, at ``price_per_hour`` (default: blended)."""
    from zhuge.jobs.elastic import billing

    price = blended_price(pool) if price_per_hour is None else price_per_hour
    return billing.interval_cost(max(0.0, end - start), pool.billing, price)


def cost_report(
    attempts_: Sequence[AttemptUsage],
    uptime: Sequence[Uptime],
    pools: Mapping[str, PoolSpec],
    *,
    by: str = "tenant",
    since: float | None,
    until: float,
    member: bool = False,
) -> CostReport:
    """Money from usage rows and up-times (``cost_report`` in the module's docstring). A
    ``member`` report leaves out capacity, idle cost and spot savings: they are the whole
    cluster's."""
    if by not in BY:
        from zhuge.errors import InvalidRequest

        raise InvalidRequest(f"--by {by!r}: choose one of {', '.join(BY)}")
    lines: dict[str, CostLine] = {}
    charged: dict[str, float] = {}
    unpriced: set[str] = set()
    for usage in attempts_:
        pool = pools.get(usage.pool)
        if pool is None:
            unpriced.add(usage.pool)
        charge = attempt_charge(usage, pool, since)
        charged[usage.pool] = charged.get(usage.pool, 0.0) + charge
        line = lines.setdefault(_group_key(by, usage), CostLine(_group_key(by, usage)))
        line.cost += charge
        line.attempts += 1
        for name, value in (
            ("CPU", usage.cpu_alloc_seconds),
            ("GPU", usage.gpu_alloc_seconds),
            ("memory_gb", usage.memory_gb_seconds),
        ):
            if value:
                line.allocated[name] = line.allocated.get(name, 0.0) + value
        line.cpu_seconds += usage.cpu_seconds
    per_pool: dict[str, dict[str, float]] = {}
    for up in uptime:
        pool = pools.get(up.pool)
        start, end = _clipped(up.started_at, up.ended_at if up.ended_at else until, since)
        if end <= start:
            continue
        row = per_pool.setdefault(
            up.pool,
            {"capacity_cost": 0.0, "charged": 0.0, "idle_cost": 0.0, "spot_savings": 0.0,
             "up_seconds": 0.0},
        )  # fmt: skip
        row["up_seconds"] += end - start
        if pool is None:
            unpriced.add(up.pool)
            continue
        row["capacity_cost"] += interval_cost(pool, start, end)
        if pool.price_per_hour.spot is not None:
            on_demand = interval_cost(
                pool, start, end, price_per_hour=pool.price_per_hour.on_demand
            )
            at_spot = interval_cost(pool, start, end, price_per_hour=pool.price_per_hour.spot)
            row["spot_savings"] += max(0.0, on_demand - at_spot) * (1.0 - pool.spot)
    for name, row in per_pool.items():
        row["charged"] = charged.get(name, 0.0)
        row["idle_cost"] = max(0.0, row["capacity_cost"] - row["charged"])
    ordered = sorted(lines.values(), key=lambda line: line.key)
    total = sum(line.cost for line in ordered)
    if member:
        return CostReport(by, since, until, ordered, total, None, None, None, {}, [])
    return CostReport(
        by,
        since,
        until,
        ordered,
        total,
        capacity_cost=sum(r["capacity_cost"] for r in per_pool.values()),
        idle_cost=sum(r["idle_cost"] for r in per_pool.values()),
        spot_savings=sum(r["spot_savings"] for r in per_pool.values()),
        pools=per_pool,
        unpriced_pools=sorted(p for p in unpriced if p in per_pool or p in charged),
    )


def billed_hours(seconds: float, granularity: str, minimum_s: float) -> float:
    """Hours billed for an up-interval of ``seconds`` (a fallback and a check on billing)."""
    seconds = max(seconds, minimum_s)
    unit = 3600.0 if granularity == "hour" else 1.0
    return math.ceil(seconds / unit - 1e-9) * unit / 3600.0
