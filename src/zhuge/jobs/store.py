"""JobStore: every job state change is one transaction on SQL (SQLite or PostgreSQL).

The store is the source of truth. Writes that belong to an attempt (start, heartbeat,
result, failure) are *fenced* by the attempt number: ``WHERE id = :id AND attempt = :n AND
state = 'running'``. An attempt that lost its lease, or was cancelled, finds no row to update,
so its late result is rejected and exactly one outcome is ever committed.

Concurrency:
- PostgreSQL: claims use ``SELECT ... FOR UPDATE SKIP LOCKED``, so many schedulers can claim
  from one table and no job is claimed twice for the same attempt.
- SQLite: every write transaction starts with ``BEGIN IMMEDIATE`` (WAL mode), so writers are
  serialised up front instead of failing on a lock upgrade half-way.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError, OperationalError

from zhuge.errors import (
    IdempotencyConflict,
    InvalidRequest,
    InvalidTransition,
    JobNotFound,
    StoreError,
)
from zhuge.jobs import schema
from zhuge.jobs.admission import Demand
from zhuge.jobs.claims import CHAIN_PLAN_DEPTH, Admitted, ChainPlan, Claims, claimed_values
from zhuge.jobs.dependencies import Dependencies, checked_after
from zhuge.jobs.elastic import costs
from zhuge.jobs.model import Job, JobEvent, LogLine, Principal, Worker
from zhuge.jobs.queues import Queues
from zhuge.jobs.states import (
    JobState,
    LostReason,
    after_failure,
    after_loss,
    backoff_seconds,
    check_transition,
)
from zhuge.jobs.tenancy import Tenancy

Clock = Callable[[], float]

DURATION_BUCKETS: tuple[float, ...] = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600)
"""Upper bounds (seconds) of the job-duration histogram exported at /metrics."""

MAX_LIST_LIMIT = 1000
WORKER_LIVE_SECONDS = 10.0  # a worker not reported for this long is shown as gone
WORKER_FORGET_SECONDS = 3600.0  # rows of schedulers that died without saying goodbye
# ``refresh_statistics``: ANALYZE jobs once this many rows + this fraction of it changed
ANALYZE_ROWS = 50
ANALYZE_FRACTION = 0.1
ANALYZE_LOCK = 0x7A6875676573  # "zhuges": one scheduler analyses at a time
OFFER_SECONDS = 1.0
"""How long ``JobStore.offered`` keeps what the cluster offers before reading it again: the
schedulers record the workers every second or so (``scheduler.HOUSEKEEPING_SECONDS``), so a
submission checked against a view this old sees what the store itself saw."""


DEFAULT_MAX_LOST = 10


def request_sha256(
    kind: str,
    params: dict[str, Any],
    priority: int,
    resources: dict[str, float],
    max_attempts: int,
    max_lost: int = DEFAULT_MAX_LOST,
    *,
    gang: int = 1,
    timeout_s: float | None = None,
    placement: str | None = None,
    after: Sequence[int] = (),
) -> str:
    """A fingerprint of what was asked, to tell a replay from a different request.

    Fields added after v0.1.0 enter it only when they differ from their default, so a request
    replayed after an upgrade still matches the job it made before."""
    fields: dict[str, Any] = {
        "kind": kind,
        "params": params,
        "priority": priority,
        "resources": resources,
        "max_attempts": max_attempts,
    }
    if max_lost != DEFAULT_MAX_LOST:
        fields["max_lost"] = max_lost
    for name, value, default in (
        ("gang", gang, 1),
        ("timeout_s", timeout_s, None),
        ("placement", placement, None),
        ("after", sorted(after), []),
    ):
        if value != default:
            fields[name] = value
    canonical = json.dumps(fields, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


@dataclass(frozen=True)
class JobRequest:
    """One job to submit, as ``JobStore.submit_many`` takes it (parameters already valid)."""

    kind: str
    params: dict[str, Any]
    priority: int = 0
    resources: dict[str, float] | None = None
    max_attempts: int = 3
    idempotency_key: str | None = None
    max_lost: int = DEFAULT_MAX_LOST
    gang: int = 1
    """Copies admitted together on distinct workers, or none (``zhuge.jobs.admission``)."""
    timeout_s: float | None = None
    """Every attempt is stopped after this long (the kind's default when None)."""
    placement: str | None = None
    """binpack | spread; None: the queue configuration's."""
    after: tuple[int, ...] = ()
    """Jobs of the same tenant that must succeed first (``zhuge.jobs.dependencies``)."""


@dataclass(frozen=True)
class Beat:
    """What a heartbeat learns: whether the attempt still runs, and whether it must yield."""

    alive: bool
    preempt: bool = False

    def __bool__(self) -> bool:
        return self.alive


def resource_class(resources: dict[str, float]) -> str:
    return "gpu" if resources.get("GPU", 0) > 0 else "cpu"


def _private_sqlite_file(url: str) -> None:
    """Create the database file readable by its owner only (0600) before SQLite does (with
    the umask's 0644); SQLite gives its -wal and -shm files the same mode."""
    database = sa.make_url(url).database
    if not database or database == ":memory:" or database.startswith("file:"):
        return
    path = Path(database)
    if path.parent.is_dir():
        os.close(os.open(path, os.O_CREAT | os.O_RDWR, 0o600))
        os.chmod(path, 0o600)


def _sqlite_engine(url: str) -> Engine:
    _private_sqlite_file(url)
    engine = sa.create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})

    @sa.event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Let SQLAlchemy's "begin" event below issue BEGIN itself (pysqlite's own handling
        # defers BEGIN and would upgrade locks mid-transaction).
        dbapi_conn.isolation_level = None
        cursor = dbapi_conn.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")  # durable across process crashes in WAL
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    @sa.event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


@contextmanager
def transaction(engine: Engine) -> Iterator[Connection]:
    """One write transaction on the store's engine; a database that cannot be reached is a
    StoreError (503), not a driver error. Every module writing the store's tables uses this."""
    try:
        with engine.begin() as conn:
            yield conn
    except OperationalError as exc:
        raise StoreError(f"job store unavailable: {exc.orig}") from exc


@contextmanager
def reading(engine: Engine) -> Iterator[Connection]:
    """A read on the store's engine, with ``transaction``'s error."""
    try:
        with engine.connect() as conn:
            yield conn
    except OperationalError as exc:
        raise StoreError(f"job store unavailable: {exc.orig}") from exc


def redacted(url: str | sa.URL) -> str:
    """A database URL fit to print: its password hidden."""
    return sa.make_url(url).render_as_string(hide_password=True)


def create_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        return _sqlite_engine(url)
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
    return sa.create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20)


_JOB_FIELDS = tuple(f.name for f in dataclasses.fields(Job))


def _row_to_job(row: sa.Row[Any]) -> Job:
    m = row._mapping
    job = Job(**{name: m[name] for name in _JOB_FIELDS})
    return job.evolve(state=JobState(job.state))


J = schema.jobs


def _insert_events(conn: Connection, rows: list[dict[str, Any]]) -> None:
    """Event rows (``JobStore._event``'s), in one insert."""
    if rows:
        conn.execute(schema.job_events.insert(), rows)


def _runnable(
    columns: Sequence[Any], of_class: sa.ColumnElement[bool], now: Any, limit: int
) -> sa.Select[Any]:
    """Queued jobs that may start now, in the queue's order (priority, then age). The one
    definition of that order, shared by ``claim`` (the scheduler) and ``claim_next`` (a
    worker's chain): admission rules such as quotas belong here, so both obey them."""
    return (
        sa.select(*columns)
        .where(J.c.state == JobState.QUEUED.value, of_class, J.c.not_before <= now)
        .order_by(J.c.priority.desc(), J.c.id)
        .limit(limit)
    )


_RUNNING_ATTEMPT = sa.and_(
    J.c.id == sa.bindparam("b_job_id"),
    J.c.attempt == sa.bindparam("b_attempt"),
    J.c.state == JobState.RUNNING.value,
)


_USAGE = (J.c.id, J.c.attempt, J.c.tenant, J.c.kind, J.c.resources, J.c.gang, J.c.started_at,
          J.c.worker)  # fmt: skip
"""The columns of an ending attempt that its ``attempt_usage`` row is made of."""


def _succeed(with_progress: bool) -> sa.Update:
    values: dict[str, Any] = {
        "state": JobState.SUCCEEDED.value,
        "result": sa.bindparam("b_result", type_=sa.JSON),
        "finished_at": sa.bindparam("b_now"),
        "lease_expires_at": None,
        "cpu_seconds": J.c.cpu_seconds + sa.bindparam("b_cpu_seconds", type_=sa.Float),
        "updated_at": sa.bindparam("b_now"),
        "error": None,
        "traceback": None,
    }
    if with_progress:
        values["progress"] = sa.bindparam("b_progress", type_=sa.JSON)
    # what the chain of the attempt's worker runs next, planned by admission; what the
    # attempt's usage row needs (zhuge.jobs.elastic.costs); whether any job waits for this
    # one (zhuge.jobs.dependencies): a column of the row, so a dependent linked while this
    # statement waited for the row's lock is seen (a subquery would read an older snapshot)
    return (
        J.update()
        .where(_RUNNING_ATTEMPT)
        .values(**values)
        .returning(J.c.chain_plan, J.c.has_dependents, *_USAGE)
    )


_SUCCEED = {False: _succeed(False), True: _succeed(True)}


def _prepared(request: JobRequest) -> tuple[JobRequest, dict[str, float], str]:
    """A request checked, with its resources (the default filled in) and fingerprint."""
    if request.max_attempts < 1:
        raise InvalidRequest("max_attempts must be at least 1")
    if request.max_lost < 1:
        raise InvalidRequest("max_lost must be at least 1")
    if request.gang < 1:
        raise InvalidRequest("gang must be at least 1")
    if request.timeout_s is not None and not request.timeout_s > 0:
        raise InvalidRequest("timeout_s must be more than 0 seconds")
    if request.placement not in (None, "binpack", "spread"):
        raise InvalidRequest("placement must be binpack or spread")
    request = dataclasses.replace(request, after=tuple(checked_after(request.after)))
    resources = dict(request.resources or {"CPU": 1.0})
    fingerprint = request_sha256(
        request.kind,
        request.params,
        request.priority,
        resources,
        request.max_attempts,
        request.max_lost,
        gang=request.gang,
        timeout_s=request.timeout_s,
        placement=request.placement,
        after=request.after,
    )
    return request, resources, fingerprint


def _job_row(
    tenant: str,
    request: JobRequest,
    resources: dict[str, float],
    fingerprint: str,
    state: JobState,
    now: float,
) -> dict[str, Any]:
    """The ``jobs`` row of a checked request (``_prepared``), as submitted."""
    return {
        "tenant": tenant,
        "kind": request.kind,
        "params": request.params,
        "state": state.value,
        "priority": request.priority,
        "resources": resources,
        "resource_class": resource_class(resources),
        "max_attempts": request.max_attempts,
        "max_lost": request.max_lost,
        "gang": request.gang,
        "timeout_s": request.timeout_s,
        "placement": request.placement,
        "idempotency_key": request.idempotency_key,
        "request_sha256": fingerprint,
        "created_at": now,
        "updated_at": now,
        "not_before": now,
    }


def _submitted(request: JobRequest) -> str:
    if not request.after:
        return "submitted"
    return "submitted after job " + ", ".join(str(a) for a in request.after)


class JobStore:
    """All reads and writes of jobs, events, logs, tenants and workers."""

    def __init__(
        self,
        engine: Engine,
        *,
        clock: Clock = time.time,
        retry_base_seconds: float = 2.0,
        retry_max_seconds: float = 600.0,
    ) -> None:
        self.engine = engine
        self.clock = clock
        self.retry_base_seconds = retry_base_seconds
        self.retry_max_seconds = retry_max_seconds
        self.is_postgres = engine.dialect.name == "postgresql"
        self.tenancy = Tenancy(self)
        self.queues = Queues(self)
        self.claims = Claims(self)
        self.dependencies = Dependencies(self)
        self._offer: tuple[float, dict[str, float]] | None = None  # (read at, census)

    @classmethod
    def open(cls, url: str, **kwargs: Any) -> JobStore:
        """Connect, create an empty database, and refuse a schema of another version of
        zhuge (``zhuge.jobs.migrations`` says why and what to run)."""
        store = cls(create_engine(url), **kwargs)
        try:
            store.create_schema()
        except BaseException:
            store.dispose()  # close the pool's connections now, not when it is collected
            raise
        return store

    def create_schema(self) -> None:
        from zhuge.jobs import migrations

        try:
            migrations.prepare(self.engine, redacted(self.engine.url))
        except OperationalError as exc:
            raise StoreError(f"cannot open the job store: {exc.orig}") from exc

    def dispose(self) -> None:
        self.engine.dispose()

    def _tx(self) -> AbstractContextManager[Connection]:
        return transaction(self.engine)

    def _event(
        self,
        conn: Connection,
        rows: Sequence[
            tuple[int, int, JobState | None, JobState, str]
            | tuple[int, int, JobState | None, JobState, str, LostReason]
        ],
        now: float,
        *,
        pending: list[dict[str, Any]] | None = None,
    ) -> None:
        """Insert event rows: (job id, attempt, from, to, message[, lost reason]); or, given
        ``pending``, add them to it, for one insert later in the same transaction."""
        values = [
            {
                "job_id": job_id,
                "attempt": attempt,
                "from_state": source.value if source else None,
                "to_state": target.value,
                "message": message,
                "reason": reason[0].value if reason else None,
                "at": now,
            }
            for job_id, attempt, source, target, message, *reason in rows
        ]
        if pending is not None:
            pending.extend(values)
        else:
            _insert_events(conn, values)

    # -- tenants and tokens (zhuge.jobs.tenancy) ------------------------------------------

    def ensure_tenant(self, name: str) -> None:
        self.tenancy.ensure_tenant(name)

    def issue_token(self, tenant: str, description: str = "", *, role: str = "member") -> str:
        """Create a bearer token for ``tenant`` (created if new); only its hash is stored."""
        return self.tenancy.issue_token(tenant, description, role=role)

    def tenant_for_token(self, token: str) -> str | None:
        return self.tenancy.tenant_for_token(token)

    def principal_for_token(self, token: str) -> Principal | None:
        return self.tenancy.principal_for_token(token)

    # -- submission and reads -------------------------------------------------------------

    def submit(
        self,
        *,
        tenant: str,
        kind: str,
        params: dict[str, Any],
        priority: int = 0,
        resources: dict[str, float] | None = None,
        max_attempts: int = 3,
        idempotency_key: str | None = None,
        max_lost: int = DEFAULT_MAX_LOST,
        gang: int = 1,
        timeout_s: float | None = None,
        placement: str | None = None,
        after: Sequence[int] = (),
    ) -> tuple[Job, bool]:
        """Insert a queued job (``blocked`` while a job of ``after`` has not succeeded);
        return ``(job, created)``.

        With an idempotency key already used by this tenant: the same request returns the
        existing job (``created`` False); a different request raises IdempotencyConflict.
        """
        request = JobRequest(
            kind,
            params,
            priority,
            resources,
            max_attempts,
            idempotency_key,
            max_lost,
            gang=gang,
            timeout_s=timeout_s,
            placement=placement,
            after=tuple(checked_after(after)),
        )
        return self.submit_many(tenant=tenant, requests=[request])[0]

    def submit_many(self, *, tenant: str, requests: Sequence[JobRequest]) -> list[tuple[Job, bool]]:
        """Insert many queued jobs in one transaction; ``(job, created)`` for each, in order.

        All or nothing: an idempotency conflict anywhere writes nothing. Idempotency keys
        work as in ``submit``, also between requests of the same batch (the same key and
        request twice is one job).
        """
        prepared = [_prepared(request) for request in requests]
        first_of_key: dict[str, int] = {}
        for i, (request, _, fingerprint) in enumerate(prepared):
            key = request.idempotency_key
            if key is None:
                continue
            first = first_of_key.setdefault(key, i)
            if prepared[first][2] != fingerprint:
                raise IdempotencyConflict(
                    f"Idempotency-Key {key!r} is used twice in this batch for different requests"
                )
        for _ in range(2):  # a concurrent insert of the same key loses once, then finds it
            with self._tx() as conn:
                existing: dict[str, Any] = {}
                if first_of_key:
                    rows = conn.execute(
                        sa.select(J).where(
                            J.c.tenant == tenant, J.c.idempotency_key.in_(list(first_of_key))
                        )
                    ).all()
                    for row in rows:
                        key = row._mapping["idempotency_key"]
                        if row._mapping["request_sha256"] != prepared[first_of_key[key]][2]:
                            raise IdempotencyConflict(
                                f"Idempotency-Key {key!r} was already used for a "
                                f"different request (job {row._mapping['id']})"
                            )
                        existing[key] = row
                now = self.clock()
                fresh = [
                    i
                    for i, (request, _, _) in enumerate(prepared)
                    if request.idempotency_key is None
                    or (
                        request.idempotency_key not in existing
                        and first_of_key[request.idempotency_key] == i
                    )
                ]
                states = {
                    i: self.dependencies.initial_state(
                        conn, tenant=tenant, after=prepared[i][0].after
                    )
                    for i in fresh
                }
                values = [_job_row(tenant, *prepared[i], states[i], now) for i in fresh]
                try:
                    with conn.begin_nested() if self.is_postgres else _null():
                        rows = (
                            conn.execute(
                                J.insert().returning(*J.c, sort_by_parameter_order=True), values
                            ).all()
                            if values
                            else []
                        )
                except IntegrityError:
                    continue
                inserted = {i: _row_to_job(row) for i, row in zip(fresh, rows, strict=True)}
                self.dependencies.link(
                    conn,
                    [(job.id, up) for i, job in inserted.items() for up in prepared[i][0].after],
                )
                self._event(
                    conn,
                    [
                        (j.id, 0, None, j.state, _submitted(prepared[i][0]))
                        for i, j in inserted.items()
                    ],
                    now,
                )
                out: list[tuple[Job, bool]] = []
                for i, (request, _, _) in enumerate(prepared):
                    key = request.idempotency_key
                    if i in inserted:
                        out.append((inserted[i], True))
                    elif key in existing:
                        out.append((_row_to_job(existing[key]), False))
                    else:  # the same key and request earlier in this batch
                        out.append((inserted[first_of_key[key]], False))
                return out
        raise StoreError("could not insert or find the jobs for these idempotency keys")

    def insert_job(
        self,
        conn: Connection,
        *,
        tenant: str,
        request: JobRequest,
        pipeline_id: int | None = None,
        step: str | None = None,
    ) -> Job:
        """Insert one job (blocked or queued, with its edges) in the caller's transaction,
        without idempotency keys: how a pipeline inserts its steps (``zhuge.jobs.pipelines``)."""
        request, resources, fingerprint = _prepared(request)
        if request.idempotency_key is not None:
            raise InvalidRequest("a pipeline's jobs take no idempotency key")
        state = self.dependencies.initial_state(conn, tenant=tenant, after=request.after)
        now = self.clock()
        values = _job_row(tenant, request, resources, fingerprint, state, now)
        row = conn.execute(
            J.insert().values(**values, pipeline_id=pipeline_id, step=step).returning(*J.c)
        ).one()
        job = _row_to_job(row)
        self.dependencies.link(conn, [(job.id, up) for up in request.after])
        message = _submitted(request)
        if step is not None:
            message += f" (pipeline {pipeline_id}, step {step})"
        self._event(conn, [(job.id, 0, None, state, message)], now)
        return job

    def submit_pipeline(self, *, tenant: str, spec: Any, origin: str | None = None) -> int:
        """Insert a checked ``zhuge.jobs.pipelines.PipelineSpec`` and its jobs in one
        transaction; its id."""
        from zhuge.jobs.pipelines import submit_pipeline

        return submit_pipeline(self, tenant=tenant, spec=spec, origin=origin)

    def list_by_ids(self, job_ids: Iterable[int], *, tenant: str | None = None) -> list[Job]:
        """These jobs (those that exist, in ``tenant`` when given), in id order."""
        query = sa.select(J).where(J.c.id.in_(list(job_ids))).order_by(J.c.id)
        if tenant is not None:
            query = query.where(J.c.tenant == tenant)
        with reading(self.engine) as conn:
            return [_row_to_job(r) for r in conn.execute(query)]

    def upstream(self, job_ids: Iterable[int]) -> dict[int, list[int]]:
        """The jobs each of ``job_ids`` was submitted after."""
        with reading(self.engine) as conn:
            return self.dependencies.upstream(conn, job_ids)

    def get(self, job_id: int, *, tenant: str | None = None) -> Job:
        query = sa.select(J).where(J.c.id == job_id)
        if tenant is not None:
            query = query.where(J.c.tenant == tenant)
        with self.engine.connect() as conn:
            row = conn.execute(query).first()
        if row is None:
            raise JobNotFound(f"job {job_id} does not exist")
        return _row_to_job(row)

    def list(
        self,
        *,
        tenant: str | None = None,
        state: JobState | None = None,
        kind: str | None = None,
        limit: int = 100,
        before_id: int | None = None,
    ) -> list[Job]:
        """Newest first; page with ``before_id`` (the smallest id of the previous page)."""
        query = sa.select(J).order_by(J.c.id.desc()).limit(max(1, min(limit, MAX_LIST_LIMIT)))
        if tenant is not None:
            query = query.where(J.c.tenant == tenant)
        if state is not None:
            query = query.where(J.c.state == state.value)
        if kind is not None:
            query = query.where(J.c.kind == kind)
        if before_id is not None:
            query = query.where(J.c.id < before_id)
        with self.engine.connect() as conn:
            return [_row_to_job(r) for r in conn.execute(query)]

    def events(self, job_id: int) -> list[JobEvent]:
        E = schema.job_events
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(E).where(E.c.job_id == job_id).order_by(E.c.id))
            return [
                JobEvent(
                    job_id=r.job_id,
                    at=r.at,
                    attempt=r.attempt,
                    from_state=JobState(r.from_state) if r.from_state else None,
                    to_state=JobState(r.to_state),
                    message=r.message,
                    reason=r.reason,
                )
                for r in rows
            ]

    # -- the scheduler's side -------------------------------------------------------------

    def claim(
        self,
        *,
        limit: int,
        owner: str,
        lease_seconds: float,
        resource_classes: Iterable[str] = ("cpu",),
    ) -> list[Job]:
        """Move up to ``limit`` runnable queued jobs to running, highest priority first,
        *without admission* (no capacity, quota or fair share): for tests and repairs that
        need a running attempt. The scheduler and chains admit through ``admit`` and
        ``claim_next`` (``zhuge.jobs.claims``)."""
        classes = list(resource_classes)
        if limit <= 0 or not classes:
            return []
        now = self.clock()
        candidates = _runnable([J.c.id], J.c.resource_class.in_(classes), now, limit)
        if self.is_postgres:
            candidates = candidates.with_for_update(skip_locked=True)
        with self._tx() as conn:
            ids = [r[0] for r in conn.execute(candidates)]
            if not ids:
                return []
            rows = conn.execute(
                J.update()
                .where(J.c.id.in_(ids), J.c.state == JobState.QUEUED.value)
                .values(claimed_values(now, owner=owner, lease_seconds=lease_seconds))
                .returning(*J.c)
            ).all()
            claimed = sorted((_row_to_job(r) for r in rows), key=lambda j: (-j.priority, j.id))
            self._event(
                conn,
                [
                    (j.id, j.attempt, JobState.QUEUED, JobState.RUNNING, f"claimed by {owner}")
                    for j in claimed
                ],
                now,
            )
        return claimed

    def claim_next(
        self,
        *,
        owner: str,
        worker: str,
        lease_seconds: float,
        resources: dict[str, float],
    ) -> Job | None:
        """Claim *and start* the next runnable job on ``worker``, if it needs exactly
        ``resources``: how a worker that just finished a job goes on to the next one without
        a round trip through the scheduler and Dask (see ``Settings.chain_seconds``).

        The same admission decision as a scheduler's turn (``zhuge.jobs.claims``), so
        chaining never jumps the queue, a quota or a tenant's fair share; the lease is
        ``owner``'s, so that scheduler's shutdown releases the job like any other. If
        admission would start no one-copy job needing ``resources`` on ``worker``, nothing is
        claimed.
        """
        with self._tx() as conn:
            return self.claims.claim_next(
                conn, owner=owner, worker=worker, lease_seconds=lease_seconds, resources=resources
            )

    def admit(
        self,
        *,
        owner: str,
        workers: Sequence[Worker],
        lease_seconds: float,
        plan_depth: int = CHAIN_PLAN_DEPTH,
    ) -> Admitted:
        """A scheduler's turn of admission (``zhuge.jobs.claims``): the attempts to hand to
        Dask, each placed on its workers and leased by ``owner``, and the chain plans of the
        running ones (``plan_depth`` jobs each; 0 when workers do not chain)."""
        return self.claims.admit(
            owner=owner, workers=workers, lease_seconds=lease_seconds, plan_depth=plan_depth
        )

    def demand(self) -> list[Demand]:
        """What admission would start now if workers had room, by resource shape."""
        return self.claims.demand()

    def give_up_preempted(self, grace: float | None = None) -> list[Job]:
        """Preempted attempts past their grace period are lost (``preempted``)."""
        return self.claims.give_up_preempted(grace)

    def _job(self, row: sa.Row[Any]) -> Job:
        return _row_to_job(row)

    def _live_workers(self, conn: Connection, now: float) -> list[Worker]:
        W = schema.workers
        rows = conn.execute(
            sa.select(W).where(W.c.last_seen >= now - WORKER_LIVE_SECONDS).order_by(W.c.address)
        )
        return [
            Worker(r.address, dict(r.resources), r.last_seen, r.scheduler, r.running) for r in rows
        ]

    def expire_leases(self) -> list[Job]:
        """Running attempts whose lease ran out are lost (``lease_lost``), not failed."""
        now = self.clock()
        with self.engine.connect() as conn:
            expired = [
                (r.id, r.attempt)
                for r in conn.execute(
                    sa.select(J.c.id, J.c.attempt).where(
                        J.c.state == JobState.RUNNING.value, J.c.lease_expires_at < now
                    )
                )
            ]
        out = []
        for job_id, attempt in expired:
            job = self.lose_attempt(
                job_id,
                attempt,
                LostReason.LEASE_LOST,
                "the worker stopped sending heartbeats within the lease (killed, paused or "
                "cut off)",
                require_expired=True,
            )
            if job is not None:
                out.append(job)
        return out

    def release(self, owner: str) -> int:
        """Return the running jobs claimed by ``owner`` to the queue (a clean shutdown).

        A released attempt is interrupted (``drained``): it spends neither ``max_attempts``
        nor ``max_lost``. If its code is still running somewhere, its next heartbeat finds
        the attempt superseded and it stops.
        """
        now = self.clock()
        with self._tx() as conn:
            rows = conn.execute(
                J.update()
                .where(J.c.state == JobState.RUNNING.value, J.c.lease_owner == owner)
                .values(
                    state=JobState.QUEUED.value,
                    not_before=now,
                    lease_expires_at=None,
                    lease_owner=None,
                    updated_at=now,
                )
                .returning(*_USAGE)
            ).all()
            costs.record_usage(
                conn, [costs.usage_row(r._mapping, ended_at=now, outcome="released") for r in rows]
            )
            self._event(
                conn,
                [
                    (
                        r.id,
                        r.attempt,
                        JobState.RUNNING,
                        JobState.QUEUED,
                        "released at shutdown",
                        LostReason.DRAINED,
                    )
                    for r in rows
                ],
                now,
            )
        return len(rows)

    def renew_unstarted(self, owner: str, *, lease_seconds: float) -> int:
        """Keep the leases of attempts ``owner`` handed to Dask that no worker has started.

        Until its runner starts, an attempt has no heartbeat of its own; its scheduler
        vouches for it. If the scheduler dies, these leases run out and the jobs run again.
        """
        now = self.clock()
        with self._tx() as conn:
            done = conn.execute(
                J.update()
                .where(
                    J.c.state == JobState.RUNNING.value,
                    J.c.lease_owner == owner,
                    J.c.worker.is_(None),
                )
                .values(lease_expires_at=now + lease_seconds)
            )
        return done.rowcount

    def cancelled_attempts(self, job_ids: Iterable[tuple[int, int]]) -> set[tuple[int, int]]:
        """Which of these (job id, attempt) pairs belong to jobs cancelled since."""
        pairs = list(job_ids)
        if not pairs:
            return set()
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(J.c.id, J.c.attempt).where(
                    J.c.id.in_([p[0] for p in pairs]), J.c.state == JobState.CANCELLED.value
                )
            )
            cancelled = {(r.id, r.attempt) for r in rows}
        return cancelled & set(pairs)

    # -- the worker's side: writes fenced by attempt --------------------------------------

    def _running(self, job_id: int, attempt: int) -> sa.ColumnElement[bool]:
        return sa.and_(
            J.c.id == job_id, J.c.attempt == attempt, J.c.state == JobState.RUNNING.value
        )

    def start_attempt(
        self, job_id: int, attempt: int, *, worker: str, lease_seconds: float
    ) -> Job | None:
        """Mark the attempt as started on ``worker``; None if it is not this attempt's to run.

        ``worker IS NULL`` makes this once-only: if Dask re-runs the same task after a worker
        died, the re-run finds the attempt taken and leaves it to lease expiry, which starts
        a fresh attempt with a new fencing number.
        """
        now = self.clock()
        with self._tx() as conn:
            row = conn.execute(
                J.update()
                .where(self._running(job_id, attempt), J.c.worker.is_(None))
                .values(
                    worker=worker,
                    started_at=now,
                    lease_expires_at=now + lease_seconds,
                    updated_at=now,
                )
                .returning(*J.c)
            ).first()
        return _row_to_job(row) if row else None

    def heartbeat(
        self,
        job_id: int,
        attempt: int,
        *,
        lease_seconds: float,
        progress: dict[str, Any] | None = None,
    ) -> Beat:
        """Renew the lease. The reply is false if the attempt is no longer running
        (cancelled, superseded); its ``preempt`` is set once admission asked the attempt to
        yield its place (a reclaim), which it should do within the grace period."""
        now = self.clock()
        values: dict[str, Any] = {"lease_expires_at": now + lease_seconds}
        if progress:
            values["progress"] = progress
        with self._tx() as conn:
            row = conn.execute(
                J.update()
                .where(self._running(job_id, attempt))
                .values(**values)
                .returning(J.c.preempt_requested_at)
            ).first()
        if row is None:
            return Beat(alive=False)
        return Beat(alive=True, preempt=row.preempt_requested_at is not None)

    def complete(
        self,
        job_id: int,
        attempt: int,
        *,
        result: Any,
        cpu_seconds: float = 0.0,
        progress: dict[str, Any] | None = None,
    ) -> bool:
        """Commit the attempt's result (and its last progress report, which the heartbeat may
        not have carried yet); False, and nothing written, if the attempt lost."""
        with self._tx() as conn:
            return self._complete(conn, job_id, attempt, result, cpu_seconds, progress) is not False

    def complete_and_claim_next(
        self,
        job_id: int,
        attempt: int,
        *,
        result: Any,
        cpu_seconds: float = 0.0,
        progress: dict[str, Any] | None = None,
        owner: str,
        worker: str,
        lease_seconds: float,
        resources: dict[str, float],
    ) -> tuple[bool, Job | None]:
        """``complete`` and the claim of the next job in one transaction (one commit per
        chained job): the first of the attempt's chain plan still queued or, with none
        left, the job a decision starts on this worker (``claim_next``, which waits for
        the admission lock). Nothing is claimed when the commit lost.

        One transaction, so no scheduler's turn ever sees the worker free between two jobs
        of its chain: a turn that did would place a job there that Dask runs only once the
        chain ends, and the chain, finding its worker taken, would end. It holds one row
        while it waits for the lock, the finished job's, which a turn holding that lock
        never waits for (it skips locked rows when it writes plans or asks to yield)."""
        with self._tx() as conn:
            events: list[dict[str, Any]] = []  # the success's and the claim's: one insert
            plan = self._complete(conn, job_id, attempt, result, cpu_seconds, progress, events)
            if plan is False:
                return False, None
            nxt = None
            if plan is not None:
                nxt = self.claims.claim_planned(
                    conn, plan, owner=owner, worker=worker, lease_seconds=lease_seconds,
                    events=events,
                )  # fmt: skip
            if nxt is None:
                nxt = self.claims.claim_next(
                    conn,
                    owner=owner,
                    worker=worker,
                    lease_seconds=lease_seconds,
                    resources=resources,
                    spent=plan,
                    events=events,
                )
            _insert_events(conn, events)
            return True, nxt

    def _complete(
        self,
        conn: Connection,
        job_id: int,
        attempt: int,
        result: Any,
        cpu_seconds: float,
        progress: dict[str, Any] | None,
        events: list[dict[str, Any]] | None = None,
    ) -> ChainPlan | Literal[False] | None:
        """Record the attempt's success; False if it no longer held the job, else the plan
        of the jobs to follow it on its worker (None if none). ``events``: its event is
        added there for the caller to insert (``_event``'s ``pending``)."""
        now = self.clock()
        values = {
            "b_job_id": job_id,
            "b_attempt": attempt,
            "b_result": result,
            "b_now": now,
            "b_cpu_seconds": cpu_seconds,
        }
        if progress:
            values["b_progress"] = progress
        done = conn.execute(_SUCCEED[bool(progress)], values).first()
        if done is None:
            return False
        self._event(
            conn, [(job_id, attempt, JobState.RUNNING, JobState.SUCCEEDED, "")], now, pending=events
        )
        costs.record_usage(
            conn, [costs.usage_row(done._mapping, ended_at=now, outcome="succeeded",
                                   cpu_seconds=cpu_seconds)]
        )  # fmt: skip
        if done.has_dependents:
            if events is not None:  # its success first, then the dependents it queues
                _insert_events(conn, events)
                events.clear()
            self.dependencies.release(conn, job_id, now)
        return ChainPlan.load(done.chain_plan)

    def fail_attempt(
        self,
        job_id: int,
        attempt: int,
        *,
        error: str,
        traceback: str | None,
        cpu_seconds: float = 0.0,
        retryable: bool = True,
    ) -> Job | None:
        """Record an attempt whose code raised: back to queued after a backoff, or dead when
        ``max_attempts`` are spent (at once when not ``retryable``: bad input).

        Returns the job as it now is, or None if the attempt was no longer running.
        """
        return self._end_attempt(
            job_id,
            attempt,
            error=error,
            traceback=traceback,
            cpu_seconds=cpu_seconds,
            retryable=retryable,
        )

    def lose_attempt(
        self,
        job_id: int,
        attempt: int,
        reason: LostReason,
        message: str,
        *,
        require_expired: bool = False,
        require_started: bool = False,
        require_unstarted: bool = False,
    ) -> Job | None:
        """Record an attempt the infrastructure lost (``states`` says the rule): it spends
        no ``max_attempts``; an involuntary loss counts toward ``max_lost``, an interruption
        (preempted, drained) toward nothing.

        ``require_expired``: only if its lease has run out (a heartbeat may have renewed it
        since it was seen expired). ``require_started``: only if a worker started it;
        ``require_unstarted``: only if none did. Returns the job as it now is, or None if the attempt was no longer running.
        """
        return self._end_attempt(
            job_id,
            attempt,
            error=f"attempt lost ({reason.value}): {message}",
            traceback=None,
            lost=reason,
            require_expired=require_expired,
            require_started=require_started,
            require_unstarted=require_unstarted,
        )

    def _end_attempt(
        self,
        job_id: int,
        attempt: int,
        *,
        error: str,
        traceback: str | None,
        cpu_seconds: float = 0.0,
        retryable: bool = True,
        lost: LostReason | None = None,
        require_expired: bool = False,
        require_started: bool = False,
        require_unstarted: bool = False,
    ) -> Job | None:
        """The one way a running attempt ends without a result: failed or lost."""
        now = self.clock()
        guard = self._running(job_id, attempt)
        if require_expired:
            guard = sa.and_(guard, J.c.lease_expires_at < now)
        if require_started:
            guard = sa.and_(guard, J.c.worker.is_not(None))
        if require_unstarted:
            guard = sa.and_(guard, J.c.worker.is_(None))
        with self._tx() as conn:
            query = sa.select(J.c.failures, J.c.max_attempts, J.c.lost, J.c.max_lost).where(guard)
            if self.is_postgres:
                query = query.with_for_update()
            row = conn.execute(query).first()
            if row is None:
                return None
            failures, lost_count = row.failures, row.lost
            values: dict[str, Any] = {
                "error": error,
                "traceback": traceback,
                "lease_expires_at": None,
                "lease_owner": None,
                "cpu_seconds": J.c.cpu_seconds + cpu_seconds,
                "updated_at": now,
            }
            if lost is None:
                failures += 1
                values["failures"] = failures
                target = after_failure(failures, row.max_attempts) if retryable else JobState.DEAD
                passed = JobState.FAILED
                retries, delay_after = f"retry {failures + 1} of {row.max_attempts}", failures
            else:
                if lost.involuntary:
                    lost_count += 1
                    values["lost"] = lost_count
                target = after_loss(lost_count, row.max_lost)
                passed = JobState.LOST
                # A lost attempt is not a retry: the next one keeps the failures' count.
                retries = (
                    f"lost {lost_count} of {row.max_lost} allowed; next attempt"
                    if lost.involuntary
                    else "interrupted; next attempt"
                )
                delay_after = lost_count if lost.involuntary else 0
            values["state"] = target.value
            if target is JobState.QUEUED:
                delay = backoff_seconds(
                    delay_after, base=self.retry_base_seconds, cap=self.retry_max_seconds
                )
                values["not_before"] = now + delay
                note = f"{retries} in {delay:.1f}s"
            else:
                values["finished_at"] = now
                if lost is not None:
                    note = f"lost {lost_count} attempts, max_lost is {row.max_lost}"
                elif retryable:
                    note = f"no attempts left ({failures} of {row.max_attempts} failed)"
                else:
                    note = "bad input: retrying cannot help"
            updated = conn.execute(J.update().where(guard).values(**values).returning(*J.c)).one()
            ending: tuple[Any, ...] = (job_id, attempt, JobState.RUNNING, passed, error[:2000])
            resting: tuple[Any, ...] = (job_id, attempt, passed, target, note)
            if lost is not None:
                ending, resting = (*ending, lost), (*resting, lost)
            self._event(conn, [ending, resting], now)
            ran = updated._mapping
            costs.record_usage(
                conn, [costs.usage_row(ran, ended_at=now, outcome=passed.value,
                                       cpu_seconds=cpu_seconds)]
            )  # fmt: skip
            if target is JobState.DEAD:
                self.dependencies.cancel_dependents(conn, job_id, JobState.DEAD, now)
        return _row_to_job(updated)

    # -- operator actions -----------------------------------------------------------------

    def cancel(self, job_id: int, *, tenant: str | None = None) -> Job:
        """Cancel a blocked, queued or running job, and the jobs waiting for it. Cancelling
        a cancelled job is a no-op."""
        job = self.get(job_id, tenant=tenant)
        if job.state is JobState.CANCELLED:
            return job
        check_transition(job.state, JobState.CANCELLED)
        now = self.clock()
        with self._tx() as conn:
            row = conn.execute(
                J.update()
                .where(
                    J.c.id == job_id,
                    J.c.state == job.state.value,
                    J.c.attempt == job.attempt,
                )
                .values(
                    state=JobState.CANCELLED.value,
                    finished_at=now,
                    lease_expires_at=None,
                    updated_at=now,
                )
                .returning(*J.c)
            ).first()
            if row is None:  # it moved on between our read and write: look again
                return self.cancel(job_id, tenant=tenant)
            self._event(conn, [(job_id, job.attempt, job.state, JobState.CANCELLED, "")], now)
            if job.state is JobState.RUNNING:
                costs.record_usage(
                    conn, [costs.usage_row(row._mapping, ended_at=now, outcome="cancelled")]
                )
            self.dependencies.cancel_dependents(conn, job_id, JobState.CANCELLED, now)
        return _row_to_job(row)

    def requeue_dead(self, job_id: int, *, tenant: str | None = None) -> Job:
        """Put a dead job back in the queue with a fresh set of attempts; the jobs its end
        cancelled wait for it again (``blocked``)."""
        job = self.get(job_id, tenant=tenant)
        if job.state is not JobState.DEAD:
            raise InvalidTransition(
                f"only dead jobs can be retried by hand; job {job_id} is {job.state.value}"
            )
        now = self.clock()
        with self._tx() as conn:
            row = conn.execute(
                J.update()
                .where(J.c.id == job_id, J.c.state == JobState.DEAD.value)
                .values(
                    state=JobState.QUEUED.value,
                    failures=0,
                    lost=0,
                    not_before=now,
                    finished_at=None,
                    updated_at=now,
                )
                .returning(*J.c)
            ).first()
            if row is None:
                raise InvalidTransition(f"job {job_id} changed state while being retried")
            self._event(
                conn,
                [(job_id, job.attempt, JobState.DEAD, JobState.QUEUED, "retried by hand")],
                now,
            )
            self.dependencies.reblock(conn, job_id, now)
        return _row_to_job(row)

    # -- logs -----------------------------------------------------------------------------

    def append_logs(self, job_id: int, attempt: int, lines: Sequence[tuple[float, str]]) -> None:
        if not lines:
            return
        with self._tx() as conn:
            conn.execute(
                schema.job_logs.insert(),
                [
                    {"job_id": job_id, "attempt": attempt, "at": at, "line": line}
                    for at, line in lines
                ],
            )

    def logs(self, job_id: int, *, after_seq: int = 0, limit: int = 1000) -> list[LogLine]:
        L = schema.job_logs
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(L)
                .where(L.c.job_id == job_id, L.c.seq > after_seq)
                .order_by(L.c.seq)
                .limit(max(1, min(limit, 10_000)))
            )
            return [
                LogLine(seq=r.seq, job_id=r.job_id, attempt=r.attempt, at=r.at, line=r.line)
                for r in rows
            ]

    # -- workers and statistics -----------------------------------------------------------

    def record_workers(self, scheduler: str, seen: Sequence[Worker]) -> None:
        """What ``scheduler`` sees of the cluster now. Schedulers sharing one Dask cluster
        report the same workers: a worker's row is whoever saw it last (an upsert, so two
        reports at once cannot collide)."""
        W = schema.workers
        now = self.clock()
        with self._tx() as conn:
            conn.execute(
                W.delete().where(
                    (W.c.scheduler == scheduler) | (W.c.last_seen < now - WORKER_FORGET_SECONDS)
                )
            )
            if seen:
                insert = (pg_insert if self.is_postgres else sqlite_insert)(W)
                conn.execute(
                    insert.on_conflict_do_update(
                        index_elements=[W.c.address],
                        set_={
                            "scheduler": insert.excluded.scheduler,
                            "resources": insert.excluded.resources,
                            "running": insert.excluded.running,
                            "last_seen": insert.excluded.last_seen,
                        },
                    ),
                    [
                        {
                            "address": w.address,
                            "scheduler": scheduler,
                            "resources": w.resources,
                            "running": w.running,
                            "last_seen": now,
                        }
                        for w in seen
                    ],
                )
        self.forget_offer()  # after the commit: a read meanwhile may have kept the old view

    def refresh_statistics(self) -> bool:
        """PostgreSQL: ``ANALYZE jobs`` when enough rows changed since its statistics were
        taken (autovacuum's own rule, 50 rows + 10 %, checked each housekeeping instead of
        once a minute). A queue that grows from a few jobs to thousands in seconds (a
        burst of submissions) otherwise keeps the statistics of the nearly empty table:
        the planner takes ``state = 'queued'`` for a rare value and reads every queued row
        to find the few a claim or a turn asks for, milliseconds each instead of
        microseconds. One scheduler at a time (a try-lock; another skips); True if it ran.
        SQLite plans without statistics: nothing to do."""
        if not self.is_postgres:
            return False
        with self._tx() as conn:
            row = conn.execute(
                sa.text(
                    "SELECT s.n_mod_since_analyze, c.reltuples FROM pg_stat_user_tables s "
                    "JOIN pg_class c ON c.oid = s.relid WHERE s.relid = CAST('jobs' AS regclass)"
                )
            ).first()
            if row is None or row[0] <= ANALYZE_ROWS + ANALYZE_FRACTION * max(row[1], 0.0):
                return False
            if not conn.execute(
                sa.select(sa.func.pg_try_advisory_xact_lock(ANALYZE_LOCK))
            ).scalar():
                return False
            conn.exec_driver_sql("ANALYZE jobs")
        return True

    def forget_workers(self, scheduler: str) -> None:
        with self._tx() as conn:
            conn.execute(schema.workers.delete().where(schema.workers.c.scheduler == scheduler))
        self.forget_offer()

    def workers(self, *, seen_within: float = WORKER_LIVE_SECONDS) -> list[Worker]:
        """Workers some scheduler saw recently (schedulers report every second or so)."""
        W = schema.workers
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(W)
                .where(W.c.last_seen >= self.clock() - seen_within)
                .order_by(W.c.address)
            )
            return [
                Worker(
                    address=r.address,
                    resources=r.resources,
                    last_seen=r.last_seen,
                    scheduler=r.scheduler,
                    running=r.running,
                )
                for r in rows
            ]

    def offered(self) -> dict[str, float]:
        """Per resource, the most one recorded worker (or pool) offers: what a submitted
        job's resources are checked against (``service.check_resources``). Read at most
        every ``OFFER_SECONDS`` (monotonic time), and at once after this store recorded or
        forgot workers or applied pools; an empty cluster is never kept (the first worker
        recorded by another process counts at once)."""
        from zhuge.jobs.resources import census

        kept = self._offer
        if kept is not None and time.monotonic() - kept[0] < OFFER_SECONDS:
            return kept[1]
        offer = census(self.recorded_workers())
        self._offer = (time.monotonic(), offer) if offer else None
        return offer

    def forget_offer(self) -> None:
        """What the cluster offers changed here: the next ``offered`` reads it again."""
        self._offer = None

    def recorded_workers(self) -> list[Worker]:
        """Every worker some scheduler recorded and has not forgotten (live or lately gone):
        what the cluster offers, for checking a job's resources at submit. With worker pools
        (``zhuge.jobs.elastic``), one empty worker of each pool too: a pool at zero grows
        for the job."""
        from zhuge.jobs.elastic.pool_config import pool_workers

        return self.workers(seen_within=WORKER_FORGET_SECONDS) + pool_workers(self)

    def counts(self, *, tenant: str | None = None) -> dict[tuple[str, str], int]:
        """Number of jobs by (kind, state)."""
        query = sa.select(J.c.kind, J.c.state, sa.func.count()).group_by(J.c.kind, J.c.state)
        if tenant is not None:
            query = query.where(J.c.tenant == tenant)
        with self.engine.connect() as conn:
            return {(k, s): n for k, s, n in conn.execute(query)}

    def duration_histogram(self) -> dict[str, tuple[list[int], float, int]]:
        """Per kind: cumulative counts per DURATION_BUCKETS bound, sum and count of succeeded
        jobs' run time (start of the winning attempt to commit)."""
        duration = J.c.finished_at - J.c.started_at
        columns = [
            sa.func.sum(sa.case((duration <= bound, 1), else_=0)) for bound in DURATION_BUCKETS
        ]
        query = (
            sa.select(J.c.kind, sa.func.count(), sa.func.sum(duration), *columns)
            .where(J.c.state == JobState.SUCCEEDED.value, J.c.started_at.is_not(None))
            .group_by(J.c.kind)
        )
        with self.engine.connect() as conn:
            return {
                r[0]: ([int(x or 0) for x in r[3:]], float(r[2] or 0.0), int(r[1]))
                for r in conn.execute(query)
            }

    def attempts_total(self) -> dict[str, int]:
        with self.engine.connect() as conn:
            return {
                k: int(n or 0)
                for k, n in conn.execute(
                    sa.select(J.c.kind, sa.func.sum(J.c.attempt)).group_by(J.c.kind)
                )
            }


@contextmanager
def _null() -> Iterator[None]:
    yield


_stores: dict[str, JobStore] = {}
_stores_lock = threading.Lock()


def store_for(url: str, **kwargs: Any) -> JobStore:
    """One store (engine + pool) per URL per process; used inside Dask workers."""
    with _stores_lock:
        store = _stores.get(url)
        if store is None:
            store = _stores[url] = JobStore.open(url, **kwargs)
        return store
