"""Is this deployment ready to run work? Scheduler beats and the readiness check.

``/healthz`` says a process is alive; ``/readyz`` says the deployment behind it can make
progress. It is not ready, and says why, while

- the database cannot be reached, or refuses a write (read-only, a standby, a full disk);
- no scheduler loop is alive: none has beaten in ``schedulers`` for ``SCHEDULER_LIVE_SECONDS``
  (every process running a ``Scheduler`` keeps a ``SchedulerBeat``; an API-only process has
  none, and is ready only while some other process's loop is alive);
- jobs are queued and no worker is known (no scheduler saw one in the last
  ``WORKER_LIVE_SECONDS``): they would wait for ever.

A beat is written only while the loop's thread is alive and its housekeeping turned recently,
so a process whose loop died or hangs (a turn stuck for ``LOOP_STUCK_SECONDS``) stops
counting, although the process itself still answers ``/healthz``. Times of beats are on the
store's clock, like leases.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

import zhuge
from zhuge.jobs import schema
from zhuge.jobs.states import JobState
from zhuge.jobs.store import WORKER_LIVE_SECONDS, JobStore, transaction

if TYPE_CHECKING:
    from zhuge.jobs.scheduler import Scheduler

log = logging.getLogger(__name__)

BEAT_SECONDS = 2.0  # how often a live scheduler loop says so
SCHEDULER_LIVE_SECONDS = 15.0  # a scheduler not beaten for this long counts as gone
LOOP_STUCK_SECONDS = 60.0  # a loop whose housekeeping has not run for this long is stuck
FORGET_SECONDS = 86_400.0  # rows of schedulers that died without saying goodbye
_PROBE = "__readyz_probe__"  # the row the write probe inserts and rolls back


def _upsert(store: JobStore) -> Any:
    return (pg_insert if store.is_postgres else sqlite_insert)(schema.schedulers)


def beat(store: JobStore, name: str, *, started_at: float) -> None:
    """Record that scheduler ``name`` is alive now."""
    S = schema.schedulers
    now = store.clock()
    insert = _upsert(store)
    with transaction(store.engine) as conn:
        conn.execute(S.delete().where(S.c.last_beat < now - FORGET_SECONDS))
        conn.execute(
            insert.values(
                name=name,
                host=socket.gethostname()[:200],
                pid=os.getpid(),
                version=zhuge.__version__,
                started_at=started_at,
                last_beat=now,
            ).on_conflict_do_update(
                index_elements=[S.c.name], set_={"last_beat": insert.excluded.last_beat}
            )
        )


def forget(store: JobStore, name: str) -> None:
    with transaction(store.engine) as conn:
        conn.execute(schema.schedulers.delete().where(schema.schedulers.c.name == name))


def live_schedulers(store: JobStore) -> list[dict[str, Any]]:
    """Schedulers that beat within ``SCHEDULER_LIVE_SECONDS``: name, host, pid, version."""
    S = schema.schedulers
    with store.engine.connect() as conn:
        rows = conn.execute(
            sa.select(S.c.name, S.c.host, S.c.pid, S.c.version, S.c.last_beat)
            .where(S.c.last_beat >= store.clock() - SCHEDULER_LIVE_SECONDS)
            .where(S.c.name != _PROBE)
            .order_by(S.c.name)
        )
        return [dict(r._mapping) for r in rows]


def loop_alive(scheduler: Scheduler) -> bool:
    """The scheduler's loop thread runs and its housekeeping turned lately (on its clock)."""
    thread = scheduler._thread
    if thread is None or not thread.is_alive() or scheduler.stopping.is_set():
        return False
    return scheduler.clock() - scheduler._last_housekeeping < LOOP_STUCK_SECONDS


class SchedulerBeat:
    """Beats for ``scheduler`` every ``BEAT_SECONDS`` while its loop is alive; ``stop``
    removes its row, so readiness changes at once when a scheduler stops cleanly."""

    def __init__(self, store: JobStore, scheduler: Scheduler) -> None:
        self.store = store
        self.scheduler = scheduler
        self.started_at = store.clock()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def beat_once(self) -> bool:
        """One beat if the loop is alive; whether it beat."""
        if not loop_alive(self.scheduler):
            return False
        beat(self.store, self.scheduler.name, started_at=self.started_at)
        return True

    def start(self) -> SchedulerBeat:
        self._thread = threading.Thread(target=self._run, name="zhuge-beat", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                self.beat_once()
            except Exception as exc:  # the database is away: readiness says so elsewhere
                log.warning("scheduler beat not written: %s", exc)
            self._stopping.wait(BEAT_SECONDS)

    def stop(self) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        try:
            forget(self.store, self.scheduler.name)
        except Exception as exc:
            log.warning("scheduler beat not removed: %s", exc)


@dataclass(frozen=True)
class Readiness:
    ready: bool
    reasons: list[str] = field(default_factory=list)
    schedulers: list[dict[str, Any]] = field(default_factory=list)
    workers: int = 0
    queued: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "ready": self.ready,
            "reasons": self.reasons,
            "schedulers": self.schedulers,
            "workers": self.workers,
            "queued": self.queued,
        }


def _database_problem(store: JobStore) -> str | None:
    """Why the database cannot serve the queue, or None. The reason names the failure, not
    the database (``/readyz`` answers without a token); the log has the driver's words."""
    try:
        with store.engine.connect() as conn:
            conn.execute(sa.select(1))
            conn.rollback()
    except sa.exc.DBAPIError as exc:
        log.warning("readiness: database unreachable: %s", exc.orig)
        return f"the database cannot be reached ({type(exc.orig).__name__})"
    try:
        with store.engine.connect() as conn:
            trans = conn.begin()
            try:
                now = store.clock()
                conn.execute(
                    schema.schedulers.insert().values(
                        name=_PROBE, host="", pid=0, version="", started_at=now, last_beat=now
                    )
                )
            finally:
                trans.rollback()  # a probe: nothing is kept
    except sa.exc.DBAPIError as exc:
        log.warning("readiness: database refuses writes: %s", exc.orig)
        return f"the database refuses writes ({type(exc.orig).__name__})"
    return None


def _pools_can_grow(store: JobStore) -> bool:
    """A live autoscaler holds its lease and some pool in force may have workers: a pool
    at zero with jobs queued is a deployment that makes progress (its first worker starts)."""
    from zhuge.jobs.elastic.autoscaler import lease_holder
    from zhuge.jobs.elastic.pool_config import pool_workers

    return lease_holder(store) is not None and bool(pool_workers(store))


def readiness(store: JobStore) -> Readiness:
    """Whether the deployment can make progress, and every reason it cannot."""
    problem = _database_problem(store)
    if problem is not None:
        return Readiness(ready=False, reasons=[problem])
    reasons: list[str] = []
    try:
        schedulers = live_schedulers(store)
        workers = store.workers()
        with store.engine.connect() as conn:
            queued = conn.execute(
                sa.select(sa.func.count())
                .select_from(schema.jobs)
                .where(schema.jobs.c.state == JobState.QUEUED.value)
            ).scalar_one()
    except sa.exc.DBAPIError as exc:  # it went away between the probe and here
        log.warning("readiness: database unreachable: %s", exc.orig)
        return Readiness(
            ready=False, reasons=[f"the database cannot be reached ({type(exc.orig).__name__})"]
        )
    if not schedulers:
        reasons.append(
            f"no scheduler loop is alive (none beat in the last {SCHEDULER_LIVE_SECONDS:g} s)"
        )
    if queued and not workers and not _pools_can_grow(store):
        reasons.append(
            f"{queued} job(s) queued and no worker is known (none seen in the last "
            f"{WORKER_LIVE_SECONDS:g} s)"
        )
    return Readiness(
        ready=not reasons,
        reasons=reasons,
        schedulers=schedulers,
        workers=len(workers),
        queued=int(queued),
    )
