from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd
import pytest

from zhuge.migration import (
    PLAN_COLUMNS,
    MigrationModel,
    PlanConstraints,
    check_plan,
    plan_migrations,
)
from zhuge.migration.planner import assign_windows
from zhuge.migration.problem import PlanningProblem, build_problem
from zhuge.migration.solvers import MilpResult, plan_objective, solve_greedy, solve_milp
from zhuge.migration.synthetic import synthetic_fleet

from .conftest import make_forecast


@pytest.mark.parametrize("method", ["greedy", "milp"])
def test_each_vm_goes_to_its_quietest_window_when_room(small_fleet, method) -> None:
    forecast, vms = small_fleet
    constraints = PlanConstraints(
        window="1h", max_per_host=2, max_per_cluster=None, bandwidth_gbps=None
    )
    plan, summary = plan_migrations(forecast, vms, constraints, method=method)
    assert list(plan.columns) == PLAN_COLUMNS
    starts = dict(zip(plan["vm_id"], plan["start"].dt.hour, strict=True))
    assert starts == {"a": 2, "b": 2, "c": 5}
    assert set(plan["reason"]) == {"quietest window"}
    assert summary["placed"] == 3 and summary["unplaced"] == 0
    assert summary["method"] == method
    assert check_plan(plan, vms, constraints) == []


def test_host_limit_pushes_second_vm_to_next_best_window(small_fleet) -> None:
    forecast, vms = small_fleet
    constraints = PlanConstraints(
        window="1h", max_per_host=1, max_per_cluster=None, bandwidth_gbps=None
    )
    plan, summary = plan_migrations(forecast, vms, constraints, method="greedy")
    by_vm = plan.set_index("vm_id")
    assert sorted(by_vm.loc[["a", "b"], "start"].dt.hour) == [1, 2]  # 10 % then 40 %
    moved = by_vm.loc[["a", "b"], "reason"]
    assert moved.str.contains("host h1 at its limit").sum() == 1
    assert summary["peak_concurrent_per_host"] == 1


def test_ties_go_to_the_earlier_window() -> None:
    forecast = make_forecast({"a": [30, 30, 30, 30]})
    vms = pd.DataFrame({"vm_id": ["a"], "host_id": ["h"], "cluster_id": ["c"], "memory_gb": [8.0]})
    for method in ("greedy", "milp"):
        plan, _ = plan_migrations(forecast, vms, PlanConstraints(window="1h"), method=method)
        assert plan["start"].iat[0] == pd.Timestamp("2024-01-01 00:00")


def test_blackout_and_deadline_are_respected(small_fleet) -> None:
    forecast, vms = small_fleet
    constraints = PlanConstraints(
        window="1h",
        max_per_host=2,
        blackouts=("02:00-03:00",),
        deadline=pd.Timestamp("2024-01-01 05:00"),
    )
    plan, _summary = plan_migrations(forecast, vms, constraints)
    hours = dict(zip(plan["vm_id"], plan["start"].dt.hour, strict=True))
    assert hours["a"] == 1 and hours["b"] == 1  # 02:00 is dark: next quietest is 01:00 (40 %)
    assert hours["c"] == 0  # 05:00 is past the deadline: all equal, earliest wins
    assert check_plan(plan, vms, constraints) == []


def test_unplaceable_vms_are_reported_with_reason(small_fleet) -> None:
    forecast, vms = small_fleet
    vms = vms.assign(must_move_by=[pd.NaT, pd.NaT, pd.Timestamp("2024-01-01 00:00:01")])
    constraints = PlanConstraints(
        window="1h", max_per_host=1, blackouts=("00:00-02:00", "03:00-06:00")
    )
    plan, summary = plan_migrations(forecast, vms, constraints)
    by_vm = plan.set_index("vm_id")
    assert pd.isna(by_vm.at["c", "start"])
    assert by_vm.at["c", "reason"].startswith("cannot finish by 2024-01-01 00:00:01")
    # a and b share host h1 (limit 1) and only 02:00 is open: one of them is left out
    assert summary["unplaced_by_reason"] == {"deadline": 1, "capacity": 1}
    reasons = {e["vm_id"]: e["reason"] for e in summary["unplaced_examples"]}
    assert any("host h1 full in 1" in r for r in reasons.values())
    assert check_plan(plan, vms, constraints) == []


def test_long_migration_holds_several_windows() -> None:
    # 0.5 Gbit/s = 62.5 MB/s: a 64 GB guest takes > 17 min, i.e. 2 windows of 10 min
    forecast = make_forecast({"a": [5] * 6, "b": [5] * 6}, step="10min")
    vms = pd.DataFrame(
        {
            "vm_id": ["a", "b"],
            "host_id": ["h", "h"],
            "cluster_id": ["c", "c"],
            "memory_gb": [64.0, 1.0],
        }
    )
    model = MigrationModel(bandwidth_gbps=0.5)
    constraints = PlanConstraints(window="10min", max_per_host=1, bandwidth_gbps=None)
    plan, _ = plan_migrations(forecast, vms, constraints, model=model, method="milp")
    by_vm = plan.set_index("vm_id")
    assert by_vm.at["a", "predicted_total_s"] > 1000
    a_start, b_start = by_vm.at["a", "start"], by_vm.at["b", "start"]
    assert abs(b_start - a_start) >= pd.Timedelta("20min") or b_start < a_start
    assert check_plan(plan, vms, constraints) == []


def test_priority_wins_scarce_capacity() -> None:
    forecast = make_forecast({"a": [10, 10], "b": [10, 10], "c": [10, 10]})
    vms = pd.DataFrame(
        {
            "vm_id": ["a", "b", "c"],
            "host_id": ["h", "h", "h"],
            "cluster_id": ["c", "c", "c"],
            "memory_gb": [8.0, 8.0, 8.0],
            "priority": [0, 5, 1],
        }
    )
    for method in ("greedy", "milp"):
        plan, _summary = plan_migrations(forecast, vms, PlanConstraints(window="1h"), method=method)
        assert plan.loc[plan["start"].isna(), "vm_id"].tolist() == ["a"]


def test_forecast_on_5min_grid_is_averaged_into_windows() -> None:
    values = [80] * 6 + [10] * 6 + [50] * 6  # 3 half-hours
    forecast = make_forecast({"a": values}, step="5min")
    vms = pd.DataFrame({"vm_id": ["a"], "host_id": ["h"], "cluster_id": ["c"], "memory_gb": [8.0]})
    plan, _ = plan_migrations(forecast, vms, PlanConstraints(window="30min"))
    assert plan["start"].iat[0] == pd.Timestamp("2024-01-01 00:30")
    assert plan["predicted_load"].iat[0] == pytest.approx(10.0)


def test_timezone_aware_forecast_keeps_its_zone() -> None:
    forecast = make_forecast({"a": [50, 10, 50]})
    forecast["timestamp"] = forecast["timestamp"].dt.tz_localize("Asia/Shanghai")
    vms = pd.DataFrame({"vm_id": ["a"], "host_id": ["h"], "cluster_id": ["c"], "memory_gb": [8.0]})
    plan, _ = plan_migrations(
        forecast, vms, PlanConstraints(window="1h", blackouts=("00:00-01:00",))
    )
    assert plan["start"].iat[0] == pd.Timestamp("2024-01-01 01:00", tz="Asia/Shanghai")


def _fits(problem: PlanningProblem, chosen: tuple[int, ...]) -> bool:
    """Does this choice of windows (-1: unplaced) keep every limit? Written out plainly, apart
    from the solvers' own bookkeeping."""
    W = problem.n_windows
    host = np.zeros((len(problem.host_ids), W))
    cluster = np.zeros((len(problem.cluster_ids), W))
    bandwidth = np.zeros(W)
    for v, w in enumerate(chosen):
        if w < 0:
            continue
        if not problem.feasible[v, w] or w + problem.span[v, w] > W:
            return False
        for held in range(w, w + problem.span[v, w]):
            host[problem.host[v], held] += 1
            cluster[problem.cluster[v], held] += 1
            bandwidth[held] += problem.link_gbps[v]
    return bool(
        (host <= problem.host_limit[:, None]).all()
        and (cluster <= problem.cluster_limit).all()
        and (bandwidth <= problem.bandwidth_limit + 1e-9).all()
    )


def _brute_force(problem: PlanningProblem, cost: np.ndarray) -> tuple[float, np.ndarray]:
    """The optimum over every assignment of a window or none to each VM: (W + 1) ** V plans."""
    best, best_choice = math.inf, None
    for choice in itertools.product(range(-1, problem.n_windows), repeat=problem.n_vms):
        if _fits(problem, choice):
            value = plan_objective(problem, cost, np.array(choice))
            if value < best:
                best, best_choice = value, np.array(choice)
    assert best_choice is not None
    return best, best_choice


def _exact(problem: PlanningProblem, cost: np.ndarray) -> MilpResult:
    # no time limit: status 0 then means HiGHS proved the optimum, however slow the machine
    exact = solve_milp(problem, cost, time_limit=math.inf)
    assert exact.status == 0, exact.message
    assert _fits(problem, tuple(exact.chosen.tolist()))
    return exact


@pytest.mark.parametrize("seed", range(6))
def test_milp_optimum_is_never_worse_than_greedy(seed: int) -> None:
    fleet = synthetic_fleet(40, seed=seed, hours=12, vms_per_host=4, hosts_per_cluster=3)
    constraints = PlanConstraints(
        window="1h",
        max_per_host=1,
        max_per_cluster=2,
        bandwidth_gbps=30.0,
        blackouts=("03:00-05:00",),
    )
    problem = build_problem(fleet.forecast, fleet.vms, constraints, MigrationModel())
    cost = problem.downtime_ms
    exact = _exact(problem, cost)
    assert exact.objective == pytest.approx(exact.bound, rel=1e-6)  # proven, not just found
    assert exact.objective <= plan_objective(problem, cost, solve_greedy(problem, cost)) * (
        1 + 1e-9
    )


@pytest.mark.parametrize(
    "constraints",
    [
        # 5 VMs of one cluster, 4 windows: one VM is left out, by the cluster limit
        pytest.param(PlanConstraints(window="1h", max_per_cluster=1), id="cluster-bound"),
        # 10 Gbit/s links in a 15 Gbit/s budget: one migration per window, by the link budget
        pytest.param(
            PlanConstraints(window="1h", max_per_cluster=None, bandwidth_gbps=15.0),
            id="bandwidth-bound",
        ),
        # three VMs share host 0 (one per window), the other two host 1
        pytest.param(
            PlanConstraints(window="1h", max_per_cluster=None, bandwidth_gbps=None),
            id="host-bound",
        ),
    ],
)
@pytest.mark.parametrize("seed", range(3))
def test_milp_finds_the_brute_force_optimum(seed: int, constraints: PlanConstraints) -> None:
    # 5 VMs x 4 windows: 5 ** 5 = 3125 plans, few enough to try them all
    fleet = synthetic_fleet(5, seed=seed, hours=4, vms_per_host=3, hosts_per_cluster=2)
    problem = build_problem(fleet.forecast, fleet.vms, constraints, MigrationModel())
    cost = problem.downtime_ms
    optimum, _ = _brute_force(problem, cost)
    assert _exact(problem, cost).objective == pytest.approx(optimum, rel=1e-12)


def _myopic_problem() -> PlanningProblem:
    """Three 64 GB guests on one host (one migration per window) over three hours, where the
    greedy's static regret misleads it. Predicted downtimes (ms)::

             00:00  01:00  02:00   regret
        a     43.0   50.2   51.1    7.2
        b     43.0   49.8   57.9    6.8
        c     48.2   57.9   57.9    9.7

    Greedy: c (largest regret) takes 00:00, a takes 01:00, b is left 02:00: 156.4 ms. Best: c
    00:00, b 01:00, a 02:00: 149.2 ms. a's regret was computed against 00:00, which c took."""
    forecast = make_forecast({"a": [10, 40, 45], "b": [10, 38, 90], "c": [30, 90, 90]})
    vms = pd.DataFrame(
        {
            "vm_id": list("abc"),
            "host_id": ["h"] * 3,
            "cluster_id": ["c"] * 3,
            "memory_gb": [64.0] * 3,
        }
    )
    constraints = PlanConstraints(
        window="1h", max_per_host=1, max_per_cluster=None, bandwidth_gbps=None
    )
    return build_problem(forecast, vms, constraints, MigrationModel())


def test_milp_beats_greedy_where_greedy_is_myopic() -> None:
    problem = _myopic_problem()
    cost = problem.downtime_ms
    greedy_choice = solve_greedy(problem, cost)
    assert greedy_choice.tolist() == [1, 2, 0]  # the trap the instance was built for
    greedy = plan_objective(problem, cost, greedy_choice)
    optimum, best_choice = _brute_force(problem, cost)
    assert best_choice.tolist() == [2, 1, 0]
    exact = _exact(problem, cost)
    assert exact.chosen.tolist() == [2, 1, 0]
    assert exact.objective == pytest.approx(optimum, rel=1e-12)
    assert exact.objective < greedy - 5.0  # ms: strictly better, by far more than rounding


def test_summary_reports_milp_gap() -> None:
    problem = _myopic_problem()
    _, summary = assign_windows(
        problem, problem.downtime_ms, goal="quietest window", method="auto",
        milp_time_limit=math.inf,
    )  # fmt: skip
    milp = summary["milp"]
    assert summary["method"] == "milp" and milp["status"] == 0
    greedy, exact = milp["greedy_objective"], milp["objective"]
    assert exact < greedy
    assert milp["greedy_gap_pct"] == pytest.approx(100 * (greedy - exact) / exact)
    assert milp["greedy_gap_pct"] > 4.0  # 156.4 ms against 149.2


def test_vectorised_window_costs_match_model() -> None:
    fleet = synthetic_fleet(5, hours=4)
    problem = build_problem(fleet.forecast, fleet.vms, PlanConstraints(), MigrationModel())
    est = MigrationModel().predict(fleet.vms["memory_gb"].to_numpy()[2], problem.load[2, 3])
    assert problem.downtime_ms[2, 3] == pytest.approx(float(est.downtime_ms))
    assert np.all(problem.span >= 1)
