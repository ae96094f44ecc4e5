"""The scheduler loop: admit queued jobs, and keep the store and Dask in step.

One loop per scheduler process. Each turn it
1. takes finished attempts off its books (a worker lost mid-job loses that attempt at once),
2. cancels the Dask tasks of cancelled jobs,
3. expires leases of attempts whose worker went silent, and gives up preempted attempts
   past their grace period (any scheduler may do this),
4. asks admission (``JobStore.admit``: ``zhuge.jobs.admission`` on a snapshot of the store,
   under the admission lock) which queued jobs start now and on which workers, and hands each
   to Dask pinned to those workers.

Jobs wait in the store, not in Dask: a queue of a million jobs costs Dask nothing, quotas,
fair share and priorities apply at the moment capacity frees up, and nothing queued is lost
if every process dies. A worker task that finishes its job early may claim the next one
itself (``Settings.chain_seconds``, ``runner.run_attempt``) through the same admission: the
place stays one Dask task on this scheduler's books.

Time: how often housekeeping runs is measured on the scheduler's ``clock``
(``time.monotonic`` unless given); leases, backoff and ``not_before`` are measured on the
store's. Tests give both the same fake clock and call ``run_once`` to drive the loop by hand.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import queue
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from distributed import Future

from zhuge.config import Settings
from zhuge.jobs.admission import EPS
from zhuge.jobs.claims import CHAIN_PLAN_DEPTH
from zhuge.jobs.elastic.autoscaler import Autoscaler
from zhuge.jobs.executor import DaskExecutor
from zhuge.jobs.inputs import private_paths
from zhuge.jobs.model import Job, Worker
from zhuge.jobs.runner import AttemptSpec
from zhuge.jobs.schedules import Schedules
from zhuge.jobs.states import LostReason
from zhuge.jobs.store import JobStore

log = logging.getLogger(__name__)

HOUSEKEEPING_SECONDS = 1.0  # lease expiry, cancellations, worker census
IDLE_TURN_GAP = 0.05
"""Seconds between a turn that started nothing and the next one (a burst of submissions or
finished tasks wakes the loop once per gap, not once each: a turn costs a snapshot and a
decision under the admission lock)."""


@dataclass
class _InFlight:
    job: Job
    future: Future


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
        self._workers: list[Worker] = []
        self._last_housekeeping = -math.inf
        self._room: dict[str, dict[str, float]] | None = None
        """Each worker's free capacity after the last turn, once what it started holds its
        share (None before the first): read by ``notify``."""
        self._look_again = False  # the last turn may have left startable work unseen
        self._nothing_waited = False  # that turn left no queued job waiting
        self._prompt = False  # a submission that can start now: no idle gap before its turn
        self._thread: threading.Thread | None = None
        self.autoscaler = _autoscaler_for(self)
        self.schedules = Schedules(store, settings)  # cron schedules: fired in housekeeping

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
        if self.autoscaler is not None:
            self.autoscaler.stop([w.address for w in self._workers])
        self.store.forget_workers(self.name)

    def notify(self, resources: Iterable[Mapping[str, float]] | None = None) -> None:
        """Something changed (a job was submitted, cancelled, retried): look at the queue now.

        Given the submitted jobs' ``resources``, a turn is not forced while the last one
        left no worker room for any of them: such a turn could start nothing, and on a busy
        cluster a turn per submission is what holds up the workers' chains (each turn
        takes the admission lock). The next regular turn, within ``poll_seconds`` (or at
        once when an attempt ends), decides them, preemptions included."""
        room = self._room
        if resources is not None and room:  # no worker known: look (one may be joining)
            if not any(_has_room(r, free) for r in resources for free in room.values()):
                return
            if self._nothing_waited:
                # nothing else waits and a worker has room: no burst to space out, serve it
                # at once (``IDLE_TURN_GAP`` is for turns that start nothing)
                self._prompt = True
        self.wake.set()

    @property
    def in_flight(self) -> int:
        return len(self._in_flight)

    # -- the loop -------------------------------------------------------------------------

    def _loop(self) -> None:
        while not self.stopping.is_set():
            try:
                self.run_once()
                busy = self._look_again
            except Exception:
                log.exception("scheduler turn failed; retrying")
                busy = False
                self.stopping.wait(1.0)
            if not busy:
                idle_since = self.clock()
                self.wake.wait(self.settings.poll_seconds)
                # A turn that started nothing is not repeated for every submission of a
                # burst: at most one per IDLE_TURN_GAP (the first wake-up after a quiet spell
                # is served at once).
                rest = IDLE_TURN_GAP - (self.clock() - idle_since)
                if rest > 0 and not self._prompt:
                    self.stopping.wait(rest)
            self.wake.clear()
            self._prompt = False

    def run_once(self) -> bool:
        """One turn of the loop; True if it started any job. The loop looks again at once
        only if the turn may have left something to start (``_look_again``), not merely
        because it started something: each turn holds the admission lock that workers'
        chains wait for, so a turn that could find nothing new is not taken."""
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
        for job in self.store.give_up_preempted():
            log.warning("job %s (attempt %s) did not yield in time: lost", job.id, job.attempt)
            flight = self._in_flight.pop((job.id, job.attempt), None)
            if flight is not None:
                flight.future.cancel()
        self.store.refresh_statistics()  # a burst of submissions changes the plans to use
        workers = self.executor.workers()
        self.store.record_workers(self.name, workers)
        self._workers = workers
        self._lose_stranded({w.address for w in workers})
        self._lose_unready_gangs()
        if self.autoscaler is not None:
            try:  # pools grow and shrink here, in the one scheduler holding its lease
                self.autoscaler.tick()
            except Exception:
                log.exception("autoscaler turn failed; trying again next turn")
        self._fire_schedules()

    def _fire_schedules(self) -> None:
        """Fire the cron schedules' due slots (on the store's clock). Every scheduler does;
        a slot's unique key lets one of them fire it (``zhuge.jobs.schedules``). A failure
        here must not stop admission: it is logged and tried again next housekeeping."""
        try:
            for run in self.schedules.fire_due():
                log.info("schedule %s: slot %s %s", run.schedule_id, run.slot, run.outcome)
        except Exception:
            log.exception("firing the schedules failed; trying again at the next housekeeping")

    def _lose_unready_gangs(self) -> None:
        """A gang's attempt that no worker started within ``gang_ready_seconds`` of its
        admission gives its N booked workers back: lost (``gang_not_ready``, counted toward
        ``max_lost``) and queued again with backoff, so booked capacity never waits for ever
        on a worker that does not run its part."""
        now = self.store.clock()
        for key, flight in list(self._in_flight.items()):
            job = flight.job
            if job.gang <= 1 or now - job.updated_at < self.settings.gang_ready_seconds:
                continue
            lost = self.store.lose_attempt(
                job.id,
                job.attempt,
                LostReason.GANG_NOT_READY,
                f"its gang of {job.gang} booked on {', '.join(job.assigned_workers or [])} "
                f"did not start within {self.settings.gang_ready_seconds:g}s",
                require_unstarted=True,
            )
            if lost is not None:
                flight.future.cancel()
                self._in_flight.pop(key, None)
            else:  # it started (or ended): its own heartbeats and outcome take over
                flight.job = dataclasses.replace(job, gang=1)

    def _lose_stranded(self, live: set[str]) -> None:
        """Attempts pinned to a worker that left before running them would wait in Dask for
        ever (a restarted worker comes back under another address): they are lost now and
        admitted again, wherever there is room."""
        for key, flight in list(self._in_flight.items()):
            placed = flight.job.assigned_workers or []
            if not placed or set(placed) <= live:
                continue
            gone = ", ".join(sorted(set(placed) - live))
            self.store.lose_attempt(
                flight.job.id,
                flight.job.attempt,
                LostReason.WORKER_DIED,
                f"the worker it was placed on left before it ran ({gone})",
                require_unstarted=True,
            )
            if flight.future.status == "pending":
                flight.future.cancel()
                self._in_flight.pop(key, None)

    def _admit(self) -> int:
        admitted = self.store.admit(
            owner=self.name,
            workers=self._workers,
            lease_seconds=self.settings.lease_seconds,
            plan_depth=CHAIN_PLAN_DEPTH if self.settings.chain_seconds > 0 else 0,
        )
        for job in admitted.started:
            self._launch(job)
        free = admitted.decision.free
        self._room = free
        self._nothing_waited = not admitted.decision.waiting
        # Look again at once only if a job it placed went to a chain with no twin to start
        # instead (that worker may still be free), or a tenant has queued jobs the decision
        # did not read (its candidate window was full) and a worker still has room for
        # another job the size of one just started: otherwise the next turn decides the same.
        self._look_again = admitted.raced or (
            admitted.unseen
            and any(
                _has_room(j.resources, room) for j in admitted.started for room in free.values()
            )
        )
        return len(admitted.started)

    def _launch(self, job: Job) -> None:
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
            chain_seconds=self.settings.chain_seconds if job.gang == 1 else 0.0,
            data_roots=tuple(str(r) for r in self.settings.data_roots),
            private_paths=private_paths(self.settings),
            # ctx.map's parts run on the workers booked for the job, within its booking
            workers=tuple(job.assigned_workers or ()),
        )
        # Pinned where admission placed it: the first of a gang's workers runs the job, the
        # others are booked for its ``ctx.map`` parts.
        future = self.executor.submit(
            spec, job.resources, job.priority, workers=(job.assigned_workers or [])[:1] or None
        )
        self._in_flight[(job.id, job.attempt)] = _InFlight(job, future)
        # Registered after the book entry exists, so a task that finishes at once is reaped.
        future.add_done_callback(self._on_done)

    def _on_done(self, future: Future) -> None:
        self._done.put(future)
        self.wake.set()


def _autoscaler_for(scheduler: Scheduler) -> Autoscaler | None:
    """The scheduler's autoscaler (``zhuge.jobs.elastic.autoscaler``): over the embedded
    cluster's workers (the ``local`` pool) and the pools in force; None when turned off
    (``ZHUGE_AUTOSCALE_SECONDS=0``)."""
    if scheduler.settings.autoscale_seconds <= 0:
        return None
    executor = scheduler.executor
    cluster = getattr(executor, "cluster", None)
    spec = getattr(cluster, "new_spec", None) or {}
    client = getattr(executor, "client", None)
    return Autoscaler(
        scheduler.store,
        scheduler.settings,
        name=scheduler.name,
        cluster=cluster,
        scheduler_info=(lambda: client.scheduler_info(n_workers=-1)) if client else None,
        local_workers=getattr(executor, "n_workers", 0) if cluster is not None else 0,
        local_resources=spec.get("options", {}).get("resources"),
    )


def _has_room(asked: Mapping[str, float], free: Mapping[str, float]) -> bool:
    return all(free.get(k, 0.0) + EPS >= float(v) for k, v in asked.items() if v)


def _key_of(future: Future) -> tuple[int, int]:
    # key: zhuge-job-<id>-attempt-<n>
    parts = str(future.key).split("-")
    return int(parts[2]), int(parts[4])
