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
from dataclasses import dataclass
from typing import Any

import psutil

from zhuge.artifacts import ArtifactDir
from zhuge.errors import InvalidRequest
from zhuge.jobs.context import JobCancelled, JobContext
from zhuge.jobs.kinds import get_kind
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
    """Run attempt ``spec.attempt`` of job ``spec.job_id``; returns what happened, briefly.

    Never raises for the job's own errors: they are recorded in the store as a failed
    attempt, so Dask sees a finished task either way.
    """
    store = store_for(
        spec.db_url,
        retry_base_seconds=spec.retry_base_seconds,
        retry_max_seconds=spec.retry_max_seconds,
    )
    job = store.start_attempt(
        spec.job_id, spec.attempt, worker=_worker_name(), lease_seconds=spec.lease_seconds
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

    root = ArtifactDir(spec.artifacts_url)
    ctx = JobContext(
        job_id=job.id,
        attempt=job.attempt,
        tenant=job.tenant,
        artifacts=root.child(job.artifact_prefix()),
        artifacts_root=root,
    )
    beat = _Heartbeat(store, spec, ctx)
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
    return {"job_id": job.id, "attempt": job.attempt, "outcome": outcome}
