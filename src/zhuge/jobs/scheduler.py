"""Admission: decide which queued jobs start now, and keep the store and Dask in step.

One loop per scheduler process. Each turn it
1. takes finished attempts off its books (a worker lost mid-job fails that attempt at once),
2. cancels the Dask tasks of cancelled jobs,
3. expires leases of attempts whose worker went silent (any scheduler may do this),
4. claims as many queued jobs as the cluster has free slots, and hands them to Dask.

Jobs wait in the store, not in Dask: a queue of a million jobs costs Dask nothing, priorities
apply at the moment a slot frees up, and nothing queued is lost if every process dies. A worker
task that finishes its job early may claim the next ones itself (``Settings.chain_seconds``,
``runner.run_attempt``): the slot stays one Dask task on this scheduler's books.

Time: how often housekeeping runs is measured on the scheduler's ``clock``
(``time.monotonic`` unless given); leases, backoff and ``not_before`` are measured on the
store's. Tests give both the same fake clock and call ``run_once`` to drive the loop by hand.
"""

from __future__ import annotations

import logging
import math
import os
import queue
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from distributed import Future

from zhuge.config import Settings
from zhuge.jobs.executor import Capacity, DaskExecutor, capacity_of
from zhuge.jobs.inputs import private_paths
from zhuge.jobs.model import Job, Worker
from zhuge.jobs.resources import waiting_reason
from zhuge.jobs.runner import AttemptSpec
from zhuge.jobs.states import LostReason
from zhuge.jobs.store import JobStore

log = logging.getLogger(__name__)

HOUSEKEEPING_SECONDS = 1.0  # lease expiry, cancellations, worker census
DEFER_SECONDS = 30.0  # a job no live worker can hold is looked at again after this long


def free_slots(
    capacity: Capacity, in_flight: dict[str, int], *, prefetch: int = 0
) -> dict[str, int]:
    """How many more attempts to admit per resource class: the admission rule, pure."""
    return {
        cls: max(0, capacity.slots(cls) * (1 + prefetch) - in_flight.get(cls, 0))
        for cls in ("cpu", "gpu")
    }


@dataclass
class _InFlight:
    job: Job
    future: Future

    @property
    def resource_class(self) -> str:
        return "gpu" if self.job.resources.get("GPU", 0) > 0 else "cpu"


class Scheduler:
    def __init__(
        self,
        store: JobStore,
        executor: DaskExecutor,
        settings: Settings,
        *,
        name: str | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.executor = executor
        self.settings = settings
        self.clock = clock
        self.name = name or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.wake = threading.Event()
        self.stopping = threading.Event()
        self._in_flight: dict[tuple[int, int], _InFlight] = {}
        self._done: queue.SimpleQueue[Future] = queue.SimpleQueue()
        self._capacity = Capacity()
        self._workers: list[Worker] = []
        self._last_housekeeping = -math.inf
        self._thread: threading.Thread | None = None

    # -- lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        self._housekeeping(force=True)
        self._thread = threading.Thread(target=self._loop, name="zhuge-scheduler", daemon=True)
        self._thread.start()

    def stop(self, *, release: bool = True) -> None:
        """Stop admitting; give running jobs back to the queue so nothing is lost."""
        self.stopping.set()
        self.wake.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        if release:
            released = self.store.release(self.name)
            if released:
                log.info("released %d running job(s) back to the queue", released)
        for flight in self._in_flight.values():
            flight.future.cancel()
        self._in_flight.clear()
        self.store.forget_workers(self.name)

    def notify(self) -> None:
        """Something changed (a job was submitted): look at the queue now."""
        self.wake.set()

    @property
    def in_flight(self) -> int:
        return len(self._in_flight)

    # -- the loop -------------------------------------------------------------------------

    def _loop(self) -> None:
        while not self.stopping.is_set():
            try:
                busy = self.run_once()
            except Exception:
                log.exception("scheduler turn failed; retrying")
                busy = False
                self.stopping.wait(1.0)
            if not busy:
                self.wake.wait(self.settings.poll_seconds)
            self.wake.clear()

    def run_once(self) -> bool:
        """One turn of the loop; True if it started any job (so look again at once)."""
        self._reap_finished()
        self._housekeeping()
        return self._admit() > 0

    def _reap_finished(self) -> None:
        while True:
            try:
                future = self._done.get_nowait()
            except queue.Empty:
                return
            flight = self._in_flight.pop(_key_of(future), None)
            if flight is None or future.status != "error":
                continue  # the runner wrote the outcome itself; no need to fetch the result
            # The task died outside the runner's guard, which records every error of the
            # job's own code: its worker died (KilledWorker after repeated worker deaths) or
            # the platform failed around it. The attempt will never report, so it is lost
            # now rather than when its lease runs out.
            self.store.lose_attempt(
                flight.job.id,
                flight.job.attempt,
                LostReason.WORKER_DIED,
                f"the Dask task ended without a result: {future.exception()!r}",
            )

    def _housekeeping(self, *, force: bool = False) -> None:
        now = self.clock()
        if not force and now - self._last_housekeeping < HOUSEKEEPING_SECONDS:
            return
        self._last_housekeeping = now
        # Cancelled jobs: stop their Dask tasks (a task whose job merely finished is left
        # alone: it may be running chained jobs, and ends by itself).
        for key in self.store.cancelled_attempts(self._in_flight):
            self._in_flight.pop(key).future.cancel()
        if self._in_flight:
            self.store.renew_unstarted(self.name, lease_seconds=self.settings.lease_seconds)
        for job in self.store.expire_leases():
            log.warning("job %s lost its lease (attempt %s): %s", job.id, job.attempt, job.state)
        workers = self.executor.workers()
        self.store.record_workers(self.name, workers)
        self._workers = workers
        self._capacity = capacity_of(workers)
        for resource_class in ("cpu", "gpu"):
            if not self._capacity.slots(resource_class):
                what = "GPU" if resource_class == "gpu" else "CPU"
                reason = f"no live worker offers {what}" if workers else "no worker is connected"
                self.store.mark_waiting(resource_class, reason)

    def _admit(self) -> int:
        running: dict[str, int] = {}
        for flight in self._in_flight.values():
            running[flight.resource_class] = running.get(flight.resource_class, 0) + 1
        started = 0
        admit = free_slots(self._capacity, running, prefetch=self.settings.prefetch_per_slot)
        for resource_class, slots in admit.items():
            if not slots:
                continue
            jobs = self.store.claim(
                limit=slots,
                owner=self.name,
                lease_seconds=self.settings.lease_seconds,
                resource_classes=[resource_class],
            )
            for job in jobs:
                self._launch(job)
            started += len(jobs)
        return started

    def _launch(self, job: Job) -> None:
        reason = waiting_reason(job.resources, self._workers)
        if reason is not None:
            # Dask would hold it for ever, and it would hold a slot: it waits in the queue.
            self.store.defer(job.id, job.attempt, reason=reason, retry_in=DEFER_SECONDS)
            log.info("job %s waits: %s", job.id, reason)
            return
        spec = AttemptSpec(
            db_url=self.settings.database_url,
            artifacts_url=self.settings.artifacts_root,
            job_id=job.id,
            attempt=job.attempt,
            lease_seconds=self.settings.lease_seconds,
            heartbeat_seconds=self.settings.heartbeat_seconds,
            retry_base_seconds=self.settings.retry_base_seconds,
            retry_max_seconds=self.settings.retry_max_seconds,
            owner=self.name,
            resources={k: float(v) for k, v in job.resources.items()},
            chain_seconds=self.settings.chain_seconds,
            data_roots=tuple(str(r) for r in self.settings.data_roots),
            private_paths=private_paths(self.settings),
        )
        future = self.executor.submit(spec, job.resources, job.priority)
        self._in_flight[(job.id, job.attempt)] = _InFlight(job, future)
        # Registered after the book entry exists, so a task that finishes at once is reaped.
        future.add_done_callback(self._on_done)

    def _on_done(self, future: Future) -> None:
        self._done.put(future)
        self.wake.set()


def _key_of(future: Future) -> tuple[int, int]:
    # key: zhuge-job-<id>-attempt-<n>
    parts = str(future.key).split("-")
    return int(parts[2]), int(parts[4])
