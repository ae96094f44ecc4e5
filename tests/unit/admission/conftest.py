"""Helpers for admission tests: traces, pools and configurations built in a line."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from hypothesis import HealthCheck, settings

from zhuge.jobs.admission import QueueConfig, WorkerSlot
from zhuge.jobs.simulate import SimulationResult, TraceJob, simulate

# Property tests are derandomized (the same examples every run) and kept small: the whole
# directory must stay well under a minute on two slow, busy cores.
settings.register_profile(
    "admission",
    derandomize=True,
    deadline=None,
    max_examples=60,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    database=None,
)


def job(at: float, tenant: str, duration: float, **fields: Any) -> TraceJob:
    return TraceJob(submit_time=at, tenant=tenant, duration_s=duration, **fields)


def workers(count: int, prefix: str = "w", **offers: float) -> list[WorkerSlot]:
    return [WorkerSlot(f"{prefix}{i}", dict(offers)) for i in range(count)]


def run(
    trace: Sequence[TraceJob],
    pool: Sequence[WorkerSlot],
    config: Mapping[str, Any] | None = None,
) -> SimulationResult:
    return simulate(trace, pool, QueueConfig.parse(dict(config or {})))
