"""How many workers a pool should have: one pure function, ``decide``. No SQL, no providers.

The autoscaler (one decision per pool per interval) and ``zhuge simulate`` both call::

    decide(pool: PoolSpec, demand: PoolDemand, state: PoolState,
           history: Sequence[Decision | Sample], now: float) -> Decision

- ``demand``: what admission would start now if this pool had room, by resource shape
  (``pool_demand`` maps admission's demand onto pools; ``admission.admissible_demand`` makes
  it from a snapshot, also when no worker is up at all, for ``JobStore.demand()`` and the
  simulator alike).
- ``state``: the pool's workers now (starting, ready and busy or idle since when, draining)
  and what running attempts hold on them.
- ``history``: this pool's earlier ``Decision``\\ s (for cooldowns and stabilisation windows)
  and ``Sample``\\ s of the work that arrived per interval (for ``predictive``; made by
  ``arrival_samples`` from ``Arrival``\\ s), oldest first.
  Decisions older than the longest window and samples beyond ``max_history`` may be dropped.
- The ``Decision``: ``target`` workers (not counting draining ones), the ``retire`` list
  (idle workers to drain and retire when the target is below the workers up: never a busy
  one), ``wanted`` (the policy's own target before cooldowns and windows), the ``reason`` in
  words and the ``inputs`` it used, for ``zhuge autoscaler log``.

The policies (``pool.policy``; parameters in ``zhuge.jobs.elastic.pools``):

- ``rule``: allocated / capacity above ``threshold`` and more than ``waiting_jobs`` jobs in
  demand → current + ``step``; without demand, the busy workers (idle ones retire).
- ``demand``: the busy workers plus the demand bin-packed into empty workers (first-fit
  decreasing; a gang of N takes N distinct workers).
- ``predictive``: the larger of ``demand``'s target and the work forecast to arrive per
  interval over the next ``horizon`` intervals (worker-seconds per second = workers), from
  this pool's ``Sample``\\ s with ``zhuge.ml.forecast``; ``demand`` with too little history.
- ``fixed-peak`` / ``fixed-mean``: ``policy.workers`` (the simulator fills it in).

Common to all, in this order: ``warm`` idle workers on top of a demand-driven target; at
least the largest gang waiting when the pool is empty and there is demand (back from zero on
the first admissible job); clamped to ``[min, max]``; a scale-up goes to the least target
wanted over ``stabilisation.up`` and waits ``cooldown.up`` after the last scale-up (neither
applies from zero); a scale-down goes to the most target wanted over ``stabilisation.down``,
waits ``cooldown.down`` after the last scale event either way, and only retires workers idle for
``idle_timeout`` (so a pool reaches zero only with ``min: 0`` and ``warm: 0``).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from zhuge.jobs.admission import (
    EPS,
    Demand,
)
from zhuge.jobs.elastic.pools import (
    FixedPolicy,
    PoolsConfig,
    PoolSpec,
    PredictivePolicy,
    RulePolicy,
)

# -- inputs ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class ShapeDemand:
    """``count`` jobs of one shape, each asking ``resources`` on each of ``gang`` workers."""

    resources: Mapping[str, float]
    count: int
    gang: int = 1


@dataclass(frozen=True)
class PoolDemand:
    """What admission would start on this pool now if it had room."""

    pool: str
    shapes: tuple[ShapeDemand, ...] = ()

    @property
    def jobs(self) -> int:
        return sum(s.count for s in self.shapes)

    @property
    def largest_gang(self) -> int:
        return max((s.gang for s in self.shapes if s.count > 0), default=0)


@dataclass(frozen=True)
class WorkerState:
    """One worker of the pool as the provider and the census see it."""

    name: str
    ready: bool = True
    """Started and taking jobs (False while it starts up)."""
    busy: bool = False
    """Holds at least one attempt."""
    idle_since: float | None = None
    """When it last became idle (None while busy or starting)."""
    draining: bool = False
    """Being retired: takes no new job, does not count toward the pool's size."""


@dataclass(frozen=True)
class PoolState:
    """The pool's workers now, and what running attempts hold on its ready workers."""

    pool: str
    workers: tuple[WorkerState, ...] = ()
    allocated: Mapping[str, float] = field(default_factory=dict)

    @property
    def up(self) -> list[WorkerState]:
        """Starting or ready, not draining: what the pool's size counts."""
        return [w for w in self.workers if not w.draining]

    @property
    def ready(self) -> list[WorkerState]:
        return [w for w in self.up if w.ready]

    @property
    def busy(self) -> int:
        return sum(1 for w in self.up if w.ready and w.busy)


@dataclass(frozen=True)
class Sample:
    """The work that arrived for this pool in the interval ending at ``at``: ``jobs`` jobs
    asking ``work_s`` worker-seconds (``work_seconds``)."""

    at: float
    jobs: int
    work_s: float


@dataclass(frozen=True)
class Decision:
    """One scaling decision for one pool."""

    pool: str
    policy: str
    at: float
    current: int
    """Workers up (starting or ready, not draining) when deciding."""
    target: int
    wanted: int
    """The policy's target with warm and min/max, before cooldowns and windows."""
    reason: str
    inputs: Mapping[str, Any] = field(default_factory=dict)
    retire: tuple[str, ...] = ()
    """Idle workers to drain and retire (when ``target < current``), longest idle first."""

    @property
    def direction(self) -> int:
        """+1 scale-up, -1 scale-down, 0 no change."""
        return (self.target > self.current) - (self.target < self.current)


# -- demand onto pools ----------------------------------------------------------------------


def pool_demand(
    demand: Sequence[Demand], pools: PoolsConfig
) -> tuple[dict[str, PoolDemand], list[Demand]]:
    """Admission's ``demand()`` by pool: each shape goes to ``pools.for_shape`` (the smallest
    pool whose worker holds one copy: a ``GPU=1`` job asks the GPU pool). Returns every pool's
    ``PoolDemand`` (empty ones too) and the demand no pool can hold."""
    shapes: dict[str, list[ShapeDemand]] = {p.name: [] for p in pools.pools}
    unplaceable: list[Demand] = []
    for d in demand:
        pool = pools.for_shape(d.resources)
        if pool is None or pool.max < d.gang:
            unplaceable.append(d)
            continue
        shapes[pool.name].append(ShapeDemand(dict(d.resources), d.count, d.gang))
    return {name: PoolDemand(name, tuple(s)) for name, s in shapes.items()}, unplaceable


@dataclass(frozen=True)
class Arrival:
    """A job submitted at ``at`` asking ``resources`` on each of ``gang`` workers, expected
    to run ``seconds`` (the trace's duration in the simulator; an estimate, such as the
    kind's recent median, live)."""

    at: float
    resources: Mapping[str, float]
    gang: int = 1
    seconds: float = 0.0


def arrival_samples(
    arrivals: Iterable[Arrival], pools: PoolsConfig, interval: float, start: float, end: float
) -> dict[str, list[Sample]]:
    """Per pool, a ``Sample`` for each whole ``interval`` from ``start`` up to ``end`` (the
    last ends at or before ``end``): the jobs that arrived in it for that pool (the pool
    ``for_shape`` picks) and their ``work_seconds``. What ``predictive`` reads as history."""
    steps = max(0, int((end - start) / interval + 1e-9))
    jobs = {p.name: [0] * steps for p in pools.pools}
    work = {p.name: [0.0] * steps for p in pools.pools}
    for a in arrivals:
        k = int((a.at - start) // interval)
        if not 0 <= k < steps:
            continue
        pool = pools.for_shape(a.resources)
        if pool is None:
            continue
        jobs[pool.name][k] += 1
        work[pool.name][k] += work_seconds(pool, a.resources, a.gang, a.seconds)
    return {
        name: [
            Sample(start + (k + 1) * interval, jobs[name][k], work[name][k]) for k in range(steps)
        ]
        for name in jobs
    }


def work_seconds(
    pool: PoolSpec, resources: Mapping[str, float], gang: int, seconds: float
) -> float:
    """Worker-seconds a job takes on ``pool``: its dominant share of one worker × gang ×
    ``seconds`` (what ``Sample.work_s`` adds up)."""
    return pool.worker_fraction(resources) * gang * seconds


# -- bin packing ----------------------------------------------------------------------------


def workers_for(pool: PoolSpec, demand: PoolDemand) -> int:
    """Empty workers of ``pool`` that hold all of ``demand``: first-fit decreasing by the
    dominant share of a worker; each gang's copies on distinct workers (gangs first). A
    shape no worker of the pool holds is left out (``pool_demand`` sends it nowhere)."""
    offers = dict(pool.resources)
    shapes = [s for s in demand.shapes if s.count > 0 and pool.fits(s.resources)]
    shapes.sort(key=lambda s: (s.gang == 1, -pool.worker_fraction(s.resources)))
    bins: list[dict[str, float]] = []
    for s in shapes:
        ask = {k: v for k, v in s.resources.items() if v > 0}
        if s.gang > 1:
            for _ in range(s.count):
                chosen = [i for i, free in enumerate(bins) if _fits(free, ask)][: s.gang]
                while len(chosen) < s.gang:
                    bins.append(dict(offers))
                    chosen.append(len(bins) - 1)
                for i in chosen:
                    _take(bins[i], ask, 1)
            continue
        # identical copies, first fit: each open worker takes as many as fit, in order, then
        # new workers take copies_per_worker each (counted, not placed one by one)
        left = s.count
        for free in bins:
            if left == 0:
                break
            n = min(left, _room(free, ask))
            if n:
                _take(free, ask, n)
                left -= n
        per = pool.copies_per_worker(ask)
        while left > 0:
            n = min(left, per)
            bins.append(dict(offers))
            _take(bins[-1], ask, n)
            left -= n
    return len(bins)


def _room(free: Mapping[str, float], ask: Mapping[str, float]) -> int:
    """How many copies of ``ask`` fit in ``free``."""
    if not ask:
        return 1_000_000
    return max(0, min(math.floor((free.get(k, 0.0) + EPS) / v) for k, v in ask.items()))


def _fits(free: Mapping[str, float], ask: Mapping[str, float]) -> bool:
    return all(free.get(k, 0.0) + EPS >= v for k, v in ask.items() if v > 0)


def _take(free: dict[str, float], ask: Mapping[str, float], copies: int) -> None:
    for k, v in ask.items():
        free[k] = free.get(k, 0.0) - v * copies


# -- the policies ---------------------------------------------------------------------------


def utilisation(pool: PoolSpec, state: PoolState) -> float:
    """Allocated over capacity of the ready workers, by the pool's dominant resource (0..1);
    1 when no worker is ready (nothing free)."""
    ready = len(state.ready)
    if ready == 0:
        return 1.0
    return max(
        (state.allocated.get(k, 0.0) / (v * ready) for k, v in pool.resources.items() if v > 0),
        default=0.0,
    )


def _demand_target(pool: PoolSpec, demand: PoolDemand, state: PoolState) -> tuple[int, dict]:
    bins = workers_for(pool, demand)
    busy = state.busy
    return busy + bins, {"busy": busy, "workers_for_demand": bins}


def _rule_target(
    policy: RulePolicy, pool: PoolSpec, demand: PoolDemand, state: PoolState
) -> tuple[int, dict, str]:
    current = len(state.up)
    util = utilisation(pool, state)
    inputs = {"utilisation": round(util, 4), "waiting_jobs": demand.jobs, "busy": state.busy}
    if util > policy.threshold and demand.jobs > policy.waiting_jobs:
        return (
            current + policy.step,
            inputs,
            f"utilisation {util:.0%} > {policy.threshold:.0%} and {demand.jobs} jobs waiting "
            f"> {policy.waiting_jobs}: add {policy.step}",
        )
    if demand.jobs > 0:
        return current, inputs, f"utilisation {util:.0%}, {demand.jobs} jobs waiting: hold"
    return state.busy, inputs, "no demand: the busy workers"


def forecast_work(policy: PredictivePolicy, samples: Sequence[Sample], horizon: int) -> list[float]:
    """The work (worker-seconds per interval) forecast to arrive in each of the next
    ``horizon`` intervals after ``samples`` (oldest first), with ``policy.model``, never
    below 0. The model is fitted on the series up to the last multiple of
    ``policy.refit_every`` intervals (counted from the first sample) and read further along
    in between; fits are memoised on the series, so deciding many times per interval, or
    between refits, fits once."""
    values = [float(s.work_s) for s in samples]
    n = len(values)
    origin = n - (n % policy.refit_every) if n >= policy.refit_every else n
    ahead = n - origin
    fitted = tuple(values[max(0, origin - policy.max_history) : origin])
    # one fit serves every reading until the next refit: ask it for the longest
    out = _forecast(fitted, horizon + policy.refit_every, policy.season, policy.model)
    return list(out[ahead : ahead + horizon])


@functools.lru_cache(maxsize=256)
def _forecast(
    values: tuple[float, ...], horizon: int, season: int, model: str
) -> tuple[float, ...]:
    import numpy as np

    from zhuge.ml.forecast.baselines import BASELINES

    series = np.asarray(values, dtype=float)[None, :]
    if model in BASELINES:
        out = BASELINES[model](series, horizon, season)
    else:
        from zhuge.ml.forecast.stats import statsforecast_predict

        # a season longer than half the history cannot be fitted: go without one
        usable = season if 2 * season <= series.shape[1] else 1
        out = statsforecast_predict(series, horizon, usable, model=model)
    return tuple(max(0.0, float(v)) if math.isfinite(v) else 0.0 for v in out[0])


def _predictive_target(
    policy: PredictivePolicy,
    pool: PoolSpec,
    demand: PoolDemand,
    state: PoolState,
    samples: Sequence[Sample],
) -> tuple[int, dict, str]:
    target, inputs = _demand_target(pool, demand, state)
    if len(samples) < policy.min_history:
        inputs["history"] = len(samples)
        return (
            target,
            inputs,
            f"{len(samples)} intervals of history < {policy.min_history}: as demand "
            f"({inputs['busy']} busy + {inputs['workers_for_demand']} for demand)",
        )
    horizon = policy.horizon or (math.ceil(pool.startup_s / policy.interval) + 1)
    forecast = forecast_work(policy, samples, horizon)
    ahead = max(forecast, default=0.0) / policy.interval
    inputs.update(
        {"history": len(samples), "forecast_workers": round(ahead, 3), "horizon": horizon}
    )
    need = math.ceil(ahead - 1e-6)
    if need > target:
        return need, inputs, f"forecast {ahead:.2f} workers busy within {horizon} intervals"
    return (
        target,
        inputs,
        f"demand {target} ≥ forecast {ahead:.2f} ({inputs['busy']} busy + "
        f"{inputs['workers_for_demand']} for demand)",
    )


# -- the decision ---------------------------------------------------------------------------


def decide(
    pool: PoolSpec,
    demand: PoolDemand,
    state: PoolState,
    history: Sequence[Decision | Sample],
    now: float,
) -> Decision:
    """The pool's size from now on (see the module's docstring)."""
    policy = pool.policy
    decisions = [h for h in history if isinstance(h, Decision)]
    samples = [h for h in history if isinstance(h, Sample)]
    up = state.up
    current = len(up)
    driven = True  # by demand: warm applies on top
    if isinstance(policy, FixedPolicy):
        wanted = policy.workers if policy.workers is not None else pool.min
        inputs: dict[str, Any] = {"workers": wanted}
        reason = f"{policy.name}: {wanted} workers"
        driven = False
    elif isinstance(policy, RulePolicy):
        wanted, inputs, reason = _rule_target(policy, pool, demand, state)
    elif isinstance(policy, PredictivePolicy):
        wanted, inputs, reason = _predictive_target(policy, pool, demand, state, samples)
    else:
        wanted, inputs = _demand_target(pool, demand, state)
        reason = f"{inputs['busy']} busy + {inputs['workers_for_demand']} for demand"
    inputs["demand_jobs"] = demand.jobs
    if driven and pool.warm:
        wanted += pool.warm
        reason += f" + {pool.warm} warm"
    if current == 0 and demand.jobs > 0 and wanted < demand.largest_gang:
        wanted = demand.largest_gang
        reason = f"back from zero for {demand.jobs} waiting job(s)"
    if wanted < pool.min:
        wanted, reason = pool.min, f"{reason}; at least min {pool.min}"
    if wanted > pool.max:
        wanted, reason = pool.max, f"{reason}; at most max {pool.max}"

    def done(target: int, why: str, retire: Sequence[str] = ()) -> Decision:
        return Decision(
            pool=pool.name,
            policy=policy.name,
            at=now,
            current=current,
            target=target,
            wanted=wanted,
            reason=why,
            inputs=inputs,
            retire=tuple(retire),
        )

    if wanted == current:
        return done(current, reason)
    changes = [d for d in decisions if d.direction != 0 and d.at <= now]
    last_change = max((d.at for d in changes), default=-math.inf)
    last_up = max((d.at for d in changes if d.direction > 0), default=-math.inf)
    if wanted > current:
        if current == 0:  # back from zero on the first admissible job: no window, no wait
            return done(wanted, reason)
        window = [d.wanted for d in decisions if now - d.at < pool.stabilisation.up]
        target = max(current, min([wanted, *window]))
        if target == current:
            return done(current, f"{reason}; held by the {pool.stabilisation.up:g}s up window")
        if now - last_up < pool.cooldown.up:
            return done(current, f"{reason}; cooling down after scaling up at {last_up:g}")
        return done(target, reason)
    # scaling down: never a busy or starting worker, only one idle for idle_timeout
    window = [d.wanted for d in decisions if now - d.at < pool.stabilisation.down]
    target = min(current, max([wanted, *window]))
    if target == current:
        return done(current, f"{reason}; held by the {pool.stabilisation.down:g}s down window")
    if now - last_change < pool.cooldown.down:
        return done(current, f"{reason}; cooling down after scaling at {last_change:g}")
    idle = sorted(
        (
            w
            for w in up
            if w.ready
            and not w.busy
            and w.idle_since is not None
            and now - w.idle_since >= pool.idle_timeout
        ),
        key=lambda w: (w.idle_since, w.name),
    )
    retire = [w.name for w in idle[: current - target]]
    if not retire:
        return done(current, f"{reason}; no worker idle for {pool.idle_timeout:g}s")
    return done(current - len(retire), reason, retire)
