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
from dataclasses import dataclass, replace
from typing import Any

import psutil

from zhuge.artifacts import ArtifactDir
from zhuge.errors import InvalidRequest
from zhuge.jobs.context import JobCancelled, JobContext
from zhuge.jobs.kinds import get_kind
from zhuge.jobs.model import Job
from zhuge.jobs.store import JobStore, store_for

log = logging.getLogger(__name__)

LOG_FLUSH_LINES = 200


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


class _Heartbeat(threading.Thread):
    """Renews the lease and flushes logs and progress; sets ``cancelled`` when the attempt
    is no longer ours (cancelled by a user, or superseded after our lease expired)."""

    def __init__(self, store: JobStore, spec: AttemptSpec, ctx: JobContext) -> None:
        super().__init__(name=f"zhuge-heartbeat-{spec.job_id}", daemon=True)
        self.store = store
        self.spec = spec
        self.ctx = ctx
        self.stopped = threading.Event()
        self._lines: list[tuple[float, str]] = []
        self._lock = threading.Lock()

    def log(self, line: str) -> None:
        with self._lock:
            self._lines.append((time.time(), line))
            full = len(self._lines) >= LOG_FLUSH_LINES
        if full:
            self.flush_logs()

    def flush_logs(self) -> None:
        with self._lock:
            lines, self._lines = self._lines, []
        if lines:
            try:
                self.store.append_logs(self.spec.job_id, self.spec.attempt, lines)
            except Exception:  # logs are best effort; the outcome is what must not be lost
                log.exception(
                    "could not write %d log lines of job %s", len(lines), self.spec.job_id
                )

    def run(self) -> None:
        while not self.stopped.wait(self.spec.heartbeat_seconds):
            self.flush_logs()
            try:
                alive = self.store.heartbeat(
                    self.spec.job_id,
                    self.spec.attempt,
                    lease_seconds=self.spec.lease_seconds,
                    progress=self.ctx.latest_progress or None,
                )
            except Exception:
                log.exception("heartbeat of job %s failed; will retry", self.spec.job_id)
                continue
            if not alive:
                self.ctx.cancelled.set()
                return

    def stop(self) -> None:
        self.stopped.set()
        self.flush_logs()


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


def run_attempt(spec: AttemptSpec) -> dict[str, Any]:
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
    attempt, when the queue has nothing for it, or when its time is up.
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
        store.fail_attempt(
            spec.job_id,
            spec.attempt,
            error="attempt lost: its worker died (Dask re-ran the task elsewhere)",
            traceback=None,
            require_started=True,
        )
        return {"job_id": spec.job_id, "attempt": spec.attempt, "outcome": "stale"}
    outcome = _run_started(store, spec, job)
    chained = 0
    if spec.chain_seconds > 0 and spec.owner and spec.resources is not None:
        deadline = time.monotonic() + spec.chain_seconds
        last = outcome
        while last not in ("cancelled", "superseded") and time.monotonic() < deadline:
            nxt = store.claim_next(
                owner=spec.owner,
                worker=worker,
                lease_seconds=spec.lease_seconds,
                resources=spec.resources,
            )
            if nxt is None:
                break
            last = _run_started(store, spec, nxt)
            chained += 1
    return {"job_id": job.id, "attempt": job.attempt, "outcome": outcome, "chained": chained}


def _run_started(store: JobStore, spec: AttemptSpec, job: Job) -> str:
    """Run a started attempt's code and commit its outcome; the outcome, in a word."""
    root = ArtifactDir(spec.artifacts_url)
    ctx = JobContext(
        job_id=job.id,
        attempt=job.attempt,
        tenant=job.tenant,
        artifacts=root.child(job.artifact_prefix()),
        artifacts_root=root,
    )
    beat = _Heartbeat(store, replace(spec, job_id=job.id, attempt=job.attempt), ctx)
    ctx._log = beat.log
    beat.start()
    cpu_before = _cpu_seconds()
    outcome: str
    try:
        kind = get_kind(job.kind)
        result = kind.run(kind.parse(job.params), ctx)
        beat.stop()
        committed = store.complete(
            job.id,
            job.attempt,
            result=result,
            cpu_seconds=_cpu_seconds() - cpu_before + ctx.extra_cpu_seconds,
            progress=ctx.latest_progress or None,
        )
        outcome = "succeeded" if committed else "superseded"
    except JobCancelled:
        beat.stop()
        outcome = "cancelled"
    except BaseException as exc:
        beat.stop()
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
        outcome = failed.state.value if failed else "superseded"
        if not isinstance(exc, Exception):
            raise
    finally:
        beat.stopped.set()
    return outcome
