"""``zhuge simulate --policy``: the job trace replayed with pools that scale, priced.

The fixed-workers simulator (``zhuge.jobs.simulate``) with its workers made elastic. It owns
no policy: at every event time admission (``admission.decide``) starts what fits on the
ready workers, then every pool asks ``elastic.policy.decide`` for its size, given admission's
demand mapped onto pools (``pool_demand``; with no worker up, ``admissible_demand``), the
pool's workers (busy, idle since when, starting), its earlier decisions and the work that
arrived per interval. Besides the trace's events, every pool decides each ``interval_s``
(the autoscaler's interval) until the last job ends.

- A new worker is paid from the moment it is asked for and takes jobs ``startup_s`` later.
- A scale-down retires exactly the idle workers the decision names (never a busy one).
- Each pool starts with the size its policy holds with no demand (``min``; a fixed policy's
  ``workers``), already up; ``fixed-peak`` / ``fixed-mean`` without ``workers`` in the file
  get the trace's peak or mean need (``fixed_sizes``).
- The bill covers the trace's first submission to its last job's end, through
  ``elastic.billing`` (each pool's granularity, minimum and prices; the k-th worker a pool
  launches runs on spot when ⌊k × spot⌋ grows).

``simulate_policies(trace, pools, config, policies)`` runs each policy over every pool (a
pool whose file names the same policy keeps its parameters) and returns one
``PolicyResult`` each: cost, idle cost, per tenant p50/p95 wait, the worst tenant's p95,
utilisation (worker-seconds jobs held over worker-seconds up) and scale events.
"""

from __future__ import annotations

import bisect
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from zhuge.errors import InvalidRequest
from zhuge.jobs.admission import QueueConfig, Snapshot, WorkerSlot, admissible_demand
from zhuge.jobs.elastic.billing import UpInterval, pool_cost
from zhuge.jobs.elastic.policy import (
    Arrival,
    Decision,
    PoolDemand,
    PoolState,
    Sample,
    WorkerState,
    decide,
    pool_demand,
)
from zhuge.jobs.elastic.policy import arrival_samples as policy_arrival_samples
from zhuge.jobs.elastic.pools import POLICY_NAMES, PoolsConfig, PoolSpec, PredictivePolicy
from zhuge.jobs.simulate import SimulationResult, TraceJob, _Simulation

INTERVAL_S = 30.0  # seconds between two decisions of a pool with nothing happening
SAMPLE_INTERVAL_S = 300.0  # arrivals per interval for pools whose policy is not predictive
_READY, _SCALE = 10, 11  # event kinds after the fixed simulator's


@dataclass
class PolicyResult:
    """One policy over the whole trace."""

    policy: str
    cost: float
    idle_cost: float
    on_demand_cost: float
    spot_would_save: float | None
    wait_p50_s: dict[str, float | None]
    wait_p95_s: dict[str, float | None]
    worst_wait_p95_s: float | None
    utilisation: float
    scale_events: int
    workers_peak: int
    workers_mean: float
    never_started: int
    pools: dict[str, dict[str, Any]]
    simulation: SimulationResult = field(repr=False)

    def to_dict(self) -> dict[str, Any]:
        """The JSON of ``zhuge simulate --policy ... --json`` for this policy."""
        return {
            "cost": self.cost,
            "idle_cost": self.idle_cost,
            "wait_p95_s": self.wait_p95_s,
            "worst_wait_p95_s": self.worst_wait_p95_s,
            "utilisation": self.utilisation,
            "scale_events": self.scale_events,
        }


# -- the trace's own numbers ----------------------------------------------------------------


def job_pool(job: TraceJob, pools: PoolsConfig) -> PoolSpec | None:
    return pools.for_shape(job.resources)


def arrival_samples(
    trace: Sequence[TraceJob], pools: PoolsConfig, interval: float
) -> dict[str, list[Sample]]:
    """Per pool, the work that arrived in each ``interval`` from the trace's first submission
    through its last (``policy.arrival_samples`` over the trace, durations known)."""
    start = min(j.submit_time for j in trace)
    steps = int((max(j.submit_time for j in trace) - start) // interval) + 1
    arrivals = (Arrival(j.submit_time, j.resources, j.gang, j.duration_s) for j in trace)
    return policy_arrival_samples(arrivals, pools, interval, start, start + steps * interval)


def fixed_sizes(trace: Sequence[TraceJob], pools: PoolsConfig) -> dict[str, tuple[int, int]]:
    """Per pool, (peak, mean) workers the trace needs were every job started on submission:
    the jobs' shares of a worker (dominant resource, × gang) added up over time, rounded up."""
    edges: dict[str, list[tuple[float, float]]] = {p.name: [] for p in pools.pools}
    for j in trace:
        pool = job_pool(j, pools)
        if pool is None:
            continue
        need = pool.worker_fraction(j.resources) * j.gang
        edges[pool.name] += [(j.submit_time, need), (j.submit_time + j.duration_s, -need)]
    start = min(j.submit_time for j in trace)
    end = max(j.submit_time + j.duration_s for j in trace)
    out = {}
    for name, points in edges.items():
        points.sort()
        level = peak = area = 0.0
        last = start
        for at, delta in points:
            area += level * (at - last)
            level += delta
            last = at
            peak = max(peak, level)
        mean = area / (end - start) if end > start else peak
        out[name] = (math.ceil(peak - 1e-9), math.ceil(mean - 1e-9))
    return out


def with_policy(
    pools: PoolsConfig, policy: str | None, sizes: Mapping[str, tuple[int, int]]
) -> PoolsConfig:
    """``pools`` with every pool on ``policy`` (None: each keeps its own). A pool already on
    that policy keeps its parameters; a fixed policy without ``workers`` gets the trace's
    peak or mean from ``sizes``."""
    out = []
    for p in pools.pools:
        document = p.model_dump()
        if policy is not None and p.policy.name != policy:
            document["policy"] = {"name": policy}
        name = document["policy"]["name"]
        if name in ("fixed-peak", "fixed-mean") and document["policy"].get("workers") is None:
            peak, mean = sizes.get(p.name, (p.min, p.min))
            document["policy"]["workers"] = peak if name == "fixed-peak" else mean
        out.append(document)
    return PoolsConfig.parse({"pools": out})


# -- the simulation -------------------------------------------------------------------------


@dataclass
class _Worker:
    name: str
    pool: str
    launched_at: float
    ready_at: float
    spot: bool
    retired_at: float | None = None
    idle_since: float | None = None


@dataclass
class _Pool:
    spec: PoolSpec
    workers: dict[str, _Worker] = field(default_factory=dict)
    history: list[Decision] = field(default_factory=list)
    samples: list[Sample] = field(default_factory=list)
    sample_times: list[float] = field(default_factory=list)
    launched: int = 0
    scale_events: int = 0
    used_worker_s: float = 0.0
    worker_seconds: float = 0.0  # ∫ workers up dt, for the mean
    peak: int = 0

    @property
    def keep_s(self) -> float:
        """How far back decisions matter (the longest window or cooldown)."""
        s = self.spec
        return max(s.stabilisation.up, s.stabilisation.down, s.cooldown.up, s.cooldown.down)


class _ElasticSimulation(_Simulation):
    def __init__(
        self,
        trace: Sequence[TraceJob],
        pools: PoolsConfig,
        config: QueueConfig,
        *,
        interval_s: float = INTERVAL_S,
    ) -> None:
        super().__init__(trace, [], config)
        self.pools_config = pools
        self.interval_s = interval_s
        self.pools = {p.name: _Pool(p) for p in pools.pools}
        self.worker_pool: dict[str, str] = {}
        self.unsettled_from = 1  # job ids are 1..n
        start = min(j.submit_time for j in trace)
        self.now = start  # the initial workers are up when the first job arrives
        for pool in self.pools.values():
            policy = pool.spec.policy
            interval = policy.interval if isinstance(policy, PredictivePolicy) else None
            samples = arrival_samples(trace, pools, interval or SAMPLE_INTERVAL_S)
            pool.samples = samples[pool.spec.name]
            pool.sample_times = [s.at for s in pool.samples]
            initial = decide(pool.spec, _no_demand(pool.spec), PoolState(pool.spec.name), [], start)
            for _ in range(initial.target):
                self.launch(pool, start, ready_at=start)
        self.refresh_workers()
        self.last_tick = -math.inf
        self.push(start, _SCALE, 0)

    # -- workers ------------------------------------------------------------------------

    def launch(self, pool: _Pool, now: float, ready_at: float) -> _Worker:
        pool.launched += 1
        k, spot = pool.launched, pool.spec.spot
        on_spot = math.floor(k * spot + 1e-9) > math.floor((k - 1) * spot + 1e-9)
        w = _Worker(f"{pool.spec.name}-{k}", pool.spec.name, now, ready_at, on_spot)
        pool.workers[w.name] = w
        self.worker_pool[w.name] = pool.spec.name
        if ready_at > now:
            self.push(ready_at, _READY, 0)
        else:
            w.idle_since = now
        return w

    def refresh_workers(self) -> None:
        self.workers = [
            WorkerSlot(w.name, dict(p.spec.resources))
            for p in self.pools.values()
            for w in p.workers.values()
            if w.retired_at is None and w.ready_at <= self.now
        ]

    def busy_workers(self) -> set[str]:
        return {a for attempt in self.attempts.values() for a in attempt.running.workers}

    # -- events -------------------------------------------------------------------------

    def apply(self, now: float, kind: int, job_id: int, attempt: int) -> None:
        if kind == _READY:
            self.refresh_workers()
            return
        if kind == _SCALE:
            return
        super().apply(now, kind, job_id, attempt)

    def account(self, seconds: float) -> None:
        super().account(seconds)
        for attempt in self.attempts.values():
            r = attempt.running
            for address in r.workers:
                pool = self.pools[self.worker_pool[address]]
                pool.used_worker_s += pool.spec.worker_fraction(r.resources) * seconds
        for pool in self.pools.values():
            up = sum(1 for w in pool.workers.values() if w.retired_at is None)
            pool.worker_seconds += up * seconds

    def unsettled(self) -> bool:
        """Whether a job has not ended yet (the first such job id is kept: ids only settle)."""
        jobs = self.jobs
        while self.unsettled_from in jobs and jobs[self.unsettled_from].end is not None:
            self.unsettled_from += 1
        return self.unsettled_from in jobs

    def after_events(self, at: float) -> None:
        self.refresh_workers()
        busy = self.busy_workers()
        demand_list: list[Any] = []
        if self.queued:
            if self.workers and self.last_decision_at == at and self.last_decision is not None:
                demand_list = list(self.last_decision.demand)
            else:
                snapshot = Snapshot(
                    now=at,
                    workers=self.workers,
                    running=[a.running for a in self.attempts.values()],
                    candidates=list(self.queued.values()),
                    usage=self.usage,
                )
                demand_list = admissible_demand(snapshot, self.config)
        by_pool, _ = pool_demand(demand_list, self.pools_config)
        changed = False
        for name, pool in self.pools.items():
            spec = pool.spec
            live = [w for w in pool.workers.values() if w.retired_at is None]
            states = []
            allocated: dict[str, float] = {}
            for w in live:
                ready = w.ready_at <= at
                is_busy = w.name in busy
                if ready and not is_busy and w.idle_since is None:
                    w.idle_since = at
                if is_busy:
                    w.idle_since = None
                states.append(WorkerState(w.name, ready, is_busy, w.idle_since if ready else None))
            for attempt in self.attempts.values():
                r = attempt.running
                copies = sum(1 for a in r.workers if self.worker_pool.get(a) == name)
                for k, v in r.resources.items():
                    allocated[k] = allocated.get(k, 0.0) + v * copies
            state = PoolState(name, tuple(states), allocated)
            history: list[Decision | Sample] = list(pool.history)
            if isinstance(spec.policy, PredictivePolicy):  # only it reads the arrivals
                seen = bisect.bisect_right(pool.sample_times, at)
                history += pool.samples[max(0, seen - spec.policy.max_history) : seen]
            d = decide(spec, by_pool[name], state, history, at)
            pool.history.append(d)
            horizon = at - pool.keep_s
            while pool.history and pool.history[0].at < horizon:
                pool.history.pop(0)
            if d.direction > 0:
                for _ in range(d.target - d.current):
                    self.launch(pool, at, at + spec.startup_s)
                pool.scale_events += 1
                changed = True
            elif d.direction < 0:
                for worker in d.retire:
                    pool.workers[worker].retired_at = at
                pool.scale_events += 1
                changed = True
            pool.peak = max(
                pool.peak, sum(1 for w in pool.workers.values() if w.retired_at is None)
            )
        if changed:
            self.refresh_workers()
            if self.queued:  # a worker ready now (no start-up delay) takes jobs at once
                self.push(at, _READY, 0)
        # the autoscaler's own clock: decide again an interval later while jobs remain
        if at >= self.last_tick + self.interval_s - 1e-9 and self.unsettled():
            self.last_tick = at
            self.push(at + self.interval_s, _SCALE, 0)

    # -- the outcome --------------------------------------------------------------------

    def policy_result(self, policy: str, wall_s: float) -> PolicyResult:
        ends = [j.end for j in self.jobs.values() if j.end is not None]
        end = max(ends) if ends else self.now
        # tenant shares are normalised by every worker ever up (the fixed simulator's
        # capacity); the elastic numbers below are the ones to read
        self.workers = [
            WorkerSlot(w.name, dict(p.spec.resources))
            for p in self.pools.values()
            for w in p.workers.values()
        ] or [WorkerSlot("none", {"CPU": 1.0})]
        self.end_time = end
        sim = self.result(wall_s)
        cost = idle = on_demand = 0.0
        spot_save: float | None = None
        up_s = used_s = 0.0
        pools: dict[str, dict[str, Any]] = {}
        for name, pool in self.pools.items():
            intervals = [
                UpInterval(
                    w.name,
                    w.launched_at,
                    min(end, w.retired_at if w.retired_at is not None else end),
                    w.spot,
                )
                for w in pool.workers.values()
                if w.launched_at < end
            ]
            bill = pool_cost(pool.spec, intervals, pool.used_worker_s)
            cost += bill.cost
            idle += bill.idle_cost
            on_demand += bill.on_demand_cost
            if bill.spot_would_save is not None:
                spot_save = (spot_save or 0.0) + bill.spot_would_save
            up_s += bill.up_s
            used_s += bill.used_worker_s
            span = end - self.start_time
            pools[name] = {
                "policy": pool.spec.policy.name,
                "cost": bill.cost,
                "idle_cost": bill.idle_cost,
                "scale_events": pool.scale_events,
                "workers_peak": pool.peak,
                "workers_mean": pool.worker_seconds / span if span > 0 else float(pool.peak),
                "launched": pool.launched,
            }
        span = end - self.start_time
        p50 = {t.tenant: t.wait_p50_s for t in sim.tenants}
        p95 = {t.tenant: t.wait_p95_s for t in sim.tenants}
        worst = max((v for v in p95.values() if v is not None), default=None)
        return PolicyResult(
            policy=policy,
            cost=cost,
            idle_cost=idle,
            on_demand_cost=on_demand,
            spot_would_save=spot_save,
            wait_p50_s=p50,
            wait_p95_s=p95,
            worst_wait_p95_s=worst,
            utilisation=used_s / up_s if up_s > 0 else 0.0,
            scale_events=sum(p.scale_events for p in self.pools.values()),
            workers_peak=sum(p.peak for p in self.pools.values()),
            workers_mean=(
                sum(p.worker_seconds for p in self.pools.values()) / span if span > 0 else 0.0
            ),
            never_started=sum(t.never_started for t in sim.tenants),
            pools=pools,
            simulation=sim,
        )


def _no_demand(spec: PoolSpec) -> PoolDemand:
    return PoolDemand(spec.name)


def simulate_policy(
    trace: Sequence[TraceJob],
    pools: PoolsConfig,
    config: QueueConfig,
    policy: str | None,
    *,
    interval_s: float = INTERVAL_S,
    progress: Callable[[int, int], None] | None = None,
) -> PolicyResult:
    """One policy (None: each pool's own) over ``trace``."""
    trace = list(trace)
    if not trace:
        raise InvalidRequest("the trace has no jobs")
    if policy is not None and policy not in POLICY_NAMES:
        raise InvalidRequest(f"unknown policy {policy!r}; one of {', '.join(POLICY_NAMES)}")
    began = time.perf_counter()
    chosen = with_policy(pools, policy, fixed_sizes(trace, pools))
    sim = _ElasticSimulation(trace, chosen, config, interval_s=interval_s)
    sim.run(progress)
    return sim.policy_result(policy or "as configured", time.perf_counter() - began)


def simulate_policies(
    trace: Sequence[TraceJob],
    pools: PoolsConfig,
    config: QueueConfig,
    policies: Sequence[str],
    *,
    interval_s: float = INTERVAL_S,
    progress: Callable[[str, int, int], None] | None = None,
) -> dict[str, PolicyResult]:
    """Each of ``policies`` over ``trace``, in order; ``progress(policy, done, total)``."""
    unknown = [p for p in policies if p not in POLICY_NAMES]
    if unknown:
        raise InvalidRequest(
            f"unknown policy {', '.join(map(repr, unknown))}; one of {', '.join(POLICY_NAMES)}"
        )
    out = {}
    for name in policies:
        step = None if progress is None else (lambda d, t, n=name: progress(n, d, t))
        out[name] = simulate_policy(
            trace, pools, config, name, interval_s=interval_s, progress=step
        )
    return out


__all__ = [
    "PolicyResult",
    "arrival_samples",
    "fixed_sizes",
    "simulate_policies",
    "simulate_policy",
    "with_policy",
]
