"""Admission against the store: read a snapshot, ``admission.decide``, write the outcome —
all in one transaction that holds the admission lock.

Whoever claims — a scheduler's turn (``admit``) or a worker's chain of short jobs
(``claim_next``) — goes through here, so the decision is the same one (``zhuge.jobs.admission``
is the policy; this module only reads and writes rows). The lock makes quota checks hold
under concurrency: on PostgreSQL a transaction-scoped advisory lock serialises the admitting
transactions of every scheduler and chain (running ones do not wait on it: heartbeats, commits
and submissions take no such lock); on SQLite every write transaction is already serialised
(``BEGIN IMMEDIATE``).

What the snapshot holds:
- running attempts, each on the workers admission placed it (``assigned_workers``), with its
  time limit (the job's ``timeout_s``, else its kind's);
- for every tenant with queued work, its first ``CANDIDATES_PER_TENANT`` jobs by priority and
  its oldest as many (so an aged low-priority job is seen), whose ``not_before`` has passed:
  admission never needs the whole queue, so 100k queued jobs cost one index range per tenant;
- each tenant's usage decayed over the fair share's half-life (``tenant_usage``), brought up to
  date on each scheduler turn.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from zhuge.jobs import admission, schema
from zhuge.jobs.admission import Candidate, Decision, Running, Snapshot, WorkerSlot
from zhuge.jobs.model import Job, Worker
from zhuge.jobs.states import JobState, LostReason

if TYPE_CHECKING:
    from zhuge.jobs.store import JobStore

log = logging.getLogger(__name__)

J = schema.jobs
CANDIDATES_PER_TENANT = 32
# A chain asks what admission starts on one worker next: each tenant's first few decide that
# (a scheduler's turn, with the full window, places the rest).
CHAIN_CANDIDATES_PER_TENANT = 4
ADMISSION_LOCK = 0x7A6875676561  # "zhugea": the advisory lock key admitting transactions take
USAGE_UPDATE_SECONDS = 1.0  # decayed usage is brought up to date at most this often

_RUNNING_COLUMNS = (
    J.c.id,
    J.c.tenant,
    J.c.kind,
    J.c.priority,
    J.c.resources,
    J.c.gang,
    J.c.assigned_workers,
    J.c.worker,
    J.c.started_at,
    J.c.updated_at,
    J.c.timeout_s,
    J.c.preempt_requested_at,
)
_CANDIDATE_COLUMNS = (
    J.c.id,
    J.c.tenant,
    J.c.kind,
    J.c.priority,
    J.c.resources,
    J.c.gang,
    J.c.created_at,
    J.c.timeout_s,
    J.c.placement,
    J.c.pending_reason,
)


def kind_timeout(kind: str) -> float:
    from zhuge.errors import UnknownKind
    from zhuge.jobs.kinds import DEFAULT_TIMEOUT_S, get_kind

    try:
        return get_kind(kind).timeout_s
    except UnknownKind:
        return DEFAULT_TIMEOUT_S


def claimed_values(
    now: float,
    *,
    owner: str,
    lease_seconds: float,
    worker: str | None = None,
    assigned: Any = None,
) -> dict[str, Any]:
    """The columns of a queued job that a claim turns into a new running attempt, leased by
    ``owner``: started already on ``worker`` (a chain), or not yet (handed to Dask)."""
    return {
        "state": JobState.RUNNING.value,
        "attempt": J.c.attempt + 1,
        "lease_expires_at": now + lease_seconds,
        "lease_owner": owner,
        "worker": worker,
        "started_at": now if worker else None,
        "progress": None,
        "pending_reason": None,
        "preempt_requested_at": None,
        "assigned_workers": assigned,
        "updated_at": now,
    }


@dataclass
class Admitted:
    """What one admitting transaction did."""

    started: list[Job] = field(default_factory=list)
    preempted: list[int] = field(default_factory=list)
    decision: Decision = field(default_factory=Decision)


def _slots(workers: Sequence[Worker]) -> list[WorkerSlot]:
    return [WorkerSlot(w.address, dict(w.resources)) for w in workers]


class Claims:
    def __init__(self, store: JobStore) -> None:
        self.store = store

    # -- the snapshot ---------------------------------------------------------------------

    def _lock(self, conn: Connection) -> None:
        if self.store.is_postgres:
            conn.execute(sa.select(sa.func.pg_advisory_xact_lock(ADMISSION_LOCK)))

    def _running(self, conn: Connection) -> list[Running]:
        out = []
        for r in conn.execute(sa.select(*_RUNNING_COLUMNS).where(J.c.state == "running")):
            workers = tuple(r.assigned_workers or ([r.worker] if r.worker else []))
            out.append(
                Running(
                    job_id=r.id,
                    tenant=r.tenant,
                    priority=r.priority,
                    resources={k: float(v) for k, v in (r.resources or {}).items()},
                    workers=workers,
                    started_at=r.started_at if r.started_at is not None else r.updated_at,
                    timeout_s=r.timeout_s or kind_timeout(r.kind),
                    preempting=r.preempt_requested_at is not None,
                )
            )
        return out

    def _candidates(
        self, conn: Connection, now: float, per_tenant: int = CANDIDATES_PER_TENANT
    ) -> tuple[list[Candidate], dict[int, str]]:
        runnable = sa.and_(J.c.state == JobState.QUEUED.value, J.c.not_before <= now)
        tenants = [r[0] for r in conn.execute(sa.select(J.c.tenant).where(runnable).distinct())]
        rows: dict[int, Any] = {}
        for tenant in tenants:
            mine = sa.and_(runnable, J.c.tenant == tenant)
            for order in ((J.c.priority.desc(), J.c.id), (J.c.id,)):
                query = sa.select(*_CANDIDATE_COLUMNS).where(mine).order_by(*order)
                for r in conn.execute(query.limit(per_tenant)):
                    rows[r.id] = r
        candidates = [
            Candidate(
                job_id=r.id,
                tenant=r.tenant,
                priority=r.priority,
                resources={k: float(v) for k, v in (r.resources or {}).items()},
                queued_at=r.created_at,
                gang=r.gang or 1,
                timeout_s=r.timeout_s or kind_timeout(r.kind),
                placement=r.placement,
            )
            for r in rows.values()
        ]
        return candidates, {r.id: r.pending_reason for r in rows.values()}

    def _usage(self, conn: Connection) -> dict[str, tuple[dict[str, float], float]]:
        U = schema.tenant_usage
        return {r.tenant: (dict(r.usage), r.updated_at) for r in conn.execute(sa.select(U))}

    def _update_usage(
        self,
        conn: Connection,
        usage: dict[str, tuple[dict[str, float], float]],
        running: list[Running],
        config: admission.QueueConfig,
        now: float,
    ) -> dict[str, dict[str, float]]:
        """Bring each tenant's decayed usage up to ``now``, counting what it holds."""
        held: dict[str, dict[str, float]] = {}
        for r in running:
            into = held.setdefault(r.tenant, {})
            for k, v in r.resources.items():
                if k in config.resources:
                    into[k] = into.get(k, 0.0) + v * len(r.workers or (None,))
        U = schema.tenant_usage
        current: dict[str, dict[str, float]] = {}
        for tenant in set(usage) | set(held):
            past, at = usage.get(tenant, ({}, now))
            seconds = now - at
            if tenant in usage and seconds < USAGE_UPDATE_SECONDS:
                current[tenant] = past
                continue
            decayed = admission.decay_usage(
                {tenant: past},
                {tenant: held.get(tenant, {})},
                max(0.0, seconds),
                config.fair_share.half_life,
            ).get(tenant, {})
            current[tenant] = decayed
            conn.execute(U.delete().where(U.c.tenant == tenant))
            conn.execute(U.insert().values(tenant=tenant, usage=decayed, updated_at=now))
        return current

    def _decide(
        self,
        conn: Connection,
        workers: Sequence[Worker],
        now: float,
        *,
        update_usage: bool,
        per_tenant: int = CANDIDATES_PER_TENANT,
    ) -> tuple[Decision, dict[int, str], list[Running]]:
        config = self.store.queues.config(conn)
        running = self._running(conn)
        candidates, reasons = self._candidates(conn, now, per_tenant)
        usage = self._usage(conn)
        if update_usage:
            decayed = self._update_usage(conn, usage, running, config, now)
        else:
            decayed = {t: u for t, (u, _) in usage.items()}
        snapshot = Snapshot(now, _slots(workers), running, candidates, decayed)
        decision = admission.decide(snapshot, config)
        return decision, reasons, running

    # -- a scheduler's turn ---------------------------------------------------------------

    def admit(self, *, owner: str, workers: Sequence[Worker], lease_seconds: float) -> Admitted:
        """Decide and record: claim the attempts to start (running, leased by ``owner``,
        placed on their workers, not yet started), ask the victims of a reclaim to yield, and
        write each waiting job's reason. The caller hands the started ones to Dask."""
        store = self.store
        mine = {w.address for w in workers}
        # Attempts' time limits come from their kinds: find them before taking the lock (the
        # first lookup in a process imports every kind's module, seconds under load).
        from zhuge.jobs.kinds import all_kinds

        all_kinds()
        with store._tx() as conn:
            self._lock(conn)
            now = store.clock()
            # The decision is the cluster's, over every live worker any scheduler reported
            # (they may share one Dask cluster or each have their own); this scheduler claims
            # the part it can hand to its own Dask, and leaves the rest to the others.
            census = {w.address: w for w in store._live_workers(conn, now)}
            census.update({w.address: w for w in workers})
            decision, reasons, _ = self._decide(conn, list(census.values()), now, update_usage=True)
            placed = {i: w for i, w in decision.started().items() if set(w) <= mine}
            if placed:
                conn.execute(
                    J.update()
                    .where(J.c.id == sa.bindparam("b_id"), J.c.state == JobState.QUEUED.value)
                    .values(
                        claimed_values(
                            now,
                            owner=owner,
                            lease_seconds=lease_seconds,
                            assigned=sa.bindparam("b_workers", type_=sa.JSON),
                        )
                    ),
                    [{"b_id": i, "b_workers": list(w)} for i, w in placed.items()],
                )
                rows = conn.execute(
                    sa.select(J).where(J.c.id.in_(list(placed)), J.c.lease_owner == owner)
                ).all()
                started = sorted((store._job(r) for r in rows), key=lambda j: (-j.priority, j.id))
                store._event(
                    conn,
                    [
                        (
                            j.id,
                            j.attempt,
                            JobState.QUEUED,
                            JobState.RUNNING,
                            f"claimed by {owner}; placed on {', '.join(j.assigned_workers or [])}",
                        )
                        for j in started
                    ],
                    now,
                )
            else:
                started = []
            preempted = self._ask_to_yield(conn, decision, now)
            changed = [
                {"b_id": i, "b_reason": why}
                for i, why in decision.waiting.items()
                if reasons.get(i) != why
            ]
            if changed:
                conn.execute(
                    J.update()
                    .where(J.c.id == sa.bindparam("b_id"), J.c.state == JobState.QUEUED.value)
                    .values(pending_reason=sa.bindparam("b_reason")),
                    changed,
                )
        return Admitted(started, preempted, decision)

    def _ask_to_yield(self, conn: Connection, decision: Decision, now: float) -> list[int]:
        """Set ``preempt_requested_at`` on the victims: each attempt sees it at its next
        heartbeat and stops; one that does not within the grace period is given up."""
        out = []
        for p in decision.preempt:
            row = conn.execute(
                J.update()
                .where(
                    J.c.id == p.job_id,
                    J.c.state == JobState.RUNNING.value,
                    J.c.preempt_requested_at.is_(None),
                )
                .values(preempt_requested_at=now)
                .returning(J.c.attempt)
            ).first()
            if row is None:
                continue
            out.append(p.job_id)
            self.store._event(
                conn,
                [
                    (
                        p.job_id,
                        row.attempt,
                        JobState.RUNNING,
                        JobState.RUNNING,
                        f"asked to yield: {p.reason}",
                        LostReason.PREEMPTED,
                    )
                ],
                now,
            )
        return out

    def give_up_preempted(self, grace: float | None = None) -> list[Job]:
        """Attempts asked to yield more than the grace period ago that still hold their
        place: lost (``preempted``), so their resources go to the job that reclaimed them.
        If the code still runs somewhere, its next heartbeat finds the attempt gone."""
        store = self.store
        if grace is None:
            grace = store.queues.config().preemption.grace
        now = store.clock()
        with store.engine.connect() as conn:
            overdue = conn.execute(
                sa.select(J.c.id, J.c.attempt).where(
                    J.c.state == JobState.RUNNING.value,
                    J.c.preempt_requested_at < now - grace,
                )
            ).all()
            conn.rollback()
        out = []
        for r in overdue:
            job = store.lose_attempt(
                r.id,
                r.attempt,
                LostReason.PREEMPTED,
                f"preempted: it did not stop within the grace period ({grace:g}s)",
            )
            if job is not None:
                out.append(job)
        return out

    def demand(self) -> list[admission.Demand]:
        """What admission would start now if workers had room, by resource shape: the
        queued jobs that wait only for capacity (not for quota), counted per shape and gang.
        Read-only; what an autoscaler asks (the elastic-capacity issue)."""
        store = self.store
        with store.engine.connect() as conn:
            now = store.clock()
            decision, _, _ = self._decide(
                conn, store._live_workers(conn, now), now, update_usage=False
            )
            conn.rollback()
        return decision.demand

    # -- a worker's chain -----------------------------------------------------------------

    def claim_next(
        self,
        conn: Connection,
        *,
        owner: str,
        worker: str,
        lease_seconds: float,
        resources: dict[str, float],
    ) -> Job | None:
        """Within ``conn`` (which may have just committed the previous job's result): the
        job admission would start now on ``worker`` needing exactly ``resources``, claimed
        and started there; None if admission starts no such job. Only a one-copy job is
        chained; everything else waits for a scheduler's turn."""
        store = self.store
        self._lock(conn)
        now = store.clock()
        workers = store._live_workers(conn, now)
        if not any(w.address == worker for w in workers):
            return None
        decision, _, _ = self._decide(
            conn, workers, now, update_usage=False, per_tenant=CHAIN_CANDIDATES_PER_TENANT
        )
        wanted = {k: float(v) for k, v in resources.items()}
        ids = [s.job_id for s in decision.start if s.workers == (worker,)]
        if not ids:
            return None
        rows = conn.execute(sa.select(J.c.id, J.c.resources, J.c.gang).where(J.c.id.in_(ids))).all()
        fitting = {
            r.id
            for r in rows
            if (r.gang or 1) == 1 and {k: float(v) for k, v in r.resources.items()} == wanted
        }
        job_id = next((i for i in ids if i in fitting), None)
        if job_id is None:
            return None
        claimed = conn.execute(
            J.update()
            .where(J.c.id == job_id, J.c.state == JobState.QUEUED.value)
            .values(
                claimed_values(
                    now, owner=owner, lease_seconds=lease_seconds, worker=worker, assigned=[worker]
                )
            )
            .returning(*J.c)
        ).first()
        if claimed is None:
            return None
        job = store._job(claimed)
        message = f"claimed by {owner}, chained on {worker}"
        store._event(conn, [(job.id, job.attempt, JobState.QUEUED, JobState.RUNNING, message)], now)
        return job
