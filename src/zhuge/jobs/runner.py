"""One attempt of one job, as it runs inside a Dask worker.

The runner talks to the store itself: it marks the attempt started, renews the lease from a
heartbeat thread, and commits the result or the failure, each write fenced by the attempt
number. So a job's outcome does not depend on the process that submitted it staying alive,
and a worker killed mid-job simply stops heartbeating: its lease expires and the job runs again.
"""

from __future__ import annotations

import logging
import threading
import time
import traceback as tb
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import psutil

from zhuge.artifacts import ArtifactDir
from zhuge.errors import InvalidRequest
from zhuge.jobs.context import JobCancelled, JobContext
from zhuge.jobs.inputs import resolve_params
from zhuge.jobs.kinds import get_kind
from zhuge.jobs.model import Job
from zhuge.jobs.states import LostReason
from zhuge.jobs.store import JobStore, store_for

log = logging.getLogger(__name__)

LOG_FLUSH_LINES = 200

Clock = Callable[[], float]
"""Seconds on some monotonic scale: what a chain's time limit is measured with."""


@dataclass(frozen=True)
class AttemptSpec:
    """Everything a worker needs to run an attempt; small and picklable."""

    db_url: str
    artifacts_url: str
    job_id: int
    attempt: int
    lease_seconds: float
    heartbeat_seconds: float
    retry_base_seconds: float = 2.0
    retry_max_seconds: float = 600.0
    owner: str | None = None
    """The scheduler that launched this attempt; chained attempts carry its lease."""
    resources: dict[str, float] | None = None
    """What the Dask task holds; only jobs needing exactly this are chained onto it."""
    chain_seconds: float = 0.0
    """Go on claiming and running queued jobs for this long after the first (0: never)."""
    data_roots: tuple[str, ...] = ()
    """The server's allowed roots, checked again as the job reads (``zhuge.jobs.inputs``)."""
    private_paths: tuple[str, ...] = ()
    """The platform's own files, which no job may read as input."""


class _Heartbeat(threading.Thread):
    """Renews the lease of the attempt running now and flushes its logs and progress; sets
    its ``cancelled`` when the attempt is no longer ours (cancelled by a user, or superseded
    after our lease expired). One thread per Dask task, serving each attempt of a chain in
    turn (``attach``/``detach``), so a chained job costs no thread start."""

    def __init__(self, store: JobStore, spec: AttemptSpec) -> None:
        super().__init__(name=f"zhuge-heartbeat-{spec.job_id}", daemon=True)
        self.store = store
        self.interval = spec.heartbeat_seconds
        self.lease_seconds = spec.lease_seconds
        self.stopped = threading.Event()
        self._current: tuple[int, int, JobContext] | None = None
        self._lines: list[tuple[int, int, float, str]] = []
        self._lock = threading.Lock()

    def attach(self, ctx: JobContext) -> None:
        """Serve this attempt from now on; its ``ctx.log`` writes through us."""
        job_id, attempt = ctx.job_id, ctx.attempt

        def log_line(line: str) -> None:
            at = self.store.clock()
            with self._lock:
                self._lines.append((job_id, attempt, at, line))
                full = len(self._lines) >= LOG_FLUSH_LINES
            if full:
                self.flush_logs()

        ctx._log = log_line
        with self._lock:
            self._current = (job_id, attempt, ctx)

    def detach(self) -> None:
        """The attempt is over: stop renewing its lease and write its last log lines."""
        with self._lock:
            self._current = None
        self.flush_logs()

    def flush_logs(self) -> None:
        with self._lock:
            lines, self._lines = self._lines, []
        by_attempt: dict[tuple[int, int], list[tuple[float, str]]] = {}
        for job_id, attempt, at, line in lines:
            by_attempt.setdefault((job_id, attempt), []).append((at, line))
        for (job_id, attempt), batch in by_attempt.items():
            try:
                self.store.append_logs(job_id, attempt, batch)
            except Exception:  # logs are best effort; the outcome is what must not be lost
                log.exception("could not write %d log lines of job %s", len(batch), job_id)

    def run(self) -> None:
        while not self.stopped.wait(self.interval):
            self.flush_logs()
            with self._lock:
                current = self._current
            if current is None:
                continue
            job_id, attempt, ctx = current
            try:
                alive = self.store.heartbeat(
                    job_id,
                    attempt,
                    lease_seconds=self.lease_seconds,
                    progress=ctx.latest_progress or None,
                )
            except Exception:
                log.exception("heartbeat of job %s failed; will retry", job_id)
                continue
            if not alive:
                ctx.cancelled.set()  # that attempt's ctx, even if another is attached by now

    def stop(self) -> None:
        self.stopped.set()
        self.flush_logs()


@dataclass(frozen=True)
class _Chain:
    """How a task goes on to the next queued job after each one, until ``deadline`` on
    ``clock``."""

    spec: AttemptSpec
    worker: str
    clock: Clock
    deadline: float

    @property
    def open(self) -> bool:
        return self.clock() < self.deadline

    @property
    def claim_as(self) -> dict[str, Any]:
        """``claim_next``'s arguments: the scheduler's lease, this worker, the task's resources."""
        return {
            "owner": self.spec.owner,
            "worker": self.worker,
            "lease_seconds": self.spec.lease_seconds,
            "resources": self.spec.resources,
        }


def _cpu_seconds() -> float:
    times = psutil.Process().cpu_times()
    return times.user + times.system + times.children_user + times.children_system


def _worker_name() -> str:
    try:
        from distributed import get_worker

        return get_worker().address
    except (ImportError, ValueError):
        import os
        import socket

        return f"{socket.gethostname()}:{os.getpid()}"


def run_attempt(spec: AttemptSpec, *, clock: Clock = time.monotonic) -> dict[str, Any]:
    """Run attempt ``spec.attempt`` of job ``spec.job_id``, then maybe more; returns what
    happened, briefly.

    Never raises for the jobs' own errors: they are recorded in the store as failed attempts,
    so Dask sees a finished task either way.

    **Chaining.** With ``spec.chain_seconds`` > 0 the task does not end with its job: while
    that time lasts it claims the next queued job that needs the same resources
    (``JobStore.claim_next``) and runs it here, saving the scheduler and Dask round trip
    that dominates the cost of short jobs. The slot stays the scheduler's (one Dask task),
    the queue order is the store's, and each chained attempt is fenced, heartbeated and
    committed exactly like the first. A chain stops at the first cancelled or superseded
    attempt, when the queue has nothing for it, or when its time is up on ``clock`` (tests
    pass one they control; the store's own clock stamps the rows).
    """
    store = store_for(
        spec.db_url,
        retry_base_seconds=spec.retry_base_seconds,
        retry_max_seconds=spec.retry_max_seconds,
    )
    worker = _worker_name()
    job = store.start_attempt(
        spec.job_id, spec.attempt, worker=worker, lease_seconds=spec.lease_seconds
    )
    if job is None:
        # Not ours to run: cancelled or superseded before it started, or (Dask re-runs a task
        # only after the worker that held it died) the attempt already started on a worker
        # that is gone. In that last case fail the attempt now instead of waiting for its
        # lease to run out; in the others the fenced write finds no row and does nothing.
        store.lose_attempt(
            spec.job_id,
            spec.attempt,
            LostReason.WORKER_DIED,
            "its worker died mid-attempt (Dask re-ran the task elsewhere)",
            require_started=True,
        )
        return {"job_id": spec.job_id, "attempt": spec.attempt, "outcome": "stale"}
    chain = None
    if spec.chain_seconds > 0 and spec.owner and spec.resources is not None:
        chain = _Chain(spec, worker, clock, deadline=clock() + spec.chain_seconds)
    beat = _Heartbeat(store, spec)
    beat.start()
    chained = 0
    try:
        outcome, nxt = _run_started(store, spec, job, beat, chain)
        while nxt is not None:
            chained += 1
            _, nxt = _run_started(store, spec, nxt, beat, chain)
    finally:
        beat.stop()
    return {"job_id": job.id, "attempt": job.attempt, "outcome": outcome, "chained": chained}


def _run_started(
    store: JobStore, spec: AttemptSpec, job: Job, beat: _Heartbeat, chain: _Chain | None
) -> tuple[str, Job | None]:
    """Run a started attempt's code and commit its outcome: the outcome, in a word, and the
    next job of the chain, already claimed and started (committed in the same transaction
    as a success), or None."""
    root = ArtifactDir(spec.artifacts_url)
    ctx = JobContext(
        job_id=job.id,
        attempt=job.attempt,
        tenant=job.tenant,
        artifacts=root.child(job.artifact_prefix()),
        artifacts_root=root,
        data_roots=spec.data_roots,
        private_paths=spec.private_paths,
        db_url=spec.db_url,
    )
    beat.attach(ctx)
    cpu_before = _cpu_seconds()
    nxt: Job | None = None
    try:
        kind = get_kind(job.kind)
        # Counted from here: in a fresh worker process, finding the kind imports every kind's
        # module, seconds of CPU that are the platform's cost, not the job's.
        cpu_before = _cpu_seconds()
        # every reference to data is checked again and resolved before the kind's code runs
        result = kind.run(resolve_params(kind.parse(job.params), ctx), ctx)
        beat.detach()
        complete = {
            "result": result,
            "cpu_seconds": _cpu_seconds() - cpu_before + ctx.extra_cpu_seconds,
            "progress": ctx.latest_progress or None,
        }
        if chain is not None and chain.open:
            committed, nxt = store.complete_and_claim_next(
                job.id, job.attempt, **complete, **chain.claim_as
            )
        else:
            committed = store.complete(job.id, job.attempt, **complete)
        return ("succeeded" if committed else "superseded"), nxt
    except JobCancelled:
        beat.detach()
        return "cancelled", None  # a chain ends here: the task may be about to be cancelled
    except BaseException as exc:
        beat.detach()
        error = f"{type(exc).__name__}: {exc}"
        failed = store.fail_attempt(
            job.id,
            job.attempt,
            error=error,
            traceback=tb.format_exc(),
            cpu_seconds=_cpu_seconds() - cpu_before + ctx.extra_cpu_seconds,
            # Bad input (a missing column, an unknown model id) fails the same way every
            # time: the job goes dead at once instead of burning its retries.
            retryable=not isinstance(exc, InvalidRequest),
        )
        if not isinstance(exc, Exception):
            raise
        if failed is None:
            return "superseded", None
        if chain is not None and chain.open:
            nxt = store.claim_next(**chain.claim_as)
        return failed.state.value, nxt
