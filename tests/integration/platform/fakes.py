"""Stand-ins for Dask, for driving the scheduler without a cluster."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

from zhuge.jobs.executor import Capacity
from zhuge.jobs.model import Worker
from zhuge.jobs.runner import AttemptSpec


class FakeFuture:
    """What the scheduler uses of a Dask future; the test decides when and how it ends."""

    def __init__(self, key: str) -> None:
        self.key = key
        self.status = "pending"
        self._error: BaseException | None = None
        self._callbacks: list[Callable[[FakeFuture], Any]] = []

    def add_done_callback(self, fn: Callable[[FakeFuture], Any]) -> None:
        self._callbacks.append(fn)

    def cancel(self) -> None:
        self.status = "cancelled"

    def exception(self) -> BaseException | None:
        return self._error

    def finish(self, error: BaseException | None = None) -> None:
        self.status, self._error = ("error", error) if error else ("finished", None)
        for fn in self._callbacks:
            fn(self)


class FakeExecutor:
    """Slots that the test sets, and tasks that never run: it sees what was admitted."""

    _serials = itertools.count()

    def __init__(self, cpu: int = 1, gpu: int = 0) -> None:
        self.serial = next(self._serials)  # worker addresses unique across executors
        self.slots = Capacity(cpu=cpu, gpu=gpu)
        self.futures: dict[tuple[int, int], FakeFuture] = {}
        self.specs: list[AttemptSpec] = []
        self.pinned: dict[tuple[int, int], list[str] | None] = {}

    def submit(
        self,
        spec: AttemptSpec,
        resources: dict[str, float],
        priority: int = 0,
        workers: list[str] | None = None,
    ):
        future = FakeFuture(f"zhuge-job-{spec.job_id}-attempt-{spec.attempt}")
        self.futures[(spec.job_id, spec.attempt)] = future
        self.specs.append(spec)
        self.pinned[(spec.job_id, spec.attempt)] = workers
        return future

    def workers(self) -> list[Worker]:
        """One single-slot worker per slot, like ``zhuge worker`` starts them."""
        return [
            Worker(
                address=f"fake://{self.serial}/{cls}-{i}",
                resources={cls: 1.0},
                last_seen=0.0,
                running=0,
            )
            for cls, n in (("CPU", self.slots.cpu), ("GPU", self.slots.gpu))
            for i in range(n)
        ]

    def capacity(self) -> Capacity:
        return self.slots
