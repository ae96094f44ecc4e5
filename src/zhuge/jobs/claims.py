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

import dataclasses
import logging
import uuid
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
NEWER = J.alias("newer")
CANDIDATES_PER_TENANT = 32
# How many jobs admission plans to follow each chainable attempt (``Decision.chains``): a
# worker's chain takes them one statement each, and comes back to a full decision (under the
# lock) only when its plan is spent or stale. A scheduler's turn replaces every plan; a
# chain's decision, the plan of its group.
CHAIN_PLAN_DEPTH = 16
ADMISSION_LOCK = 0x7A6875676561  # "zhugea": the advisory lock key admitting transactions take
USAGE_UPDATE_SECONDS = 1.0  # decayed usage is brought up to date at most this often

_RUNNING_COLUMNS = (
    J.c.id,
    J.c.attempt,
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
    J.c.chain_plan,
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
        "started_at": now if worker is not None else None,
        "progress": None,
        "pending_reason": None,
        "preempt_requested_at": None,
        "assigned_workers": assigned,
        "chain_plan": None,
        "updated_at": now,
    }


# A worker's chain claims with prepared statements (built once: building a statement costs
# more than running it): which planned jobs are still queued, and the claim of one of them,
# refused if a job queued after the plan was made (id above b_seen) has a higher priority.
# The tenants with queued jobs, by a loose scan of ix_jobs_tenant_queue: one index probe per
# tenant, where SELECT DISTINCT reads every queued row (both SQLite and PostgreSQL).
_QUEUED_TENANTS = sa.text(
    """
    WITH RECURSIVE queued(tenant) AS (
        SELECT min(tenant) FROM jobs WHERE state = 'queued'
        UNION ALL
        SELECT (SELECT min(j.tenant) FROM jobs j WHERE j.state = 'queued' AND j.tenant > q.tenant)
        FROM queued q WHERE q.tenant IS NOT NULL
    )
    SELECT tenant FROM queued WHERE tenant IS NOT NULL
    """
)
_STILL_QUEUED = sa.select(J.c.id).where(
    J.c.id.in_(sa.bindparam("b_ids", expanding=True)),
    J.c.state == JobState.QUEUED.value,
    J.c.not_before <= sa.bindparam("b_now"),
)
_STATE = sa.select(J.c.state).where(J.c.id == sa.bindparam("b_id"))


def _newer_first(priority: Any) -> sa.Select[Any]:
    """Jobs queued after the plan was made (id above b_seen) that outrank ``priority``."""
    return sa.select(NEWER.c.id).where(
        NEWER.c.id > sa.bindparam("b_seen"),
        NEWER.c.state == JobState.QUEUED.value,
        NEWER.c.priority > priority,
    )


_NEWER_FIRST = _newer_first(J.c.priority)


def _claim_on_worker(target: Any, *, checked: bool = False) -> sa.Update:
    """The claim of the queued job ``target`` (an id, or a query of one that ``checked``
    it is runnable and locked it) on a worker."""
    runnable = (
        ()
        if checked
        else (
            J.c.state == JobState.QUEUED.value,
            J.c.not_before <= sa.bindparam("b_now"),
            ~sa.exists(_NEWER_FIRST),
        )
    )
    return (
        J.update()
        .where(J.c.id == target, *runnable)
        .values(
            {
                **claimed_values(
                    sa.bindparam("b_now"),  # type: ignore[arg-type]
                    owner=sa.bindparam("b_owner"),  # type: ignore[arg-type]
                    lease_seconds=0.0,
                    worker=sa.bindparam("b_worker"),  # type: ignore[arg-type]
                    assigned=sa.bindparam("b_assigned", type_=sa.JSON),
                ),
                "lease_expires_at": sa.bindparam("b_lease"),
                "chain_plan": sa.bindparam("b_plan", type_=sa.JSON),
            }
        )
        .returning(*J.c)
    )


_CLAIM_ON_WORKER = _claim_on_worker(sa.bindparam("b_id"))
_PLANNED = J.alias("planned")
_PLAN_IDS = sa.bindparam("b_ids", type_=sa.ARRAY(sa.BigInteger))
_CLAIM_FIRST_PLANNED = _claim_on_worker(
    sa.select(_PLANNED.c.id)
    .where(
        _PLANNED.c.id == sa.any_(_PLAN_IDS),
        _PLANNED.c.state == JobState.QUEUED.value,
        _PLANNED.c.not_before <= sa.bindparam("b_now"),
        ~sa.exists(_newer_first(_PLANNED.c.priority)),
    )
    .order_by(sa.func.array_position(_PLAN_IDS, _PLANNED.c.id))
    .limit(1)
    .with_for_update(skip_locked=True)
    .scalar_subquery(),
    checked=True,
)
"""PostgreSQL: the first job of a plan still queued (rows other transactions hold are
skipped), claimed in the same statement; one round trip where SQLite takes two. Every
condition is in the subquery, so only the row it claims is locked: a claim that finds none
holds no row (the chain then decides in the same transaction, waiting for the admission
lock, which a turn holding that lock must never wait behind)."""


def _store_plan(target: Any) -> sa.Update:
    return (
        J.update()
        .where(
            J.c.id == target,
            J.c.attempt == sa.bindparam("b_attempt"),
            J.c.state == JobState.RUNNING.value,
        )
        .values(chain_plan=sa.bindparam("b_plan", type_=sa.JSON))
    )


_HELD = J.alias("held")
_STORE_PLAN = _store_plan(sa.bindparam("b_id"))
_STORE_PLAN_UNLESS_HELD = _store_plan(
    sa.select(_HELD.c.id)
    .where(_HELD.c.id == sa.bindparam("b_id"))
    .with_for_update(skip_locked=True)
    .scalar_subquery()
)
"""A chain plan written on a running attempt; on PostgreSQL not if another transaction holds
its row (``Claims._store_plans``)."""


def _window(*order: Any) -> sa.Subquery:
    return (
        sa.select(*_CANDIDATE_COLUMNS)
        .where(
            J.c.state == JobState.QUEUED.value,
            J.c.not_before <= sa.bindparam("b_now"),
            J.c.tenant == sa.bindparam("b_tenant"),
        )
        .order_by(*order)
        .limit(sa.bindparam("b_limit"))
        .subquery()
    )


_BY_PRIORITY, _BY_AGE = _window(J.c.priority.desc(), J.c.id), _window(J.c.id)
_TENANT_WINDOWS = sa.union_all(
    sa.select(_BY_PRIORITY, sa.literal_column("0").label("by_age")),
    sa.select(_BY_AGE, sa.literal_column("1").label("by_age")),
)
"""A tenant's two windows of candidates in one statement: its first ``b_limit`` queued jobs
by priority and its oldest as many (each an index range, see ``Claims._candidates``)."""


@dataclass
class Admitted:
    """What one admitting transaction did."""

    started: list[Job] = field(default_factory=list)
    preempted: list[int] = field(default_factory=list)
    decision: Decision = field(default_factory=Decision)
    unseen: bool = False
    """Some tenant has queued jobs beyond the candidates this decision read (its window was
    full): a turn right after may find more to start, if workers still have room."""
    raced: bool = False
    """A job it placed was taken by a chain meanwhile and no twin was left to start in its
    place: its worker may still be free, and a turn right after will see it."""


@dataclass(frozen=True)
class ChainPlan:
    """A group's chain plan (``admission.ChainGroup``) as stored in ``jobs.chain_plan`` on
    each attempt of the group: the group, the jobs, (job id, tenant) in order, and the
    newest job id the decision saw. A job queued since with a higher priority than the one
    a chain would take makes the plan stale: the chain then asks for a decision instead (so
    a job submitted after the plan is not overtaken by it). A chain that takes a planned job
    passes the plan on to it, unchanged."""

    group: str
    seen: int
    jobs: tuple[tuple[int, str], ...]

    @classmethod
    def load(cls, stored: Any) -> ChainPlan | None:
        if not stored:
            return None
        jobs = tuple((int(i), str(t)) for i, t in stored["jobs"])
        return cls(str(stored["group"]), int(stored["seen"]), jobs)

    def dump(self) -> dict[str, Any] | None:
        if not self.jobs:
            return None
        return {"group": self.group, "seen": self.seen, "jobs": [list(j) for j in self.jobs]}


@dataclass(frozen=True)
class _ChainAsk:
    """A worker's chain asking for a decision: its worker, the resources its attempts
    hold, and the group of the plan it spent (``ChainPlan.group``; None when it had none)."""

    worker: str
    resources: dict[str, float]
    group: str | None = None


def _mates(running: Sequence[Running], chain: _ChainAsk) -> list[Running]:
    """The chains a chain's decision plans for besides its own: other chainable attempts
    of its shape on one worker each, those that shared its spent plan first, up to a group
    (``admission.CHAIN_GROUP``). Chains of one shape take jobs from the same head of the
    queue: planned apart, each plan would be spent by the others. Not only the plan's
    sharers, or chains parted once (a row held while a plan was written) stay apart."""
    shape = _shape(chain.resources)
    others = [
        r
        for r in running
        if r.chainable
        and len(r.workers) == 1
        and r.workers[0] != chain.worker
        and _shape(r.resources) == shape
    ]
    others.sort(key=lambda r: (r.plan_group != chain.group, r.workers[0], r.job_id))
    return others[: admission.CHAIN_GROUP - 1]


@dataclass
class _Seen:
    """What one snapshot read: the newest job id, the running attempts, and each one's
    attempt number and stored chain plan (to write only the plans that changed); the
    candidates (for ``_twins``) and whether a tenant's window of them was full."""

    newest: int
    running: list[Running]
    attempts: dict[int, int]
    plans: dict[int, Any]
    unseen: bool = False
    candidates: list[Candidate] = field(default_factory=list)


def _shape(resources: Any) -> tuple[tuple[str, float], ...]:
    return tuple(sorted((k, float(v)) for k, v in (resources or {}).items() if v))


def _twins(decision: Decision, seen: _Seen, job_id: int) -> list[int]:
    """The jobs ``decision`` left waiting that it cannot tell from the started ``job_id``
    (one copy each, the same tenant, resources, time limit and placement: the same quota,
    share, worker and reservation apply), in the order it considered them: what starts
    in its place if another chain took it meanwhile."""
    by_id = {c.job_id: c for c in seen.candidates}
    started = by_id.get(job_id)
    if started is None or started.gang != 1:
        return []

    def key(c: Candidate) -> tuple[Any, ...]:
        return (c.tenant, _shape(c.resources), c.gang, c.timeout_s, c.placement)

    wanted = key(started)
    return [i for i in decision.waiting if (c := by_id.get(i)) is not None and key(c) == wanted]


def _rename_slots(decision: Decision, renamed: dict[int, int]) -> None:
    """Chain groups whose slot was a start replaced by another job (``_substitute``): the
    plan goes on the job that started instead."""
    if renamed:
        decision.chains = [
            dataclasses.replace(g, slots=tuple(renamed.get(i, i) for i in g.slots))
            for g in decision.chains
        ]


def _slots(workers: Sequence[Worker]) -> list[WorkerSlot]:
    return [WorkerSlot(w.address, dict(w.resources)) for w in workers]


class Claims:
    def __init__(self, store: JobStore) -> None:
        self.store = store

    # -- the snapshot ---------------------------------------------------------------------

    def _lock(self, conn: Connection) -> None:
        if self.store.is_postgres:
            conn.execute(sa.select(sa.func.pg_advisory_xact_lock(ADMISSION_LOCK)))

    def _drained(self, conn: Connection) -> set[str]:
        """Workers being drained (``zhuge.jobs.elastic.autoscaler``): they are left out of
        every census, so nothing new is placed on them, and their chains stop."""
        return set(conn.execute(sa.select(schema.worker_drains.c.address)).scalars())

    def _running(self, conn: Connection, drained: frozenset[str] = frozenset()) -> _Seen:
        # read first: a job submitted while the snapshot is read counts as newer than it
        newest = conn.execute(sa.select(sa.func.max(J.c.id))).scalar() or 0
        seen = _Seen(newest, [], {}, {})
        for r in conn.execute(sa.select(*_RUNNING_COLUMNS).where(J.c.state == "running")):
            workers = tuple(r.assigned_workers or ([r.worker] if r.worker else []))
            plan = ChainPlan.load(r.chain_plan)
            seen.running.append(
                Running(
                    job_id=r.id,
                    tenant=r.tenant,
                    priority=r.priority,
                    resources={k: float(v) for k, v in (r.resources or {}).items()},
                    workers=workers,
                    started_at=r.started_at if r.started_at is not None else r.updated_at,
                    timeout_s=r.timeout_s or kind_timeout(r.kind),
                    preempting=r.preempt_requested_at is not None,
                    # a draining worker's chain stops: no plan follows its attempt
                    chainable=(r.gang or 1) == 1 and not drained.intersection(workers),
                    plan=plan.jobs if plan else (),
                    plan_group=plan.group if plan else None,
                )
            )
            seen.attempts[r.id] = r.attempt
            seen.plans[r.id] = r.chain_plan
        return seen

    def _candidates(
        self, conn: Connection, now: float, *, wanted: int | None = None
    ) -> tuple[list[Candidate], dict[int, str], bool]:
        """Each tenant's window of candidates (see the module's docstring), their stored
        pending reasons, and whether any tenant has more queued than its window holds. A
        chain's decision (``wanted``: the jobs it may start and plan) reads smaller windows
        when many tenants share that many: at least a plan's depth each, at most a turn's."""
        tenants = list(conn.execute(_QUEUED_TENANTS).scalars())
        per_tenant = CANDIDATES_PER_TENANT
        if wanted is not None:
            share = -(-wanted // max(1, len(tenants)))
            per_tenant = min(CANDIDATES_PER_TENANT, max(CHAIN_PLAN_DEPTH + 1, share))
        rows: dict[int, Any] = {}
        unseen = False
        for tenant in tenants:
            window = conn.execute(
                _TENANT_WINDOWS, {"b_now": now, "b_tenant": tenant, "b_limit": per_tenant}
            ).all()
            by_age = sum(r.by_age for r in window)
            unseen = unseen or max(by_age, len(window) - by_age) >= per_tenant
            rows.update((r.id, r) for r in window)
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
        return candidates, {r.id: r.pending_reason for r in rows.values()}, unseen

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
        plan_depth: int = 0,
        chain: _ChainAsk | None = None,
        drained: set[str] | None = None,
    ) -> tuple[Decision, dict[int, str], _Seen]:
        snapshot, config, reasons, seen = self._snapshot(
            conn,
            workers,
            now,
            update_usage=update_usage,
            plan_depth=plan_depth,
            chain=chain,
            drained=drained,
        )
        return admission.decide(snapshot, config), reasons, seen

    def _snapshot(
        self,
        conn: Connection,
        workers: Sequence[Worker],
        now: float,
        *,
        update_usage: bool,
        plan_depth: int = 0,
        chain: _ChainAsk | None = None,
        drained: set[str] | None = None,
    ) -> tuple[Snapshot, admission.QueueConfig, dict[int, str], _Seen]:
        """What a decision reads (see the module's docstring). A chain's decision
        (``chain``) plans for its group only (``_mates``), and reads enough candidates for
        that group's plan."""
        config = self.store.queues.config(conn)
        if drained is None:
            drained = self._drained(conn)
        seen = self._running(conn, frozenset(drained))
        plan_workers, wanted = None, None
        if chain is not None:
            mates = _mates(seen.running, chain)
            plan_workers = frozenset((chain.worker, *(w for r in mates for w in r.workers)))
            wanted = 1 + plan_depth * (1 + len(mates))  # its next job and the group's plan
        candidates, reasons, seen.unseen = self._candidates(conn, now, wanted=wanted)
        seen.candidates = candidates
        usage = self._usage(conn)
        if update_usage:
            decayed = self._update_usage(conn, usage, seen.running, config, now)
        else:
            decayed = {t: u for t, (u, _) in usage.items()}
        snapshot = Snapshot(
            now,
            _slots(workers),
            seen.running,
            candidates,
            decayed,
            plan_depth=plan_depth,
            plan_workers=plan_workers,
        )
        return snapshot, config, reasons, seen

    # -- a scheduler's turn ---------------------------------------------------------------

    def admit(
        self,
        *,
        owner: str,
        workers: Sequence[Worker],
        lease_seconds: float,
        plan_depth: int = CHAIN_PLAN_DEPTH,
    ) -> Admitted:
        """Decide and record: claim the attempts to start (running, leased by ``owner``,
        placed on their workers, not yet started), ask the victims of a reclaim to yield,
        write each waiting job's reason, and replace the chain plans of running attempts
        (``plan_depth`` jobs each; 0 when workers do not chain). The caller hands the started
        ones to Dask."""
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
            drained = self._drained(conn)
            for address in drained:  # they take nothing new
                census.pop(address, None)
            decision, reasons, seen = self._decide(
                conn,
                list(census.values()),
                now,
                update_usage=True,
                plan_depth=plan_depth,
                drained=drained,
            )
            placed = {i: w for i, w in decision.started().items() if set(w) <= mine}
            raced = False
            if placed:
                claim = J.update().values(
                    claimed_values(
                        now,
                        owner=owner,
                        lease_seconds=lease_seconds,
                        assigned=sa.bindparam("b_workers", type_=sa.JSON),
                    )
                )
                conn.execute(
                    claim.where(J.c.id == sa.bindparam("b_id"), J.c.state == JobState.QUEUED.value),
                    [{"b_id": i, "b_workers": list(w)} for i, w in placed.items()],
                )
                rows = conn.execute(
                    sa.select(J).where(
                        J.c.id.in_(list(placed)),
                        J.c.lease_owner == owner,
                        J.c.worker.is_(None),  # not one a chain of ours claimed meanwhile
                    )
                ).all()
                lost = [i for i in placed if i not in {r.id for r in rows}]
                if lost:
                    subs = self._substitute(conn, claim, lost, placed, decision, seen)
                    rows += subs.values()
                    _rename_slots(decision, {i: r.id for i, r in subs.items()})
                    raced = len(subs) < len(lost)
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
            self._write_plans(conn, decision, seen, {j.id: j.attempt for j in started})
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
        return Admitted(started, preempted, decision, unseen=seen.unseen, raced=raced)

    def _substitute(
        self,
        conn: Connection,
        claim: sa.Update,
        lost: list[int],
        placed: dict[int, tuple[str, ...]],
        decision: Decision,
        seen: _Seen,
    ) -> dict[int, Any]:
        """Jobs claimed in place of the ``lost`` ones: jobs this decision placed that a
        worker's chain took meanwhile (a chain claims the head of the queue, which is what
        a decision starts first, without waiting for the admission lock). Each is replaced
        by the next candidate the decision left waiting that it cannot tell from it: the
        same tenant, resources, gang, time limit and placement, so the same quota, share,
        worker and reservation apply; the decision's order (``Decision.waiting``) is kept.
        Without this, a busy queue's turn would often start nothing and the freed worker
        would wait for the next turn. Returns the claimed rows by the id each replaces."""
        one = claim.where(
            J.c.id == sa.bindparam("b_id"), J.c.state == JobState.QUEUED.value
        ).returning(*J.c)
        out: dict[int, Any] = {}
        tried: set[int] = set()
        for job_id in lost:
            for twin in _twins(decision, seen, job_id):
                if twin in tried:
                    continue
                tried.add(twin)
                row = conn.execute(one, {"b_id": twin, "b_workers": list(placed[job_id])}).first()
                if row is not None:
                    out[job_id] = row
                    break
        return out

    def _write_plans(
        self, conn: Connection, decision: Decision, seen: _Seen, started: dict[int, int]
    ) -> None:
        """Store the decision's chain plans on the attempts of each group: those running and
        those this scheduler just started (one started on another scheduler's worker is not
        claimed here). A plan goes on the attempt it was made for (same attempt number): one
        that ended meanwhile gets none. A group whose plan and members are unchanged keeps
        its rows as they are."""
        attempts = {**seen.attempts, **started}
        members: dict[str, set[int]] = {}
        for job_id, stored in seen.plans.items():
            if stored:
                members.setdefault(str(stored.get("group")), set()).add(job_id)
        rows = []
        for group in decision.chains:
            slots = [i for i in group.slots if i in attempts]
            old = [ChainPlan.load(seen.plans.get(i)) for i in slots]
            if (
                slots
                and all(p is not None and p.jobs == group.jobs for p in old)
                and len({p.group for p in old if p is not None}) == 1
                and members.get(old[0].group if old[0] else "") == set(slots)
            ):
                continue
            plan = ChainPlan(uuid.uuid4().hex[:12], seen.newest, group.jobs).dump()
            for i in slots:
                if plan is not None or seen.plans.get(i) is not None:
                    rows.append({"b_id": i, "b_attempt": attempts[i], "b_plan": plan})
        self._store_plans(conn, rows)

    def _store_plans(self, conn: Connection, rows: list[dict[str, Any]]) -> None:
        """Write ``rows`` (b_id, b_attempt, b_plan) on the attempts still running. On
        PostgreSQL a row another transaction holds (a chain ending its attempt) is skipped,
        not waited for: that chain may be waiting for the admission lock this transaction
        holds; the plan it has stays (charged as a later decision reads it)."""
        if rows:
            conn.execute(_STORE_PLAN_UNLESS_HELD if self.store.is_postgres else _STORE_PLAN, rows)

    def _ask_to_yield(self, conn: Connection, decision: Decision, now: float) -> list[int]:
        """Set ``preempt_requested_at`` on the victims: each attempt sees it at its next
        heartbeat and stops; one that does not within the grace period is given up."""
        out = []
        for p in decision.preempt:
            if (
                self.store.is_postgres
                and not conn.execute(
                    sa.select(J.c.id).where(J.c.id == p.job_id).with_for_update(skip_locked=True)
                ).first()
            ):
                # held by its own chain's transaction, which may be waiting for the
                # admission lock this turn holds: the next turn asks it, if it still runs
                continue
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
            drained = self._drained(conn)
            workers = [w for w in store._live_workers(conn, now) if w.address not in drained]
            snapshot, config, _, _ = self._snapshot(
                conn, workers, now, update_usage=False, drained=drained
            )
            conn.rollback()
        # with no worker up too (an empty pool grows back on the first admissible job)
        return admission.admissible_demand(snapshot, config)

    # -- a worker's chain -----------------------------------------------------------------

    def claim_planned(
        self,
        conn: Connection,
        plan: ChainPlan,
        *,
        owner: str,
        worker: str,
        lease_seconds: float,
        events: list[dict[str, Any]] | None = None,
    ) -> Job | None:
        """Within ``conn`` (which may have just recorded the previous job's result): the
        first job of ``plan`` (the chain plan of the attempt that just ended on ``worker``,
        ``Decision.chains``) still queued, claimed and started there in one statement, the
        plan passed on to it; None when none is left or the plan is stale. Takes no lock
        and waits on none: the transaction already holds the finished job's row. Its event
        goes to ``events`` when given (``JobStore._event``'s ``pending``)."""
        return self._claim_planned(
            conn, plan, self.store.clock(), owner, worker, lease_seconds, events
        )

    def claim_next(
        self,
        conn: Connection,
        *,
        owner: str,
        worker: str,
        lease_seconds: float,
        resources: dict[str, float],
        spent: ChainPlan | None = None,
        events: list[dict[str, Any]] | None = None,
    ) -> Job | None:
        """Within ``conn``, which waits here for the admission lock (so it may hold no row
        a turn waits for: at most the attempt that just ended on ``worker``, see
        ``JobStore.complete_and_claim_next``): the job admission starts next on ``worker``
        needing exactly ``resources``, claimed and started there, with a plan of the jobs to
        follow it; None if admission starts no such job. Only a one-copy job is chained;
        everything else waits for a scheduler's turn.

        ``spent``: the plan the chain just spent. The chains that shared it spend it
        together, so the decision plans for all of them and the new plan goes on each, under
        the same group name; and a chain that finds its plan spent first follows a newer
        plan of its group, if another chain's decision made one meanwhile (the new plan could
        not be written on an attempt that was ending at the time). Were each chain to plan
        only for itself, every plan would start from the same head of the queue, each
        chain's would be spent by the others, and a decision would be needed every few jobs.
        The claim's event goes to ``events`` when given (``JobStore._event``'s ``pending``)."""
        store = self.store
        self._lock(conn)
        now = store.clock()
        if spent is not None and spent.group:
            newer = self._newer_plan(conn, spent)
            if newer is not None:
                job = self._claim_planned(conn, newer, now, owner, worker, lease_seconds, events)
                if job is not None:
                    return job
        drained = self._drained(conn)
        workers = [w for w in store._live_workers(conn, now) if w.address not in drained]
        if not any(w.address == worker for w in workers):
            return None  # gone, or draining: its chain stops
        decision, _, seen = self._decide(
            conn,
            workers,
            now,
            update_usage=False,
            plan_depth=CHAIN_PLAN_DEPTH,
            chain=_ChainAsk(worker, resources, spent.group if spent is not None else None),
            drained=drained,
        )
        wanted = {k: float(v) for k, v in resources.items()}
        ids = [s.job_id for s in decision.start if s.workers == (worker,)]
        if not ids:
            return None
        fitting = {
            c.job_id
            for c in seen.candidates
            if c.gang == 1 and {k: float(v) for k, v in c.resources.items()} == wanted
        }
        job_id = next((i for i in ids if i in fitting), None)
        if job_id is None:
            return None
        mine = next((g for g in decision.chains if job_id in g.slots and g.jobs), None)
        group = spent.group if spent is not None and spent.group else uuid.uuid4().hex[:12]
        plan = ChainPlan(group, seen.newest, mine.jobs if mine else ())
        # The job decided may be taken meanwhile by another chain (a planned claim takes no
        # lock): then its first twin still queued (``_twins``).
        for target in (job_id, *_twins(decision, seen, job_id)):
            job = self._claim(
                conn,
                target,
                plan,
                now,
                owner=owner,
                worker=worker,
                lease_seconds=lease_seconds,
                planned=False,
                events=events,
            )
            if job is not None:
                break
        else:
            return None
        if mine is not None:  # the rest of the group: the same plan
            self._store_plans(
                conn,
                [
                    {"b_id": i, "b_attempt": seen.attempts[i], "b_plan": plan.dump()}
                    for i in mine.slots
                    if i != job_id and i in seen.attempts
                ],
            )
        return job

    def _newer_plan(self, conn: Connection, spent: ChainPlan) -> ChainPlan | None:
        """The newest plan of ``spent``'s group on a running attempt, if it is not
        ``spent`` itself: one a decision made after it (any plan on a running attempt is
        charged, so following it keeps the rules; the claim checks it is not stale)."""
        stored = conn.execute(
            sa.select(J.c.chain_plan).where(
                J.c.state == JobState.RUNNING.value,
                J.c.chain_plan["group"].as_string() == spent.group,
            )
        ).scalars()
        plans = [
            p
            for p in map(ChainPlan.load, stored)
            if p is not None and p.seen >= spent.seen and p.jobs != spent.jobs
        ]
        return max(plans, key=lambda p: p.seen, default=None)

    def _claim_planned(
        self,
        conn: Connection,
        plan: ChainPlan,
        now: float,
        owner: str,
        worker: str,
        lease_seconds: float,
        events: list[dict[str, Any]] | None = None,
    ) -> Job | None:
        """The first job of ``plan`` still queued and runnable, claimed on ``worker``; None
        if none is left or a job queued since the plan was made has a higher priority than
        the one it would take (a decision must then look). On PostgreSQL one statement
        (``_CLAIM_FIRST_PLANNED``); on SQLite two prepared ones: which planned jobs are
        still queued, then the claim of the first (another chain of the group may take it
        first: then the next)."""
        ids = [i for i, _ in plan.jobs]

        def claim(target: int | list[int]) -> Job | None:
            return self._claim(
                conn, target, plan, now, owner=owner, worker=worker,
                lease_seconds=lease_seconds, planned=True, events=events,
            )  # fmt: skip

        if self.store.is_postgres:
            # one statement; rows another transaction holds (a turn claiming them) are
            # skipped, not waited for: this transaction already holds its finished job's row
            return claim(ids)
        queued = set(conn.execute(_STILL_QUEUED, {"b_ids": ids, "b_now": now}).scalars())
        for job_id in (i for i in ids if i in queued):
            job = claim(job_id)
            if job is not None:
                return job
            if conn.execute(_STATE, {"b_id": job_id}).scalar() == JobState.QUEUED.value:
                return None  # still queued, so the plan is stale: a decision must look
        return None

    def _claim(
        self,
        conn: Connection,
        job_id: int | list[int],
        plan: ChainPlan,
        now: float,
        *,
        owner: str,
        worker: str,
        lease_seconds: float,
        planned: bool,
        events: list[dict[str, Any]] | None = None,
    ) -> Job | None:
        """Claim and start the queued job ``job_id`` on ``worker``, with the chain ``plan``
        to follow it; None if it is no longer queued, or if a job queued after the plan
        (or the decision) was made has a higher priority. Given a list of ids (PostgreSQL
        only): the first of them still queued and not held by another transaction."""
        first = isinstance(job_id, list)
        claimed = conn.execute(
            _CLAIM_FIRST_PLANNED if first else _CLAIM_ON_WORKER,
            {
                ("b_ids" if first else "b_id"): job_id,
                "b_seen": plan.seen,
                "b_now": now,
                "b_lease": now + lease_seconds,
                "b_owner": owner,
                "b_worker": worker,
                "b_assigned": [worker],
                "b_plan": plan.dump(),
            },
        ).first()
        if claimed is None:
            return None
        job = self.store._job(claimed)
        message = f"claimed by {owner}, chained on {worker}" + (" as planned" if planned else "")
        self.store._event(
            conn,
            [(job.id, job.attempt, JobState.QUEUED, JobState.RUNNING, message)],
            now,
            pending=events,
        )
        return job
