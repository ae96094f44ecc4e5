"""What a running job's code may touch: its ids, its artifact folder, logs, progress, cancel,
checkpoints.

**Stopping.** The runner stops a job by setting its context's stop flag (``cancelled``) with a
cause (``stop_reason``): the user cancelled it or its lease was lost (``cancelled``), it ran
past its ``timeout_s`` (``timed_out``), or admission asked it to yield its place
(``preempted``). The job's code notices at its next ``check_cancelled``, ``sleep`` or
``progress`` call, which raise ``JobCancelled`` (``JobTimedOut`` or ``JobPreempted`` for those
causes, both subclasses), and the runner records the outcome the cause calls for: a
preempted attempt is *lost*, not failed; a timed-out one *fails*. Code that never calls them
is stopped only when it runs isolated in a child process (``zhuge.jobs.runner``, a GPU
fraction or a ``memory_gb`` cap), which is killed.
"""

from __future__ import annotations

import io
import pickle
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from zhuge.artifacts import ArtifactDir

T = TypeVar("T")
R = TypeVar("R")


CANCELLED = "cancelled"
TIMED_OUT = "timed_out"
PREEMPTED = "preempted"

CHECKPOINT_FOLDER = "checkpoint"
CHECKPOINT_FILE = "state.pkl"


class JobCancelled(Exception):
    """Raised inside a job when it was cancelled or lost its lease; the runner swallows it."""


class JobTimedOut(JobCancelled):
    """Raised inside a job that ran past its ``timeout_s``; the attempt fails."""


class JobPreempted(JobCancelled):
    """Raised inside a job that admission asked to yield; the attempt is lost, not failed."""


_STOPS: dict[str, type[JobCancelled]] = {
    CANCELLED: JobCancelled,
    TIMED_OUT: JobTimedOut,
    PREEMPTED: JobPreempted,
}


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
    """The stop flag: set when the job must stop, for the cause in ``stop_reason``."""
    workers: tuple[str, ...] = ()
    """The Dask workers admission placed this attempt on; ``map`` runs its parts there
    (empty: anywhere)."""
    cpus: float = 0.0
    """The CPU admission booked for the attempt on each of its workers: ``map`` runs at most
    that many parts at once on each (at least one)."""
    checkpoints: ArtifactDir | None = None
    """``jobs/<id>/checkpoint/``: shared by every attempt of the job (None: no checkpoints)."""
    _stop: tuple[str, str] | None = None
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

    def stop(self, reason: str, message: str = "") -> None:
        """Ask the job to stop, for ``reason`` (``cancelled``, ``timed_out``, ``preempted``).
        The first cause given is the one kept: a job timed out and then cancelled timed out."""
        if reason not in _STOPS:
            raise ValueError(f"unknown stop reason {reason!r}")
        if self._stop is None:
            self._stop = (reason, message)
        self.cancelled.set()

    @property
    def stop_reason(self) -> str | None:
        """Why the job was asked to stop (None while it may run on). A flag set directly on
        ``cancelled`` reads as ``cancelled``."""
        if self._stop is not None:
            return self._stop[0]
        return CANCELLED if self.cancelled.is_set() else None

    @property
    def stop_message(self) -> str:
        """The cause in words, as the attempt's error records it."""
        if self._stop is not None and self._stop[1]:
            return self._stop[1]
        reason = self.stop_reason
        return f"job {self.job_id} attempt {self.attempt} was {reason}" if reason else ""

    def stop_exception(self) -> JobCancelled:
        """The exception that ``check_cancelled`` raises now that the job must stop."""
        return _STOPS[self.stop_reason or CANCELLED](self.stop_message)

    def check_cancelled(self) -> None:
        if self.cancelled.is_set():
            raise self.stop_exception()

    def sleep(self, seconds: float) -> None:
        """Sleep, waking at once if the job is cancelled."""
        if self.cancelled.wait(seconds):
            self.check_cancelled()

    # -- checkpoints ---------------------------------------------------------------------

    def save_checkpoint(self, obj: Any) -> None:
        """Save ``obj`` (anything picklable) as this job's checkpoint, replacing the last.

        A kind opts in to resuming by calling this now and then and ``load_checkpoint`` when
        it starts: an attempt that was preempted, timed out or lost with its worker leaves
        its last checkpoint to the next attempt, which resumes instead of starting over.
        The file is written beside the old one and renamed over it, so a crash mid-write
        leaves the previous checkpoint whole. Checkpoints are the job's own (all its
        attempts share ``jobs/<id>/checkpoint/``); load only what your kind saved.
        """
        if self.checkpoints is None:
            raise RuntimeError("this context has no checkpoint folder")
        buf = io.BytesIO()
        pickle.dump(obj, buf, protocol=pickle.HIGHEST_PROTOCOL)
        _write_atomically(self.checkpoints, CHECKPOINT_FILE, buf.getvalue())

    def load_checkpoint(self) -> Any | None:
        """The object the last ``save_checkpoint`` of any attempt of this job saved, or None
        when there is none (the first attempt, or a kind that never saves)."""
        if self.checkpoints is None or not self.checkpoints.exists(CHECKPOINT_FILE):
            return None
        return pickle.loads(self.checkpoints.read_bytes(CHECKPOINT_FILE))


def _write_atomically(folder: ArtifactDir, name: str, data: bytes) -> None:
    """Write ``name`` under ``folder`` so a reader sees the old bytes or the new, never part:
    write a temporary file beside it, then move it over (a rename on local disks; object
    stores write an object whole anyway)."""
    import uuid

    temporary = f".{name}.{uuid.uuid4().hex}.tmp"
    fs, root = folder._fs
    try:
        folder.write_bytes(temporary, data)
        fs.mv(f"{root}/{temporary}", f"{root}/{name}")
    except BaseException:
        if fs.exists(f"{root}/{temporary}"):
            fs.rm(f"{root}/{temporary}")
        raise


def local_context(job_id: int = 0, *, artifacts_url: str, tenant: str = "local") -> JobContext:
    """A context for running a kind's code in-process, outside the platform (tests, library use)."""
    root = ArtifactDir(artifacts_url)
    return JobContext(
        job_id=job_id,
        attempt=1,
        tenant=tenant,
        artifacts=root.child(f"jobs/{job_id}/attempt-1"),
        artifacts_root=root,
        checkpoints=root.child(f"jobs/{job_id}/{CHECKPOINT_FOLDER}"),
    )
