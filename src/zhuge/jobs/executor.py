"""The bridge to Dask: start or join a cluster, submit attempts, read worker capacity.

zhuge admits, Dask places: this module does not decide which job runs; it hands an admitted
attempt to Dask with the resources the job asked for and reports what the cluster can hold.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

import dask
from distributed import Client, Future, LocalCluster
from distributed.security import Security

from zhuge.hardware import gpu_count
from zhuge.jobs.model import Worker
from zhuge.jobs.runner import AttemptSpec, run_attempt

log = logging.getLogger(__name__)

WORKER_STOP_SECONDS = 30.0
"""How long a clean stop lets each embedded worker finish what its job is doing (a job sees
its release at its next heartbeat, but not inside a long import or C call) before killing it.
Dask's own default is 4 s, which a loaded machine overruns."""


@dataclass(frozen=True)
class Capacity:
    """Job slots per resource class across live workers."""

    cpu: int = 0
    gpu: int = 0

    def slots(self, resource_class: str) -> int:
        return self.gpu if resource_class == "gpu" else self.cpu


def capacity_of(workers: list[Worker]) -> Capacity:
    """Job slots per resource class that these workers offer together."""
    cpu = sum(w.resources.get("CPU", 0.0) for w in workers)
    gpu = sum(w.resources.get("GPU", 0.0) for w in workers)
    return Capacity(cpu=int(cpu), gpu=int(gpu))


def worker_resources(gpus: int | None = None) -> dict[str, float]:
    gpus = gpu_count() if gpus is None else gpus
    resources = {"CPU": 1.0}
    if gpus:
        resources["GPU"] = float(gpus)
    return resources


class DaskExecutor:
    """Owns a Dask client: to an embedded LocalCluster, or to an existing scheduler."""

    def __init__(self, *, address: str | None = None, n_workers: int = 1) -> None:
        self.address = address
        self.n_workers = n_workers
        self.cluster: LocalCluster | None = None
        self.client: Client | None = None

    def start(self) -> DaskExecutor:
        if self.address:
            self.client = Client(self.address, timeout="30s", set_as_default=False)
        else:
            # One single-threaded worker process per job slot: a job owns its process, so a
            # crash or a GIL-bound job cannot stall others, and CPU accounting is per job.
            # Whoever can reach a Dask scheduler can run code as its user: the embedded one
            # listens on loopback only (dashboard too) and speaks TLS with a certificate made
            # for this cluster alone, so another local user cannot submit to it either.
            with dask.config.set({"distributed.worker.daemon": False}):
                self.cluster = LocalCluster(
                    n_workers=self.n_workers,
                    threads_per_worker=1,
                    processes=True,
                    resources=worker_resources(),
                    host="127.0.0.1",
                    dashboard_address="127.0.0.1:0",  # no fixed port: several per host
                    security=Security.temporary(),
                    silence_logs=logging.WARNING,
                )
            self.client = Client(self.cluster, set_as_default=False)
        return self

    def submit(
        self,
        spec: AttemptSpec,
        resources: dict[str, float],
        priority: int = 0,
    ) -> Future:
        assert self.client is not None, "executor not started"
        future = self.client.submit(
            run_attempt,
            spec,
            key=f"zhuge-job-{spec.job_id}-attempt-{spec.attempt}",
            resources=resources,
            pure=False,
            retries=0,
            priority=priority,  # orders the few attempts prefetched to Dask like the queue
        )
        return future

    def workers(self) -> list[Worker]:
        assert self.client is not None, "executor not started"
        info: dict[str, Any] = self.client.scheduler_info(n_workers=-1)
        return [
            Worker(
                address=address,
                resources={k: float(v) for k, v in (w.get("resources") or {}).items()},
                last_seen=0.0,
                running=int(w.get("metrics", {}).get("executing", 0) or 0),
            )
            for address, w in info.get("workers", {}).items()
        ]

    def capacity(self) -> Capacity:
        return capacity_of(self.workers())

    def worker_processes(self) -> dict[str, int]:
        """Worker address → OS process id (for tests that kill a worker)."""
        assert self.client is not None
        import os

        return self.client.run(os.getpid)

    def close(self) -> None:
        if self.client is not None:
            self.client.close()
            self.client = None
        if self.cluster is not None:
            cluster, self.cluster = self.cluster, None
            try:
                cluster.sync(_stop_workers, cluster, WORKER_STOP_SECONDS)
                cluster.close(timeout=WORKER_STOP_SECONDS)
            except TimeoutError:  # a worker was killed but not reaped in time: it is going
                log.warning("a Dask worker did not stop within %gs: killed", WORKER_STOP_SECONDS)


async def _stop_workers(cluster: LocalCluster, timeout: float) -> None:
    """Stop the cluster's workers, each given ``timeout`` seconds to end its task."""
    await asyncio.gather(*(w.close(timeout=timeout) for w in list(cluster.workers.values())))
