"""Every plan, from either solver, on random instances, breaks no constraint."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from zhuge.migration import MigrationModel, PlanConstraints, check_plan, plan_migrations
from zhuge.migration.problem import build_problem
from zhuge.migration.solvers import plan_objective, solve_greedy, solve_milp

BLACKOUTS = ["01:00-02:30", "22:00-01:00", "05:00-05:30", "03:10-03:20"]


@st.composite
def instances(draw):
    n_vms = draw(st.integers(1, 10))
    n_hosts = draw(st.integers(1, 4))
    n_clusters = draw(st.integers(1, min(2, n_hosts)))
    step = draw(st.sampled_from(["30min", "1h"]))
    n_steps = draw(st.integers(3, 10))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    stamps = pd.date_range("2024-03-01 20:00", periods=n_steps, freq=step)
    vm_ids = [f"v{i}" for i in range(n_vms)]
    forecast = pd.DataFrame(
        {
            "series_id": np.repeat(vm_ids, n_steps),
            "timestamp": np.tile(stamps, n_vms),
            "yhat": rng.uniform(-5, 110, n_vms * n_steps),  # messy: below 0, above 100
        }
    )
    host = rng.integers(0, n_hosts, n_vms)
    vms = pd.DataFrame(
        {
            "vm_id": vm_ids,
            "host_id": [f"h{h}" for h in host],
            "cluster_id": [f"c{h % n_clusters}" for h in host],
            # 0.5 Gbit/s links: 100+ GB guests take more than one window
            "memory_gb": rng.choice([0.5, 4.0, 16.0, 64.0, 150.0], n_vms),
            "priority": rng.integers(0, 3, n_vms),
            "dirty_rate_coeff": np.where(
                rng.random(n_vms) < 0.3, np.nan, rng.uniform(0, 30, n_vms)
            ),
        }
    )
    if draw(st.booleans()):
        offsets = rng.integers(1, n_steps + 1, n_vms) * pd.Timedelta(step)
        vms["must_move_by"] = np.where(rng.random(n_vms) < 0.5, stamps[0] + offsets, pd.NaT)
    window = draw(st.sampled_from(["30min", "1h", "2h"]))
    horizon = stamps[-1] + pd.Timedelta(step) - stamps[0]
    if pd.Timedelta(window) > horizon:
        window = step
    deadline = None
    if draw(st.booleans()):
        deadline = stamps[0] + pd.Timedelta(window) * draw(
            st.integers(1, max(1, horizon // pd.Timedelta(window)))
        )
    constraints = PlanConstraints(
        window=window,
        max_per_host=draw(st.integers(1, 2)),
        max_per_cluster=draw(st.sampled_from([None, 1, 2, 3])),
        bandwidth_gbps=draw(st.sampled_from([None, 0.5, 1.0, 1.5])),
        blackouts=tuple(draw(st.lists(st.sampled_from(BLACKOUTS), max_size=2, unique=True))),
        deadline=deadline,
    )
    return forecast, vms, constraints


MODEL = MigrationModel(bandwidth_gbps=0.5)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(instances())
def test_plans_of_both_methods_violate_nothing(instance) -> None:
    forecast, vms, constraints = instance
    for method in ("greedy", "milp"):
        # no time limit: a slow machine must not swap the MILP's plan for the greedy's
        plan, summary = plan_migrations(
            forecast, vms, constraints, model=MODEL, method=method, milp_time_limit=math.inf
        )
        assert summary["method"] == method  # the plan checked is that method's
        assert check_plan(plan, vms, constraints) == [], method
        assert len(plan) == len(vms)
        assert summary["placed"] + summary["unplaced"] == len(vms)
        assert plan["reason"].str.len().gt(0).all()


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(instances())
def test_milp_objective_is_at_most_greedy(instance) -> None:
    forecast, vms, constraints = instance
    problem = build_problem(forecast, vms, constraints, MODEL)
    cost = problem.downtime_ms
    greedy = plan_objective(problem, cost, solve_greedy(problem, cost))
    exact = solve_milp(problem, cost, time_limit=math.inf)  # status 0: proven optimal
    assert exact.status == 0, exact.message
    assert exact.objective <= greedy * (1 + 1e-9) + 1e-9


def test_check_plan_catches_violations() -> None:
    stamps = pd.date_range("2024-01-01", periods=4, freq="1h")
    forecast = pd.DataFrame(
        {"series_id": np.repeat(["a", "b"], 4), "timestamp": np.tile(stamps, 2), "yhat": 10.0}
    )
    vms = pd.DataFrame(
        {
            "vm_id": ["a", "b"],
            "host_id": ["h", "h"],
            "cluster_id": ["c", "c"],
            "memory_gb": [8.0, 8.0],
        }
    )
    constraints = PlanConstraints(window="1h", blackouts=("02:00-03:00",))
    plan, _ = plan_migrations(forecast, vms, constraints)
    assert check_plan(plan, vms, constraints) == []
    broken = plan.copy()
    broken["start"] = pd.Timestamp("2024-01-01 02:00")
    broken["end"] = broken["start"] + pd.to_timedelta(broken["predicted_total_s"], unit="s")
    found = check_plan(broken, vms, constraints)
    assert any(v.startswith("runs in a blackout") for v in found)
    assert any(v.startswith("host over its limit") for v in found)
    assert check_plan(plan.iloc[:1], vms, constraints) == ["vm not in plan: b"]
