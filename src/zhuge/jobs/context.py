"""What a running job's code may touch: its ids, its artifact folder, logs, progress, cancel."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from zhuge.artifacts import ArtifactDir

T = TypeVar("T")
R = TypeVar("R")


class JobCancelled(Exception):
    """Raised inside a job when it was cancelled or lost its lease; the runner swallows it."""


@dataclass
class JobContext:
    job_id: int
    attempt: int
    tenant: str
    artifacts: ArtifactDir
    """This attempt's own folder (``jobs/<id>/attempt-<n>/``); only the winning attempt's
    folder is named in the committed result."""
    artifacts_root: ArtifactDir
    """The root of all artifacts, to read other jobs' outputs (``--model-from JOB``)."""
    data_roots: tuple[str, ...] = ()
    """The server's allowed roots (``ZHUGE_DATA_ROOTS``); the tenant's own come from the
    store. Empty: no server path may be read (``zhuge.jobs.inputs``)."""
    private_paths: tuple[str, ...] = ()
    """The platform's own files, which no data reference may reach."""
    db_url: str | None = None
    """The platform's store, where datasets, connections and jobs are looked up."""
    cancelled: threading.Event = field(default_factory=threading.Event)
    _log: Callable[[str], None] = print
    _progress: dict[str, Any] = field(default_factory=dict)
    _extra_cpu_seconds: float = 0.0

    def log(self, message: str) -> None:
        self._log(str(message))

    def progress(self, done: float, total: float, message: str = "") -> None:
        """Report progress; it reaches the store with the next heartbeat (no write per call)."""
        self._progress.update(done=done, total=total, message=message)
        self.check_cancelled()

    @property
    def latest_progress(self) -> dict[str, Any]:
        return dict(self._progress)

    def map(self, fn: Callable[[T], R], items: Iterable[T], *, message: str = "") -> list[R]:
        """``[fn(item) for item in items]`` spread over the cluster's workers, with progress
        (see ``zhuge.jobs.fanout``). Give it whole chunks of work, not one item per VM."""
        from zhuge.jobs.fanout import fan_out

        return fan_out(self, fn, items, message=message)

    def add_cpu_seconds(self, seconds: float) -> None:
        """Count CPU time this job's code spent in other processes (parts of ``map``)."""
        self._extra_cpu_seconds += max(0.0, seconds)

    @property
    def extra_cpu_seconds(self) -> float:
        return self._extra_cpu_seconds

    def check_cancelled(self) -> None:
        if self.cancelled.is_set():
            raise JobCancelled(f"job {self.job_id} attempt {self.attempt} was cancelled")

    def sleep(self, seconds: float) -> None:
        """Sleep, waking at once if the job is cancelled."""
        if self.cancelled.wait(seconds):
            self.check_cancelled()


def local_context(job_id: int = 0, *, artifacts_url: str, tenant: str = "local") -> JobContext:
    """A context for running a kind's code in-process, outside the platform (tests, library use)."""
    root = ArtifactDir(artifacts_url)
    return JobContext(
        job_id=job_id,
        attempt=1,
        tenant=tenant,
        artifacts=root.child(f"jobs/{job_id}/attempt-1"),
        artifacts_root=root,
    )
