"""Job dependencies: a job submitted ``after`` other jobs waits, ``blocked``, until they all
succeed; a dead or cancelled upstream job cancels it.

Every function here takes the caller's connection and writes inside the caller's
transaction, so a dependency is never released or cancelled apart from the state change
that causes it:

- the success of the last upstream job queues its dependents (``release``);
- an upstream job's ``dead`` or ``cancelled`` end cancels its blocked dependents, and theirs,
  transitively, each with an event naming the upstream job and ``cancelled_by`` set to the
  job whose end started it (``cancel_dependents``);
- the retry of that job by hand puts the dependents it cancelled back to ``blocked``
  (``reblock``), except those another upstream job still keeps from running.

**The race this module closes.** A dependent is checked and changed only with its row
locked (``FOR UPDATE`` on PostgreSQL; SQLite serialises writers with ``BEGIN IMMEDIATE``),
and a submission ``after`` a job locks that job's row (``FOR UPDATE``) while it reads the
job's state, inserts the edge and sets the job's ``has_dependents``. So of two upstream jobs
succeeding at once the second to commit always sees the first one's success, and a job
finishing while a dependent is being submitted either is seen finished by the submission or
sees the flag (the success's UPDATE, having waited for the row, reads its newest version)
and then the edge. Locks are taken upstream first, then dependents in id order.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from zhuge.errors import InvalidRequest
from zhuge.jobs import schema
from zhuge.jobs.states import JobState

if TYPE_CHECKING:
    from zhuge.jobs.store import JobStore

J = schema.jobs
D = schema.job_dependencies

MAX_AFTER = 100
"""Upstream jobs one job may wait for."""

ENDED = (JobState.DEAD.value, JobState.CANCELLED.value)


def checked_after(after: Iterable[Any] | None) -> list[int]:
    """``after`` as a list of distinct job ids, in the order given; ``InvalidRequest`` for a
    value that is not a positive integer or for too many."""
    ids: list[int] = []
    for value in after or ():
        if isinstance(value, bool) or not isinstance(value, int | str):
            raise InvalidRequest(f"after: {value!r} is not a job id")
        text = str(value).strip()
        if not text.isdigit() or int(text) < 1:
            raise InvalidRequest(f"after: {value!r} is not a job id")
        if int(text) not in ids:
            ids.append(int(text))
    if len(ids) > MAX_AFTER:
        raise InvalidRequest(f"after: at most {MAX_AFTER} jobs, not {len(ids)}")
    return ids


class Dependencies:
    """The dependency edges of ``store``'s jobs; every method writes in the caller's
    transaction (module docstring)."""

    def __init__(self, store: JobStore) -> None:
        self.store = store

    def _lock(self, query: sa.Select[Any]) -> sa.Select[Any]:
        return query.with_for_update() if self.store.is_postgres else query

    # -- at submit ----------------------------------------------------------------------

    def initial_state(self, conn: Connection, *, tenant: str, after: Sequence[int]) -> JobState:
        """Where a job submitted ``after`` these jobs starts: ``queued`` if they all
        succeeded, else ``blocked``. Refused: a job that is not ``tenant``'s (named the same
        as one that does not exist), and one that is dead or cancelled (a job after it would
        never run). Locks the upstream rows until the caller's transaction ends."""
        if not after:
            return JobState.QUEUED
        rows = conn.execute(
            self._lock(
                sa.select(J.c.id, J.c.state)
                .where(J.c.id.in_(list(after)), J.c.tenant == tenant)
                .order_by(J.c.id)
            )
        ).all()
        found = {r.id: JobState(r.state) for r in rows}
        for job_id in after:
            if job_id not in found:  # a bad reference in a request, as a bad data reference
                raise InvalidRequest(f"after: job {job_id} does not exist")
            if found[job_id].value in ENDED:
                raise InvalidRequest(
                    f"after: job {job_id} is {found[job_id].value}, so a job after it would "
                    f"never run; retry it first (zhuge jobs retry {job_id})"
                )
        done = all(state is JobState.SUCCEEDED for state in found.values())
        return JobState.QUEUED if done else JobState.BLOCKED

    def link(self, conn: Connection, edges: Sequence[tuple[int, int]]) -> None:
        """Record ``(job, upstream)`` edges, and mark the upstream jobs as having
        dependents (``jobs.has_dependents``: only their successes look for some to release)."""
        if edges:
            conn.execute(
                D.insert(), [{"job_id": job, "upstream_id": upstream} for job, upstream in edges]
            )
            upstream = sorted({up for _, up in edges})
            conn.execute(
                J.update()
                .where(J.c.id.in_(upstream), J.c.has_dependents.is_(False))
                .values(has_dependents=True)
            )

    # -- reads --------------------------------------------------------------------------

    def upstream(self, conn: Connection, job_ids: Iterable[int]) -> dict[int, list[int]]:
        """The jobs each of ``job_ids`` waits for (or waited for), in id order."""
        ids = list(job_ids)
        out: dict[int, list[int]] = {job_id: [] for job_id in ids}
        if not ids:
            return out
        rows = conn.execute(
            sa.select(D.c.job_id, D.c.upstream_id)
            .where(D.c.job_id.in_(ids))
            .order_by(D.c.job_id, D.c.upstream_id)
        )
        for row in rows:
            out[row.job_id].append(row.upstream_id)
        return out

    def _dependents(self, conn: Connection, job_ids: Sequence[int], state: JobState) -> list[int]:
        """The dependents of ``job_ids`` now in ``state``, locked, in id order."""
        if not job_ids:
            return []
        waiting = sa.select(D.c.job_id).where(D.c.upstream_id.in_(list(job_ids)))
        rows = conn.execute(
            self._lock(
                sa.select(J.c.id)
                .where(J.c.id.in_(waiting), J.c.state == state.value)
                .order_by(J.c.id)
            )
        )
        return [r.id for r in rows]

    # -- state changes ------------------------------------------------------------------

    def release(self, conn: Connection, job_id: int, now: float) -> list[int]:
        """After ``job_id`` succeeded: queue its blocked dependents whose upstream jobs have
        all succeeded now. Returns their ids."""
        candidates = self._dependents(conn, [job_id], JobState.BLOCKED)
        if not candidates:
            return []
        U = J.alias("upstream")
        unfinished = set(
            conn.execute(
                sa.select(D.c.job_id)
                .join(U, U.c.id == D.c.upstream_id)
                .where(D.c.job_id.in_(candidates), U.c.state != JobState.SUCCEEDED.value)
                .distinct()
            ).scalars()
        )
        ready = [c for c in candidates if c not in unfinished]
        if ready:
            conn.execute(
                J.update()
                .where(J.c.id.in_(ready), J.c.state == JobState.BLOCKED.value)
                .values(state=JobState.QUEUED.value, not_before=now, updated_at=now)
            )
            self.store._event(
                conn,
                [
                    (
                        job,
                        0,
                        JobState.BLOCKED,
                        JobState.QUEUED,
                        f"the jobs it waited for succeeded (the last: job {job_id})",
                    )
                    for job in ready
                ],
                now,
            )
        return ready

    def cancel_dependents(
        self, conn: Connection, job_id: int, ended: JobState, now: float
    ) -> list[int]:
        """After ``job_id`` ended ``ended`` (dead or cancelled): cancel its blocked dependents
        and theirs, transitively. Returns their ids."""
        cancelled: list[int] = []
        frontier = [job_id]
        cause = f"job {job_id} is {ended.value}"
        error = f"cancelled: upstream job {job_id} ended {ended.value}"
        while frontier:
            found = self._dependents(conn, frontier, JobState.BLOCKED)
            if not found:
                break
            edges = conn.execute(
                sa.select(D.c.job_id, D.c.upstream_id).where(
                    D.c.job_id.in_(found), D.c.upstream_id.in_(frontier)
                )
            ).all()
            via: dict[int, int] = {}  # the upstream job each was cancelled through
            for edge in sorted(edges, key=lambda e: (e.job_id, e.upstream_id)):
                via.setdefault(edge.job_id, edge.upstream_id)
            conn.execute(
                J.update()
                .where(J.c.id.in_(found), J.c.state == JobState.BLOCKED.value)
                .values(
                    state=JobState.CANCELLED.value,
                    cancelled_by=job_id,
                    finished_at=now,
                    updated_at=now,
                    error=error,
                )
            )
            self.store._event(
                conn,
                [
                    (
                        job,
                        0,
                        JobState.BLOCKED,
                        JobState.CANCELLED,
                        f"upstream job {job_id} is {ended.value}"
                        if via[job] == job_id
                        else f"upstream job {via[job]} was cancelled ({cause})",
                    )
                    for job in found
                ],
                now,
            )
            cancelled.extend(found)
            frontier = found
        return cancelled

    def reblock(self, conn: Connection, job_id: int, now: float) -> list[int]:
        """After ``job_id`` was retried by hand: the dependents its end cancelled wait again
        (``blocked``), unless another of their upstream jobs is still dead or cancelled.
        Returns their ids."""
        rows = conn.execute(
            self._lock(
                sa.select(J.c.id)
                .where(J.c.cancelled_by == job_id, J.c.state == JobState.CANCELLED.value)
                .order_by(J.c.id)
            )
        )
        chosen = {r.id for r in rows}
        if not chosen:
            return []
        U = J.alias("upstream")
        edges = conn.execute(
            sa.select(D.c.job_id, D.c.upstream_id, U.c.state)
            .join(U, U.c.id == D.c.upstream_id)
            .where(D.c.job_id.in_(chosen))
        ).all()
        # a job stays cancelled while one of its upstream jobs, other than the retried one
        # and those re-blocked with it, has ended: it would never run
        changed = True
        while changed:
            changed = False
            for edge in edges:
                if (
                    edge.job_id in chosen
                    and edge.upstream_id != job_id
                    and edge.upstream_id not in chosen
                    and edge.state in ENDED
                ):
                    chosen.discard(edge.job_id)
                    changed = True
        ids = sorted(chosen)
        if ids:
            conn.execute(
                J.update()
                .where(J.c.id.in_(ids), J.c.state == JobState.CANCELLED.value)
                .values(
                    state=JobState.BLOCKED.value,
                    cancelled_by=None,
                    finished_at=None,
                    error=None,
                    updated_at=now,
                )
            )
            self.store._event(
                conn,
                [
                    (job, 0, JobState.CANCELLED, JobState.BLOCKED, f"upstream job {job_id} retried")
                    for job in ids
                ],
                now,
            )
        return ids
