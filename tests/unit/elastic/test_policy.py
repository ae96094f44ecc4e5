"""The scaling decision as a pure function: property tests over long runs of decisions.

A small world follows each decision: a scale-up adds workers (ready after ``startup``
seconds), a scale-down retires exactly the workers the decision names; at each step a random
load says how many ready workers are busy and how many jobs wait. The properties hold for
every policy, configuration and load hypothesis draws.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from zhuge.jobs.admission import Demand
from zhuge.jobs.elastic.policy import (
    Decision,
    PoolDemand,
    PoolState,
    Sample,
    ShapeDemand,
    WorkerState,
    decide,
    pool_demand,
    workers_for,
)
from zhuge.jobs.elastic.pools import PoolsConfig, PoolSpec

PROPERTY = settings(
    derandomize=True,
    deadline=None,
    max_examples=60,
    suppress_health_check=[HealthCheck.too_slow],
    database=None,
)
DEMAND_DRIVEN = ("rule", "demand", "predictive")


def pool(**fields: Any) -> PoolSpec:
    document = {"name": "p", "resources": {"CPU": 4, "memory_gb": 16}, "max": 10, **fields}
    return PoolsConfig.parse({"pools": [document]}).pools[0]


def cpu_jobs(count: int, cpu: float = 1.0, gang: int = 1) -> PoolDemand:
    return PoolDemand("p", (ShapeDemand({"CPU": cpu}, count, gang),) if count else ())


@dataclass
class World:
    """A pool's workers following the decisions made for it."""

    spec: PoolSpec
    startup: float = 0.0
    workers: dict[str, dict[str, Any]] = field(default_factory=dict)
    history: list[Decision | Sample] = field(default_factory=list)
    made: int = 0

    def state(self, now: float, busy: int) -> PoolState:
        ready = sorted(n for n, w in self.workers.items() if w["ready_at"] <= now)
        states = []
        for i, name in enumerate(ready):
            w = self.workers[name]
            is_busy = i < busy
            if is_busy:
                w["idle_since"] = None
            elif w["idle_since"] is None:
                w["idle_since"] = now
            states.append(WorkerState(name, True, is_busy, w["idle_since"]))
        starting = [n for n, w in self.workers.items() if w["ready_at"] > now]
        states += [WorkerState(n, ready=False) for n in sorted(starting)]
        held = min(busy, len(ready)) * 4.0
        return PoolState("p", tuple(states), {"CPU": held})

    def step(self, now: float, busy: int, demand: PoolDemand) -> tuple[PoolState, Decision]:
        state = self.state(now, busy)
        d = decide(self.spec, demand, state, self.history, now)
        self.history.append(d)
        if d.target > d.current:
            for _ in range(d.target - d.current):
                self.made += 1
                self.workers[f"w{self.made:04d}"] = {
                    "ready_at": now + self.startup,
                    "idle_since": None,
                }
        for name in d.retire:
            del self.workers[name]
        return state, d


policies = st.sampled_from(["rule", "demand", "predictive", "fixed-peak", "fixed-mean"])


@st.composite
def configs(draw: st.DrawFn) -> PoolSpec:
    name = draw(policies)
    lo = draw(st.integers(0, 4))
    hi = draw(st.integers(max(lo, 1), 8))
    policy: dict[str, Any] = {"name": name}
    if name.startswith("fixed"):
        policy["workers"] = draw(st.integers(0, 10))
    if name == "predictive":
        policy.update({"model": "window_median", "min_history": 3, "interval": 60})
    if name == "rule":
        policy.update({"waiting_jobs": draw(st.integers(0, 5)), "step": draw(st.integers(1, 3))})
    return pool(
        min=lo,
        max=hi,
        warm=draw(st.integers(0, hi)),
        idle_timeout=draw(st.sampled_from([0, 30, 120])),
        startup_s=draw(st.sampled_from([0, 45])),
        policy=policy,
        cooldown={"up": draw(st.sampled_from([0, 20, 60])), "down": draw(st.sampled_from([0, 90]))},
        stabilisation={
            "up": draw(st.sampled_from([0, 30])),
            "down": draw(st.sampled_from([0, 60, 300])),
        },
    )


loads = st.lists(
    st.tuples(st.integers(0, 12), st.integers(0, 30), st.sampled_from([1, 1, 1, 2, 4])),
    min_size=5,
    max_size=60,
)


@PROPERTY
@given(spec=configs(), load=loads, start=st.integers(0, 6))
def test_bounds_cooldowns_and_idle_workers(spec: PoolSpec, load, start: int) -> None:
    world = World(spec, startup=spec.startup_s)
    for _ in range(start):
        world.made += 1
        world.workers[f"w{world.made:04d}"] = {"ready_at": -1e9, "idle_since": None}
    last_up = last_change = None
    now = 0.0
    for i, (busy, waiting, gang) in enumerate(load):
        now = i * 15.0
        if i % 4 == 0 and spec.policy_name == "predictive":
            world.history.append(Sample(now, waiting, waiting * 30.0))
        demand = cpu_jobs(waiting, gang=gang)
        state, d = world.step(now, busy, demand)
        current = len(state.up)
        # never above max or below min, unless the workers already were (busy ones stay)
        assert min(current, spec.min) <= d.target <= max(current, spec.max)
        if spec.min <= current <= spec.max:
            assert spec.min <= d.target <= spec.max
        # a retired worker was idle for idle_timeout; never a busy or starting one
        by_name = {w.name: w for w in state.workers}
        for name in d.retire:
            w = by_name[name]
            assert w.ready and not w.busy
            assert w.idle_since is not None and now - w.idle_since >= spec.idle_timeout
        assert d.target == current - len(d.retire) if d.direction < 0 else not d.retire
        # cooldowns: scale-ups cooldown.up apart (not from zero); scale-downs cooldown.down
        # after any scale event
        if d.direction > 0:
            if current > 0 and last_up is not None:
                assert now - last_up >= spec.cooldown.up
            last_up = now
        if d.direction < 0 and last_change is not None:
            assert now - last_change >= spec.cooldown.down
        if d.direction:
            last_change = now
        # back from zero on the first admissible job
        if current == 0 and waiting > 0 and spec.max > 0 and not spec.policy_name.startswith("f"):
            assert d.target >= min(spec.max, max(1, gang))
        # warm idle workers above the demand: an empty pool with warm stays warm
        if spec.policy_name in DEMAND_DRIVEN and d.direction < 0:
            assert d.target >= min(spec.max, max(spec.min, spec.warm))


@PROPERTY
@given(
    spec=configs(),
    busy=st.integers(0, 8),
    waiting=st.integers(0, 12),
    start=st.integers(0, 8),
)
def test_no_flapping_on_a_steady_load(spec: PoolSpec, busy: int, waiting: int, start: int) -> None:
    """A steady load: the same work for an hour, jobs waiting until workers take them. The
    target moves in one direction only; every policy but ``rule`` (which adds a step at a
    time) moves at most once."""
    world = World(spec)
    for _ in range(start):
        world.made += 1
        world.workers[f"w{world.made:04d}"] = {"ready_at": -1e9, "idle_since": -1e9}
    total = busy + waiting  # the work there is, in one-worker jobs
    directions = []
    for i in range(240):
        now = i * 15.0
        if spec.policy_name == "predictive" and i % 4 == 0:
            world.history.append(Sample(now, total, total * 60.0))
        ready = len(world.workers)
        running = min(total, ready)
        demand = PoolDemand(
            "p", (ShapeDemand({"CPU": 4}, total - running),) if total > running else ()
        )
        _, d = world.step(now, running, demand)
        if d.direction:
            directions.append(d.direction)
    assert len(set(directions)) <= 1, directions
    if spec.policy_name != "rule":
        assert len(directions) <= 1, directions


def test_a_gang_of_four_asks_for_four_workers_at_once() -> None:
    spec = pool(min=0, max=8)
    gang = cpu_jobs(1, cpu=1, gang=4)
    d = decide(spec, gang, PoolState("p"), [], 0.0)
    assert (d.current, d.target) == (0, 4)
    # two gangs of 4 × 1 CPU share four 4-CPU workers; a third single 3-CPU job needs a fifth
    two = PoolDemand("p", (ShapeDemand({"CPU": 1}, 2, 4), ShapeDemand({"CPU": 3}, 1)))
    assert workers_for(spec, two) == 5
    # a gang larger than the pool's max is no pool's demand
    small = PoolsConfig.parse({"pools": [{"name": "p", "resources": {"CPU": 4}, "max": 3}]})
    by_pool, nowhere = pool_demand([Demand({"CPU": 1}, 1, gang=4)], small)
    assert by_pool["p"].jobs == 0 and nowhere == [Demand({"CPU": 1}, 1, gang=4)]


def test_demand_goes_to_the_smallest_pool_that_fits() -> None:
    pools = PoolsConfig.parse(
        {
            "pools": [
                {"name": "gpu", "resources": {"GPU": 1, "CPU": 8, "memory_gb": 64}, "max": 2},
                {"name": "big", "resources": {"CPU": 32, "memory_gb": 128}, "max": 2},
                {"name": "cpu", "resources": {"CPU": 4, "memory_gb": 16}, "max": 2},
            ]
        }
    )
    by_pool, nowhere = pool_demand(
        [
            Demand({"CPU": 1}, 3),
            Demand({"CPU": 8}, 1),
            Demand({"GPU": 1, "CPU": 2}, 2),
            Demand({"GPU": 0.5}, 1),
            Demand({"GPU": 2}, 1),
        ],
        pools,
    )
    assert by_pool["cpu"].jobs == 3
    assert by_pool["big"].jobs == 1  # 8 CPU: not the 4-CPU pool, not the GPU one
    assert by_pool["gpu"].jobs == 3
    assert [d.resources for d in nowhere] == [{"GPU": 2}]


def test_scale_to_zero_only_after_idle_timeout_and_with_min_and_warm_zero() -> None:
    idle = (
        WorkerState("a", busy=False, idle_since=0.0),
        WorkerState("b", busy=False, idle_since=50.0),
    )
    state = PoolState("p", idle)
    spec = pool(min=0, warm=0, idle_timeout=100, stabilisation={"down": 0}, cooldown={"down": 0})
    assert decide(spec, cpu_jobs(0), state, [], 99.0).target == 2  # nobody idle 100 s yet
    d = decide(spec, cpu_jobs(0), state, [], 120.0)
    assert (d.target, d.retire) == (1, ("a",))
    assert decide(spec, cpu_jobs(0), state, [], 150.0).target == 0
    warm = pool(min=0, warm=1, idle_timeout=100, stabilisation={"down": 0}, cooldown={"down": 0})
    assert decide(warm, cpu_jobs(0), state, [], 500.0).target == 1
    floor = pool(min=2, warm=0, idle_timeout=100, stabilisation={"down": 0}, cooldown={"down": 0})
    assert decide(floor, cpu_jobs(0), state, [], 500.0).target == 2


def test_back_from_zero_ignores_cooldown_and_up_window() -> None:
    spec = pool(min=0, cooldown={"up": 600}, stabilisation={"up": 600})
    before = Decision("p", "demand", 0.0, 0, 1, 1, "")
    gone = Decision("p", "demand", 10.0, 1, 0, 0, "")
    d = decide(spec, cpu_jobs(1), PoolState("p"), [before, gone], 20.0)
    assert (d.current, d.target) == (0, 1)
    # with workers up, the same history holds a further scale-up back
    one = PoolState("p", (WorkerState("a", busy=True),), {"CPU": 4})
    held = decide(spec, cpu_jobs(8, cpu=4), one, [before, gone], 20.0)
    assert held.target == 1 and "600s up window" in held.reason
    late = decide(spec, cpu_jobs(8, cpu=4), one, [before, gone], 700.0)
    assert late.target == 9


def test_rule_adds_a_step_above_the_threshold_with_enough_waiting() -> None:
    spec = pool(policy={"name": "rule", "threshold": 0.8, "waiting_jobs": 5, "step": 2})
    busy = PoolState("p", (WorkerState("a", busy=True), WorkerState("b", busy=True)), {"CPU": 7})
    assert decide(spec, cpu_jobs(6), busy, [], 0.0).target == 4  # 7/8 > 80 %, 6 > 5 waiting
    assert decide(spec, cpu_jobs(5), busy, [], 0.0).target == 2  # 5 waiting: not more than 5
    light = PoolState("p", busy.workers, {"CPU": 6})
    assert decide(spec, cpu_jobs(9), light, [], 0.0).target == 2  # 75 % ≤ 80 %


def test_predictive_runs_ahead_of_forecast_arrivals_and_falls_back_to_demand() -> None:
    policy = {"name": "predictive", "model": "window_median", "min_history": 4, "interval": 60}
    spec = pool(max=20, policy=policy, startup_s=60)
    state = PoolState("p", (WorkerState("a", busy=True),), {"CPU": 4})
    # 300 worker-seconds arrive every minute: 5 workers busy in steady state
    samples = [Sample(60.0 * i, 10, 300.0) for i in range(6)]
    d = decide(spec, cpu_jobs(0), state, samples, 400.0)
    assert d.target == 5 and d.inputs["forecast_workers"] == pytest.approx(5.0)
    short = decide(spec, cpu_jobs(0), state, samples[:3], 400.0)
    assert short.target == 1 and "history" in short.reason


def test_demand_with_no_worker_up_keeps_quotas_and_gangs() -> None:
    """From zero, demand is what admission would start were there room: a tenant at its
    borrowing limit asks for nothing (else a pool would grow for jobs that could not run on
    it, shrink after the idle timeout, and grow again), a gang asks for its N workers."""
    from zhuge.jobs.admission import Candidate, QueueConfig, Snapshot, admissible_demand

    config = QueueConfig.parse(
        {
            "tenants": {
                "capped": {"nominal": {"CPU": 2}, "borrowing_limit": {"CPU": 0}},
                "free": {"nominal": {"CPU": 2}},
            }
        }
    )
    candidates = [
        Candidate(1, "capped", 0, {"CPU": 2}, 0.0),
        Candidate(2, "capped", 0, {"CPU": 2}, 0.0),  # past its nominal, may not borrow
        Candidate(3, "free", 0, {"CPU": 1}, 0.0),
        Candidate(4, "free", 0, {"CPU": 1}, 0.0),
        Candidate(5, "free", 0, {"CPU": 1, "GPU": 1}, 0.0),
        Candidate(6, "free", 0, {"CPU": 1}, 0.0, gang=4),
    ]
    demand = admissible_demand(
        Snapshot(now=10.0, workers=[], running=[], candidates=candidates), config
    )
    assert sorted((tuple(sorted(d.resources.items())), d.count, d.gang) for d in demand) == [
        ((("CPU", 1.0),), 1, 4),
        ((("CPU", 1.0),), 2, 1),
        ((("CPU", 1.0), ("GPU", 1.0)), 1, 1),
        ((("CPU", 2.0),), 1, 1),
    ]
    assert admissible_demand(Snapshot(now=0.0, workers=[], running=[], candidates=[]), config) == []


def test_arrival_samples_count_work_per_interval_and_pool() -> None:
    from zhuge.jobs.elastic.policy import Arrival, arrival_samples

    pools = PoolsConfig.parse(
        {
            "pools": [
                {"name": "cpu", "resources": {"CPU": 4}, "max": 4},
                {"name": "gpu", "resources": {"CPU": 8, "GPU": 1}, "max": 4},
            ]
        }
    )
    arrivals = [
        Arrival(0.0, {"CPU": 2}, 1, 100.0),  # half a worker for 100 s: 50 worker-seconds
        Arrival(59.0, {"CPU": 1}, 4, 10.0),  # a gang of 4 quarter-workers: 10
        Arrival(61.0, {"GPU": 1}, 1, 30.0),  # the GPU pool: 30
        Arrival(150.0, {"CPU": 4}, 1, 7.0),  # after the last whole interval: left out
        Arrival(-1.0, {"CPU": 4}, 1, 7.0),  # before the start: left out
        Arrival(10.0, {"GPU": 4}, 1, 7.0),  # no pool holds it
    ]
    samples = arrival_samples(arrivals, pools, 60.0, start=0.0, end=150.0)
    assert samples["cpu"] == [Sample(60.0, 2, 60.0), Sample(120.0, 0, 0.0)]
    assert samples["gpu"] == [Sample(60.0, 0, 0.0), Sample(120.0, 1, 30.0)]


@PROPERTY
@given(
    shapes=st.lists(
        st.tuples(
            st.sampled_from([0.5, 1.0, 2.0, 3.0, 4.0]),
            st.sampled_from([0.0, 2.0, 8.0, 16.0]),
            st.integers(1, 12),
            st.sampled_from([1, 1, 2, 4]),
        ),
        max_size=6,
    )
)
def test_bin_packing_bounds(shapes) -> None:
    """Never fewer workers than the demand's total share of them (rounded up), nor than its
    largest gang; never more than one worker per copy."""
    import math

    spec = pool()
    demand = PoolDemand(
        "p",
        tuple(ShapeDemand({"CPU": cpu, "memory_gb": mem}, n, gang) for cpu, mem, n, gang in shapes),
    )
    need = workers_for(spec, demand)
    total = {"CPU": 0.0, "memory_gb": 0.0}
    for cpu, mem, n, gang in shapes:
        total["CPU"] += cpu * n * gang
        total["memory_gb"] += mem * n * gang
    assert need >= math.ceil(max(total["CPU"] / 4, total["memory_gb"] / 16) - 1e-9)
    assert need >= max((g for *_, g in shapes), default=0)
    assert need <= sum(n * g for *_, n, g in shapes)
