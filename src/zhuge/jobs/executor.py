"""The bridge to Dask: start or join a cluster, submit attempts, read worker capacity.

zhuge admits, Dask runs: this module does not decide which job runs or where; it hands an
admitted attempt to Dask with the resources the job asked for, pinned to the worker(s)
admission chose, and reports what the cluster can hold.

**What a worker advertises** is what it has (``worker_resources``): ``CPU`` = its threads (it
runs that many attempts' worth of CPU at once), ``memory_gb``, ``GPU`` = the devices it sees,
and any custom resource its operator names (``zhuge worker --resource ssd=1``). Dask
subtracts a task's resources from its worker's while the task runs, so a worker never holds
more than it advertised.
"""

from __future__ import annotations

import asyncio
import logging
import math
import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import dask
from distributed import Client, Future, LocalCluster
from distributed.security import Security

from zhuge.errors import ConfigError
from zhuge.hardware import cpu_count, gpu_count, memory_gb
from zhuge.jobs.fanout import pinned_to
from zhuge.jobs.model import Worker
from zhuge.jobs.runner import AttemptSpec, run_attempt

log = logging.getLogger(__name__)

SCHEMA_CHECK_WAIT_SECONDS = 10.0
"""How long a scheduler joining an existing Dask cluster waits for its workers to answer the
schema check (``DaskExecutor._check_workers``) before it starts anyway."""

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


BUILTIN_RESOURCES = ("CPU", "GPU", "memory_gb")
"""Resources every worker states with its own option; custom ones are anything else."""
_RESOURCE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]*$")


def worker_resources(
    *,
    cpus: float | None = None,
    memory: float | None = None,
    gpus: float | None = None,
    custom: Mapping[str, float] | None = None,
    share: int = 1,
) -> dict[str, float]:
    """What one worker advertises: ``CPU``, ``memory_gb``, ``GPU`` (left out when 0) and any
    custom resources. Unset, each is the machine's divided among ``share`` workers on it: its
    cores (at least 1 each), its memory (rounded down to 0.1 GB), and the GPUs it sees (every
    worker sees every GPU, as Dask's own workers do). Raises ``ConfigError`` for an amount
    that is not a positive number or a name Dask cannot carry."""
    if share < 1:
        raise ConfigError(f"the number of workers must be at least 1, not {share}")
    cpus = _positive("--cpus", cpus) if cpus is not None else max(1, cpu_count() // share)
    memory = (
        _positive("--memory", memory)
        if memory is not None
        else math.floor(memory_gb() / share * 10) / 10
    )
    if gpus is not None and not (math.isfinite(gpus) and gpus >= 0):
        raise ConfigError(f"--gpus must be 0 or more, not {gpus:g}")
    gpus = gpu_count() if gpus is None else gpus
    resources = {"CPU": float(cpus)}
    if memory > 0:
        resources["memory_gb"] = float(memory)
    if gpus:
        resources["GPU"] = float(gpus)
    for name, amount in (custom or {}).items():
        check_resource_name(name)
        resources[name] = _positive(f"--resource {name}", amount)
    return resources


def parse_resource(text: str) -> tuple[str, float]:
    """``ssd=1`` → ``("ssd", 1.0)``; ``ConfigError`` saying what is wrong otherwise."""
    name, sep, amount = text.partition("=")
    name, amount = name.strip(), amount.strip()
    if not sep or not name or not amount:
        raise ConfigError(f"--resource {text!r}: write it as NAME=AMOUNT, for example ssd=1")
    check_resource_name(name)
    try:
        value = float(amount)
    except ValueError:
        raise ConfigError(f"--resource {text!r}: {amount!r} is not a number") from None
    return name, _positive(f"--resource {name}", value)


def check_resource_name(name: str) -> None:
    if name in BUILTIN_RESOURCES:
        option = {"CPU": "--cpus", "GPU": "--gpus", "memory_gb": "--memory"}[name]
        raise ConfigError(f"--resource {name}: give {name} with {option}")
    if not _RESOURCE_NAME.match(name):
        raise ConfigError(
            f"--resource {name!r}: a resource name is letters, digits, '_', '.' or '-', "
            "starting with a letter or '_'"
        )


def _positive(option: str, value: float) -> float:
    if not (math.isfinite(value) and value > 0):
        raise ConfigError(f"{option} must be a number more than 0, not {value:g}")
    return float(value)


def dask_resources(resources: Mapping[str, float]) -> str:
    """``CPU=4 memory_gb=16 GPU=1``: resources as Dask's ``--resources`` takes them."""
    return " ".join(f"{k}={v:g}" for k, v in resources.items())


class DaskExecutor:
    """Owns a Dask client: to an embedded LocalCluster, or to an existing scheduler."""

    def __init__(
        self,
        *,
        address: str | None = None,
        n_workers: int = 1,
        security: Security | None = None,
        schema_url: str | None = None,
    ) -> None:
        self.address = address
        self.n_workers = n_workers
        self.security = security  # TLS to an existing scheduler (zhuge.jobs.dask_tls)
        # the database whose schema an existing cluster's workers must match (SchemaCheck)
        self.schema_url = schema_url
        self.cluster: LocalCluster | None = None
        self.client: Client | None = None

    def start(self) -> DaskExecutor:
        if self.address:
            self.client = Client(
                self.address, timeout="30s", set_as_default=False, security=self.security
            )
            if self.schema_url is not None:
                self._check_workers(self.schema_url)
        else:
            # Worker processes that share the machine between them: each advertises and runs
            # its part of the cores (CPU = threads = cores // n, at least 1) and of the memory.
            # The default, one single-threaded process per core, gives a job its own process
            # (a crash or a GIL-bound job cannot stall others); fewer, wider workers
            # (``zhuge up --workers 1``) hold jobs that ask for several CPUs (``--cpu 4``).
            # Whoever can reach a Dask scheduler can run code as its user: the embedded one
            # listens on loopback only (dashboard too) and speaks TLS with a certificate made
            # for this cluster alone, so another local user cannot submit to it either.
            threads = max(1, cpu_count() // self.n_workers)
            with dask.config.set({"distributed.worker.daemon": False}):
                self.cluster = LocalCluster(
                    n_workers=self.n_workers,
                    threads_per_worker=threads,
                    processes=True,
                    resources=worker_resources(cpus=threads, share=self.n_workers),
                    host="127.0.0.1",
                    dashboard_address="127.0.0.1:0",  # no fixed port: several per host
                    security=Security.temporary(),
                    silence_logs=logging.WARNING,
                )
            self.client = Client(self.cluster, set_as_default=False)
        return self

    def _check_workers(self, schema_url: str) -> None:
        """Workers we did not start may run another zhuge: each checks itself, now and
        whenever one joins, and a mismatched one leaves before taking work (``SchemaCheck``).

        The Dask scheduler keeps the check for every worker that joins from now on, then asks
        the workers present to run it; registered once per Dask cluster (``idempotent``: a
        restarted or second scheduler finds it there and waits for nothing). A present worker
        that is paused or cut off cannot answer, and Dask would wait for it without end: that
        must not keep a scheduler from starting, so the wait is bounded
        (``SCHEMA_CHECK_WAIT_SECONDS``) and the registration finishes in the background."""
        from zhuge.jobs.worker_check import SchemaCheck

        client = self.client
        assert client is not None

        def register() -> None:
            try:
                client.register_plugin(SchemaCheck(schema_url))
            except Exception as exc:  # a thread's end: say it, never raise into nothing
                log.warning(
                    "could not reach every Dask worker to check its zhuge against the "
                    "schema (%s); workers joining from now on are checked",
                    exc,
                )

        thread = threading.Thread(target=register, name="zhuge-schema-check", daemon=True)
        thread.start()
        thread.join(SCHEMA_CHECK_WAIT_SECONDS)
        if thread.is_alive():
            log.warning(
                "could not reach every Dask worker to check its zhuge against the schema "
                "within %gs (one paused or cut off?); starting anyway: workers joining from "
                "now on are checked, and the rest as they answer",
                SCHEMA_CHECK_WAIT_SECONDS,
            )

    def submit(
        self,
        spec: AttemptSpec,
        resources: dict[str, float],
        priority: int = 0,
        workers: list[str] | None = None,
    ) -> Future:
        """Hand an admitted attempt to Dask. With ``workers`` (addresses), it runs on one of
        them and nowhere else: where admission booked its resources."""
        assert self.client is not None, "executor not started"
        placed = pinned_to(workers)
        future = self.client.submit(
            run_attempt,
            spec,
            key=f"zhuge-job-{spec.job_id}-attempt-{spec.attempt}",
            resources=resources,
            pure=False,
            retries=0,
            priority=priority,  # orders the few attempts prefetched to Dask like the queue
            **placed,
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
