"""One attempt of one job, as it runs inside a Dask worker.

The runner talks to the store itself: it marks the attempt started, renews the lease from a
heartbeat thread, and commits the result or the failure, each write fenced by the attempt
number. So a job's outcome does not depend on the process that submitted it staying alive,
and a worker killed mid-job simply stops heartbeating: its lease expires and the job runs again.

**Stopping an attempt.** The heartbeat thread is also the attempt's watchdog. It sets the
job's stop flag (``JobContext.stop``) with a cause: ``cancelled`` when the attempt is no
longer ours (cancelled, superseded), ``timed_out`` once it has run ``timeout_s`` on the
runner's clock, ``preempted`` when the heartbeat learns admission asked it to yield. Once the
job's code stops, the runner records what the cause calls for: a timeout *fails* the attempt
(it spends one of ``max_attempts`` and retries with backoff), a preemption *loses* it
(``LostReason.PREEMPTED``: no failure counted; its checkpoint, if the kind saves one, lets
the next attempt resume), a cancel records nothing (the store already has).

**Isolation.** An attempt holding a fraction of a GPU (0 < GPU < 1) or a ``memory_gb`` cap
runs its kind's code in a child process of its own (``multiprocessing``, "spawn"), so the cap
applies to it alone and it can be killed alone: the child sees ``CUDA_VISIBLE_DEVICES`` of
its device and ``ZHUGE_GPU_MEMORY_FRACTION``, caps PyTorch's (and CuPy's) allocator to that
fraction, and runs under ``RLIMIT_AS`` of ``memory_gb`` (not when it also holds a GPU: CUDA
reserves far more address space than it uses). Its ``ctx.map`` runs parts one after another
in the child. Its logs and progress come back over
a pipe; the parent goes on heartbeating, and when the job must stop it sends SIGTERM, then
SIGKILL after ``KILL_GRACE_SECONDS``. Code that ignores the stop flag is stopped this way
only; in-process, it runs on until it ends (its result then loses to the fenced writes, or
its lease).
"""

from __future__ import annotations

import dataclasses
import importlib
import logging
import multiprocessing
import os
import pickle
import threading
import time
import traceback as tb
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from zhuge.artifacts import ArtifactDir
from zhuge.errors import InvalidRequest
from zhuge.jobs.context import (
    CANCELLED,
    CHECKPOINT_FOLDER,
    PREEMPTED,
    TIMED_OUT,
    JobCancelled,
    JobContext,
)
from zhuge.jobs.gpus import device_book
from zhuge.jobs.inputs import resolve_params
from zhuge.jobs.kinds import Kind, get_kind
from zhuge.jobs.model import Job
from zhuge.jobs.states import LostReason
from zhuge.jobs.store import JobStore, store_for

log = logging.getLogger(__name__)

LOG_FLUSH_LINES = 200
KILL_GRACE_SECONDS = 5.0
"""How long an isolated attempt's process has to end after SIGTERM before SIGKILL."""
COMMIT_TRIES = 4
COMMIT_RETRY_SECONDS = 0.5
"""A finished attempt's commit is tried ``COMMIT_TRIES`` times, waiting this, then twice as
long, between tries (a PostgreSQL restart or a deadlock is over in seconds)."""
STOP_GRACE_S = 30.0
"""How long an attempt in the worker's process has to stop once its time limit asked it to,
before its heartbeat fails it for it (``_Heartbeat.give_up``)."""
CHILD_POLL_SECONDS = 0.05
"""How often the parent of an isolated attempt looks at the stop flag between messages."""

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
    timeout_s: float | None = None
    """Stop the attempt after this many seconds (None: the job's ``timeout_s``, else its
    kind's). Chained jobs use their own."""
    workers: tuple[str, ...] = ()
    """The worker addresses admission placed this attempt on; ``ctx.map`` parts run there."""


class _Heartbeat(threading.Thread):
    """Renews the lease of the attempt running now and flushes its logs and progress; stops
    it (``JobContext.stop``) when it is no longer ours (cancelled by a user, or superseded
    after our lease expired), when it has run past its time limit, or when admission asks it
    to yield. One thread per Dask task, serving each attempt of a chain in turn
    (``attach``/``detach``), so a chained job costs no thread start."""

    def __init__(self, store: JobStore, spec: AttemptSpec, clock: Clock = time.monotonic) -> None:
        super().__init__(name=f"zhuge-heartbeat-{spec.job_id}", daemon=True)
        self.store = store
        self.interval = spec.heartbeat_seconds
        self.lease_seconds = spec.lease_seconds
        self.clock = clock
        self.stopped = threading.Event()
        self._current: _Watched | None = None
        self._lines: list[tuple[int, int, float, str]] = []
        self._lock = threading.Lock()

    def attach(self, ctx: JobContext, timeout_s: float | None = None) -> None:
        """Serve this attempt from now on; its ``ctx.log`` writes through us. It is stopped
        once it has run ``timeout_s`` seconds on our clock, counted from our first beat of
        it: at most one ``heartbeat_seconds`` late, and only the heartbeat thread reads the
        clock for it, so a test's clock is read where the test expects."""
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
            self._current = _Watched(ctx, timeout_s)

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
            if current is not None:
                self.beat(current)

    def beat(self, current: _Watched) -> None:
        """One heartbeat of the attempt attached now: stop it if its time is up, renew its
        lease, and stop it if it was cancelled or asked to yield. The stop goes to that
        attempt's ctx, even if another is attached by now."""
        ctx = current.ctx
        if current.abandoned:
            return  # failed for it: no more heartbeats; its late commit will be refused
        if current.timeout_s:
            now = self.clock()
            if current.since is None:
                current.since = now
            elif current.stopped_at is None and now - current.since >= current.timeout_s:
                ctx.stop(TIMED_OUT, f"timed out after {current.timeout_s:g}s (timeout_s)")
                ctx.log(f"timed out after {current.timeout_s:g}s (timeout_s): asked to stop")
                current.stopped_at = now
            elif current.stopped_at is not None and now - current.stopped_at >= STOP_GRACE_S:
                self.give_up(current)
                return
        try:
            beat = self.store.heartbeat(
                ctx.job_id,
                ctx.attempt,
                lease_seconds=self.lease_seconds,
                progress=ctx.latest_progress or None,
            )
        except Exception:
            log.exception("heartbeat of job %s failed; will retry", ctx.job_id)
            return
        if not beat:
            ctx.stop(CANCELLED)
        elif getattr(beat, "preempt", False):
            ctx.stop(PREEMPTED, "preempted: admission asked it to yield its resources")

    def give_up(self, current: _Watched) -> None:
        """Its time is up and its code, in this process, did not stop (it never looks at
        its stop flag): the attempt fails now, as a timeout, and is retried under the usual
        rule. Its thread runs on until the code returns (a thread cannot be killed; an
        isolated attempt's process is), but its lease is no longer renewed and its commit
        will be refused, so the time limit bounds the attempt as the queue sees it."""
        ctx, current.abandoned = current.ctx, True
        message = (
            f"timed out after {current.timeout_s:g}s (timeout_s) and did not stop within "
            f"{STOP_GRACE_S:g}s: failed for it (its code runs on in its worker until it "
            "returns; its result will be refused)"
        )
        ctx.log(message)
        self.flush_logs()
        try:
            self.store.fail_attempt(
                ctx.job_id, ctx.attempt, error=f"JobTimedOut: {message}", traceback=None
            )
        except Exception:  # the lease runs out instead: lost, then retried
            log.exception("could not fail timed-out job %s", ctx.job_id)

    def stop(self) -> None:
        self.stopped.set()
        self.flush_logs()


@dataclass
class _Watched:
    """The attempt a heartbeat serves, its time limit, and when (on the heartbeat's clock)
    the heartbeat first saw it."""

    ctx: JobContext
    timeout_s: float | None
    since: float | None = None
    stopped_at: float | None = None  # when its time limit asked it to stop
    abandoned: bool = False  # failed for it after STOP_GRACE_S: no more heartbeats


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
    """This process's CPU seconds, its waited-for children's included: one system call
    (``psutil.Process()`` reads /proc twice to build itself, per job of a chain)."""
    times = os.times()
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
    beat = _Heartbeat(store, spec, clock)
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
        checkpoints=root.child(f"jobs/{job.id}/{CHECKPOINT_FOLDER}"),
        # where admission placed it (a chained job: on this worker), for its map's parts
        workers=(spec.workers if job.id == spec.job_id else ())
        or tuple(job.assigned_workers or ()),
        cpus=float((job.resources or {}).get("CPU", 0.0)),
    )
    cpu_before = _cpu_seconds()
    nxt: Job | None = None
    # Heartbeats from here: in a fresh worker process, finding the kind imports every kind's
    # module, which takes longer than a lease on a loaded machine.
    beat.attach(ctx)
    try:
        kind = get_kind(job.kind)
        beat.attach(ctx, _timeout_of(spec, job, kind))  # its time limit counts from here
        # Counted from here: in a fresh worker process, finding the kind imports every kind's
        # module, seconds of CPU that are the platform's cost, not the job's.
        cpu_before = _cpu_seconds()
        # every reference to data is checked again and resolved before the kind's code runs
        params = resolve_params(kind.parse(job.params), ctx)
        limits = Isolation.of(job.resources)
        if limits is None:
            result = kind.run(params, ctx)
        else:
            result = run_isolated(kind, params, ctx, limits)
        beat.detach()
        complete = {
            "result": result,
            "cpu_seconds": _cpu_seconds() - cpu_before + ctx.extra_cpu_seconds,
            "progress": ctx.latest_progress or None,
        }
    except BaseException as exc:
        beat.detach()
        cpu_seconds = _cpu_seconds() - cpu_before + ctx.extra_cpu_seconds
        if isinstance(exc, JobCancelled) or (
            isinstance(exc, Exception) and ctx.stop_reason in (TIMED_OUT, PREEMPTED)
        ):
            # stopped by its flag, or failing because of the stop (a part cut short): the
            # cause decides the outcome, not the exception the code ended with
            return _stopped(store, job, ctx, chain, cpu_seconds)
        error = f"{type(exc).__name__}: {exc}"
        failed = store.fail_attempt(
            job.id,
            job.attempt,
            error=error,
            traceback=tb.format_exc(),
            cpu_seconds=cpu_seconds,
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
    # outside the guard above: a failure to commit is the platform's, never the job's
    return _commit(store, job, complete, chain)


class CommitFailed(RuntimeError):
    """A finished attempt's result could not be committed (the database was away, or a
    deadlock aborted the transaction each time it was tried)."""


def _commit(
    store: JobStore, job: Job, complete: dict[str, Any], chain: _Chain | None
) -> tuple[str, Job | None]:
    """Commit a finished attempt's result (and claim the chain's next job with it), trying
    again on an error of the store: the job's code succeeded, so a failure here must not
    spend one of its ``max_attempts``. After ``COMMIT_TRIES`` the task ends with
    ``CommitFailed``: the scheduler sees the Dask task end without a result and loses the
    attempt (``worker_died``), which runs again without spending an attempt."""
    for n in range(COMMIT_TRIES):
        try:
            if chain is not None and chain.open:
                committed, nxt = store.complete_and_claim_next(
                    job.id, job.attempt, **complete, **chain.claim_as
                )
            else:
                committed, nxt = store.complete(job.id, job.attempt, **complete), None
            return ("succeeded" if committed else "superseded"), nxt
        except Exception as exc:
            if n == COMMIT_TRIES - 1:
                raise CommitFailed(
                    f"job {job.id} attempt {job.attempt} finished, but its result could not "
                    f"be committed ({type(exc).__name__}: {exc}); the attempt is lost and "
                    "runs again"
                ) from exc
            log.warning("committing job %s failed (%r); trying again", job.id, exc)
            time.sleep(COMMIT_RETRY_SECONDS * 2**n)
    raise AssertionError("unreachable")


def _timeout_of(spec: AttemptSpec, job: Job, kind: Kind) -> float:
    """The attempt's time limit: what the scheduler sent, else the job's, else its kind's."""
    if job.id == spec.job_id and spec.timeout_s:
        return spec.timeout_s
    return job.timeout_s or kind.timeout_s


def _stopped(
    store: JobStore, job: Job, ctx: JobContext, chain: _Chain | None, cpu_seconds: float
) -> tuple[str, Job | None]:
    """Record an attempt whose code stopped because it was asked to, as its cause says."""
    reason = ctx.stop_reason or CANCELLED
    if reason == TIMED_OUT:
        failed = store.fail_attempt(
            job.id,
            job.attempt,
            error=f"JobTimedOut: {ctx.stop_message}",
            traceback=None,
            cpu_seconds=cpu_seconds,
        )
        if failed is None:
            return "superseded", None
        nxt = store.claim_next(**chain.claim_as) if chain is not None and chain.open else None
        return "timed_out", nxt
    if reason == PREEMPTED:
        lost = store.lose_attempt(job.id, job.attempt, LostReason.PREEMPTED, ctx.stop_message)
        # no chain: the resources this task holds are being taken back
        return ("preempted" if lost is not None else "superseded"), None
    return "cancelled", None  # a chain ends here: the task may be about to be cancelled


# -- isolation: an attempt in a child process of its own ---------------------------------


class ResourceLimitExceeded(RuntimeError):
    """An isolated attempt went over its GPU memory fraction or its ``memory_gb``."""


class IsolatedProcessDied(RuntimeError):
    """An isolated attempt's process ended without a result (killed, crashed)."""


@dataclass(frozen=True)
class Isolation:
    """The caps an isolated attempt runs under."""

    gpu_fraction: float | None = None
    memory_gb: float | None = None

    @classmethod
    def of(cls, resources: dict[str, float] | None) -> Isolation | None:
        """The caps for an attempt holding ``resources``; None if it runs in-process."""
        resources = resources or {}
        gpu = float(resources.get("GPU", 0.0))
        memory = float(resources.get("memory_gb", 0.0))
        fraction = gpu if 0 < gpu < 1 else None
        if fraction is None and memory <= 0:
            return None
        return cls(gpu_fraction=fraction, memory_gb=memory if memory > 0 else None)

    def environment(
        self, parent: dict[str, str] | None = None, device: str | None = None
    ) -> dict[str, str]:
        """What the child's environment gains: its device (``device``, as the worker's book
        of GPU fractions placed it; else the first visible) and its share of it."""
        if self.gpu_fraction is None:
            return {}
        if device is None:
            parent = dict(os.environ) if parent is None else parent
            visible = [d.strip() for d in parent.get("CUDA_VISIBLE_DEVICES", "0").split(",")]
            device = next((d for d in visible if d), "0")
        return {
            "CUDA_VISIBLE_DEVICES": device,
            "ZHUGE_GPU_MEMORY_FRACTION": f"{self.gpu_fraction:g}",
        }


@dataclass(frozen=True)
class _ChildTask:
    """What the child needs to run the kind: names and bytes only, so that nothing of the
    kind is imported before the child's environment and limits are in place."""

    kind_module: str
    kind_name: str
    params: bytes
    context: dict[str, Any]
    limits: Isolation
    env: dict[str, str] = field(default_factory=dict)


def run_isolated(kind: Kind, params: Any, ctx: JobContext, limits: Isolation) -> Any:
    """Run ``kind`` on ``params`` in a child process under ``limits``; return its result or
    raise its exception. Logs and progress reach ``ctx`` as they happen; when ``ctx`` is asked
    to stop, the child is terminated (SIGTERM, then SIGKILL after ``KILL_GRACE_SECONDS``)
    and the stop's exception raised."""
    task = _ChildTask(
        kind_module=kind.run.__module__,
        kind_name=kind.name,
        params=pickle.dumps(params),
        context={
            "job_id": ctx.job_id,
            "attempt": ctx.attempt,
            "tenant": ctx.tenant,
            "artifacts": ctx.artifacts,
            "artifacts_root": ctx.artifacts_root,
            "data_roots": ctx.data_roots,
            "private_paths": ctx.private_paths,
            "db_url": ctx.db_url,
            "checkpoints": ctx.checkpoints,
        },
        limits=limits,
    )
    if limits.gpu_fraction is None:
        return _run_child(task, ctx, limits)
    book = device_book()
    placed = book.take(limits.gpu_fraction)
    if not placed.fits:
        ctx.log(
            f"no GPU of this worker has {limits.gpu_fraction:g} free alone: sharing device "
            f"{placed.device}, the emptiest ({book.booked()})"
        )
    try:
        task = dataclasses.replace(task, env=limits.environment(device=placed.device))
        return _run_child(task, ctx, limits)
    finally:
        book.give_back(placed, limits.gpu_fraction)


def _run_child(task: _ChildTask, ctx: JobContext, limits: Isolation) -> Any:
    mp = multiprocessing.get_context("spawn")
    receive, send = mp.Pipe(duplex=False)
    child = mp.Process(
        target=_child_main, args=(task, send), name=f"zhuge-job-{ctx.job_id}", daemon=True
    )
    child.start()
    send.close()  # ours is the reading end: EOF once the child's copy closes
    ctx.log(f"running isolated in process {child.pid} ({limits})")
    try:
        while True:
            if ctx.cancelled.is_set():
                _kill(child)
                raise ctx.stop_exception()
            if not receive.poll(CHILD_POLL_SECONDS):
                continue
            try:
                what, payload = receive.recv()
            except EOFError:
                child.join()
                raise IsolatedProcessDied(
                    f"the job's process ended without a result (exit code {child.exitcode}"
                    + (", killed: over its memory?" if child.exitcode == -9 else "")
                    + ")"
                ) from None
            if what == "log":
                ctx.log(payload)
            elif what == "progress":
                ctx._progress.update(payload)
            elif what == "result":
                child.join()
                return payload
            elif what == "error":
                child.join()
                raise _rebuilt(*payload)
    finally:
        receive.close()
        if child.is_alive():
            _kill(child)


def _kill(child: Any) -> None:
    child.terminate()
    child.join(KILL_GRACE_SECONDS)
    if child.is_alive():
        child.kill()
        child.join()


def _rebuilt(pickled: bytes | None, described: str, traceback: str) -> BaseException:
    """The child's exception, itself when it pickles, else a RuntimeError saying what it was."""
    if pickled is not None:
        try:
            exc = pickle.loads(pickled)  # from our own child process
        except Exception:  # an exception class that does not rebuild from its args
            exc = None
        if isinstance(exc, BaseException):
            exc.add_note(f"raised in the job's own process:\n{traceback}")
            return exc
    return RuntimeError(f"{described}\n{traceback}")


def _child_main(task: _ChildTask, send: Any) -> None:
    """The isolated child: set its environment and limits, import the kind, run it."""
    os.environ.update(task.env)
    limits = task.limits
    try:
        if limits.memory_gb is not None and limits.gpu_fraction is None:
            _cap_address_space(limits.memory_gb)
        if limits.gpu_fraction is not None:
            _cap_gpu_memory(limits.gpu_fraction)
        importlib.import_module(task.kind_module)
        kind = get_kind(task.kind_name)
        ctx = _ChildContext(**task.context, _log=lambda line: send.send(("log", line)))
        ctx._send = send
        result = kind.run(pickle.loads(task.params), ctx)  # from our parent
    except BaseException as exc:
        exc = _explained(exc, limits)
        try:
            pickled: bytes | None = pickle.dumps(exc)
        except Exception:
            pickled = None
        send.send(("error", (pickled, f"{type(exc).__name__}: {exc}", tb.format_exc())))
        return
    send.send(("result", result))


class _ChildContext(JobContext):
    """The context inside an isolated child: progress goes to the parent as it is reported."""

    _send: Any = None

    def progress(self, done: float, total: float, message: str = "") -> None:
        super().progress(done, total, message)
        if self._send is not None:
            self._send.send(("progress", dict(self._progress)))


def _explained(exc: BaseException, limits: Isolation) -> BaseException:
    """Over a cap, the child's error says which cap it went over."""
    text = f"{type(exc).__name__}: {exc}"
    if limits.gpu_fraction is not None and "out of memory" in text.lower():
        return ResourceLimitExceeded(
            f"the job used more GPU memory than its share (GPU={limits.gpu_fraction:g}, "
            f"capped to that fraction of the device): {text}"
        )
    if limits.memory_gb is not None and isinstance(exc, MemoryError):
        return ResourceLimitExceeded(
            f"the job used more memory than it asked for (memory_gb={limits.memory_gb:g}): {text}"
        )
    return exc


def _cap_address_space(memory_gb: float) -> None:
    """Cap the child's address space (Linux). Not with a GPU: CUDA reserves far more address
    space than it uses, and the GPU share is capped by its own allocator instead."""
    import resource

    limit = int(memory_gb * 2**30)
    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    resource.setrlimit(resource.RLIMIT_AS, (limit, hard))


def _cap_gpu_memory(fraction: float) -> None:
    """Cap PyTorch's and CuPy's allocators to ``fraction`` of the device, where installed
    (kinds using neither read ``ZHUGE_GPU_MEMORY_FRACTION`` themselves)."""
    import importlib.util

    if importlib.util.find_spec("torch") is not None:
        import torch

        if torch.cuda.is_available():
            torch.cuda.set_per_process_memory_fraction(fraction, 0)
    if importlib.util.find_spec("cupy") is not None:
        try:
            import cupy

            cupy.get_default_memory_pool().set_limit(fraction=fraction)
        except Exception:  # no usable CUDA device for CuPy: nothing to cap
            log.debug("CuPy present but could not cap its memory pool", exc_info=True)
