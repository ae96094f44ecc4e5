"""Prometheus metrics at /metrics, read from the store at scrape time.

Computed from the store rather than counted in process memory, so every API process reports
the same numbers, they survive restarts, and jobs run by any scheduler are included.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from zhuge.jobs.elastic import costs
from zhuge.jobs.states import JobState
from zhuge.jobs.store import DURATION_BUCKETS, JobStore


class StoreCollector(Collector):
    def __init__(self, store: JobStore) -> None:
        self.store = store

    def collect(self) -> Iterator[Metric]:
        jobs = GaugeMetricFamily("zhuge_jobs", "Jobs by kind and state.", labels=["kind", "state"])
        depth = 0
        for (kind, state), n in sorted(self.store.counts().items()):
            jobs.add_metric([kind, state], n)
            if state == JobState.QUEUED.value:
                depth += n
        yield jobs
        yield GaugeMetricFamily("zhuge_queue_depth", "Jobs waiting to run.", value=depth)

        attempts = CounterMetricFamily(
            "zhuge_job_attempts", "Attempts started, by kind.", labels=["kind"]
        )
        for kind, n in sorted(self.store.attempts_total().items()):
            attempts.add_metric([kind], n)
        yield attempts

        hist = HistogramMetricFamily(
            "zhuge_job_duration_seconds",
            "Run time of succeeded jobs (winning attempt), by kind.",
            labels=["kind"],
        )
        for kind, (cumulative, total, count) in sorted(self.store.duration_histogram().items()):
            buckets = [(str(b), c) for b, c in zip(DURATION_BUCKETS, cumulative, strict=True)]
            buckets.append(("+Inf", count))
            hist.add_metric([kind], buckets, total)
        yield hist

        workers = self.store.workers()
        yield GaugeMetricFamily("zhuge_workers", "Live Dask workers.", value=len(workers))
        slots = GaugeMetricFamily(
            "zhuge_worker_resources", "Resources of live workers.", labels=["resource"]
        )
        totals: dict[str, float] = {}
        for w in workers:
            for name, amount in w.resources.items():
                totals[name] = totals.get(name, 0.0) + amount
        for name, amount in sorted(totals.items()):
            slots.add_metric([name], amount)
        yield slots
        yield from _cost_metrics(self.store)


def _cost_metrics(store: JobStore) -> Iterator[Metric]:
    """Cost accounting's counters (``zhuge.jobs.elastic.costs``): allocated resource-seconds
    and measured CPU-seconds of ended attempts, per tenant and pool; worker up-seconds per
    pool (open intervals counted to now)."""
    totals = costs.usage_totals(store)
    allocated = CounterMetricFamily(
        "zhuge_allocated_resource_seconds",
        "Resource-seconds allocated to ended attempts (GPU fractions as fractions).",
        labels=["tenant", "pool", "resource"],
    )
    for (tenant, pool), amounts in sorted(totals["allocated"].items()):
        for resource, value in sorted(amounts.items()):
            allocated.add_metric([tenant, pool, resource], value)
    yield allocated
    measured = CounterMetricFamily(
        "zhuge_attempt_cpu_seconds",
        "CPU-seconds measured in ended attempts (ctx.map parts included).",
        labels=["tenant", "pool"],
    )
    for (tenant, pool), value in sorted(totals["cpu_seconds"].items()):
        measured.add_metric([tenant, pool], value)
    yield measured
    uptime = CounterMetricFamily(
        "zhuge_worker_uptime_seconds", "Seconds workers have been up, per pool.", labels=["pool"]
    )
    for pool, value in sorted(totals["uptime_seconds"].items()):
        uptime.add_metric([pool], value)
    yield uptime


def registry_for(store: JobStore) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StoreCollector(store))
    return registry
