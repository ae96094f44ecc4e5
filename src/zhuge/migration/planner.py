"""Plan live migrations into the quietest windows: ``plan_migrations``.

Input: a forecast (``series_id, timestamp, yhat`` CPU %, a regular grid) and a VM table
(``vm_id, host_id, cluster_id, memory_gb`` and optionally ``dirty_rate_coeff, priority,
must_move_by``). Output: a plan frame, one row per VM, and a summary dict.

Each VM gets the window where its predicted downtime is lowest (earliest on ties), within the
limits of ``PlanConstraints``. Predicted downtime uses the window's mean forecast load; a
migration longer than one window is costed at its starting window's load.
"""

from __future__ import annotations

import time
from collections import Counter
from typing import Any, Literal, NamedTuple

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from zhuge.errors import InvalidRequest
from zhuge.migration.constraints import PlanConstraints
from zhuge.migration.model import MigrationModel
from zhuge.migration.problem import PlanningProblem, build_problem
from zhuge.migration.solvers import occupancy, plan_objective, solve_greedy, solve_milp

__all__ = ["PLAN_COLUMNS", "MigrationPlan", "assign_windows", "plan_migrations"]

Method = Literal["auto", "greedy", "milp"]
PLAN_COLUMNS = [
    "vm_id",
    "start",
    "end",
    "predicted_load",
    "predicted_downtime_ms",
    "predicted_total_s",
    "reason",
    "bandwidth_gbps",
]
MILP_MAX_PAIRS = 20_000  # feasible (VM, window) pairs up to which "auto" solves exactly
MILP_TIME_LIMIT = 60.0  # seconds
MAX_EXAMPLES = 20  # unplaced VMs quoted in the summary


class MigrationPlan(NamedTuple):
    plan: pd.DataFrame
    summary: dict[str, Any]


def plan_migrations(
    forecast: pd.DataFrame,
    vms: pd.DataFrame,
    constraints: PlanConstraints | None = None,
    *,
    model: MigrationModel | None = None,
    hosts: pd.DataFrame | None = None,
    method: Method = "auto",
    milp_time_limit: float = MILP_TIME_LIMIT,
) -> MigrationPlan:
    """Choose a window per VM minimising predicted downtime under the constraints.

    ``method="auto"`` solves exactly (``"milp"``) up to ``MILP_MAX_PAIRS`` feasible (VM, window)
    pairs and greedily above. When the MILP runs, the greedy plan is computed too, the better
    of the two is returned (the MILP's unless it hit its time limit), and the gap between them
    is reported in ``summary["milp"]``. ``hosts`` (``host_id, cluster_id``, optional
    ``max_migrations``) makes unknown hosts an error and sets per-host limits.
    """
    started = time.perf_counter()
    problem = build_problem(
        forecast, vms, constraints or PlanConstraints(), model or MigrationModel(), hosts
    )
    return assign_windows(
        problem, problem.downtime_ms, goal="quietest window", method=method,
        milp_time_limit=milp_time_limit, started=started,
    )  # fmt: skip


def assign_windows(
    problem: PlanningProblem,
    cost: NDArray[np.float64],
    *,
    goal: str,
    method: Method = "auto",
    milp_time_limit: float = MILP_TIME_LIMIT,
    started: float | None = None,
) -> MigrationPlan:
    """Solve ``problem`` for an arbitrary per (VM, window) ``cost`` (downtime, or a baseline's
    preference) and describe the result; ``goal`` names what cost 0-regret means in reasons."""
    started = time.perf_counter() if started is None else started
    if method not in ("auto", "greedy", "milp"):
        raise InvalidRequest(f"method must be 'auto', 'greedy' or 'milp', got {method!r}")
    n_pairs = int(problem.feasible.sum())
    use_milp = method == "milp" or (method == "auto" and n_pairs <= MILP_MAX_PAIRS)
    chosen = solve_greedy(problem, cost)
    used = "greedy"
    milp_info: dict[str, Any] | None = None
    if use_milp:
        greedy_objective = plan_objective(problem, cost, chosen)
        result = solve_milp(problem, cost, time_limit=milp_time_limit)
        milp_info = {
            "status": result.status,
            "message": result.message,
            "objective": result.objective,
            "bound": result.bound,
            "greedy_objective": greedy_objective,
            "greedy_gap_pct": _gap_pct(greedy_objective, result.objective),
            "pairs": n_pairs,
        }
        if result.objective <= greedy_objective:
            chosen, used = result.chosen, "milp"
    plan, summary = describe_plan(problem, cost, chosen, goal=goal)
    summary["method"] = used
    if milp_info is not None:
        summary["milp"] = milp_info
    summary["seconds"] = round(time.perf_counter() - started, 3)
    return MigrationPlan(plan, summary)


def _gap_pct(greedy: float, exact: float) -> float | None:
    if not np.isfinite(exact):
        return None
    return 0.0 if greedy == exact else 100.0 * (greedy - exact) / max(abs(exact), 1e-12)


def _stamps(ns: NDArray[np.int64], keep: NDArray[np.bool_], tz: Any) -> pd.DatetimeIndex:
    """int64 ns since the epoch (UTC) → timestamps in ``tz``, NaT where not ``keep``."""
    nat = np.iinfo(np.int64).min
    index = pd.DatetimeIndex(np.where(keep, ns, nat).view("M8[ns]"))
    return index.tz_localize("UTC").tz_convert(tz) if tz is not None else index


def _scalar(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def describe_plan(
    problem: PlanningProblem, cost: NDArray[np.float64], chosen: NDArray[np.int64], *, goal: str
) -> tuple[pd.DataFrame, dict[str, Any]]:
    V = problem.n_vms
    rows = np.arange(V)
    placed = chosen >= 0
    w = np.where(placed, chosen, 0)
    load = np.where(placed, problem.load[rows, w], np.nan)
    downtime = np.where(placed, problem.downtime_ms[rows, w], np.nan)
    total = np.where(placed, problem.total_s[rows, w], np.nan)
    start_ns = problem.window_starts.asi8[w]
    end_ns = start_ns + np.ceil(np.nan_to_num(total) * 1e9).astype(np.int64)
    start = _stamps(start_ns, placed, problem.window_starts.tz)
    end = _stamps(end_ns, placed, problem.window_starts.tz)

    host_occ, cluster_occ, bandwidth = occupancy(problem, chosen)
    reasons, categories = _reasons(problem, cost, chosen, host_occ, cluster_occ, bandwidth, goal)
    plan = pd.DataFrame(
        {
            "vm_id": problem.vms["vm_id"].to_numpy(),
            "start": start,
            "end": end,
            "predicted_load": load,
            "predicted_downtime_ms": downtime,
            "predicted_total_s": total,
            "reason": reasons,
            "bandwidth_gbps": np.where(placed, problem.link_gbps, np.nan),
        }
    )
    unplaced = np.flatnonzero(~placed)
    memory = problem.vms["memory_gb"].to_numpy()
    r = problem.model.dirty_rate_mbps(
        memory, np.nan_to_num(load), problem.vms["dirty_rate_coeff"].to_numpy()
    )
    non_convergent = placed & (r >= problem.model.bandwidth_mbps)
    summary: dict[str, Any] = {
        "vms": V,
        "placed": int(placed.sum()),
        "unplaced": len(unplaced),
        "windows": problem.n_windows,
        "window": str(problem.constraints.window),
        "first_window": str(problem.window_starts[0]),
        "deadline": str(problem.deadline),
        "total_predicted_downtime_ms": float(np.nansum(downtime)),
        "mean_predicted_downtime_ms": float(np.nanmean(downtime)) if placed.any() else None,
        "mean_predicted_load": float(np.nanmean(load)) if placed.any() else None,
        "max_predicted_total_s": float(np.nanmax(total)) if placed.any() else None,
        "non_convergent": int(non_convergent.sum()),
        "peak_concurrent_per_host": int(host_occ.max(initial=0)),
        "peak_concurrent_per_cluster": int(cluster_occ.max(initial=0)),
        "peak_bandwidth_gbps": float(bandwidth.max(initial=0.0)),
        "objective": plan_objective(problem, cost, chosen),
        "unplaced_by_reason": dict(Counter(categories[i] for i in unplaced)),
        "unplaced_examples": [
            {"vm_id": _scalar(problem.vms["vm_id"].iat[i]), "reason": reasons[i]}
            for i in unplaced[:MAX_EXAMPLES]
        ],
    }
    return plan, summary


def _blockers(
    problem: PlanningProblem,
    vm: NDArray[np.int64],
    window: NDArray[np.int64],
    host_occ: NDArray[np.int64],
    cluster_occ: NDArray[np.int64],
    bandwidth: NDArray[np.float64],
) -> tuple[NDArray[np.bool_], NDArray[np.bool_], NDArray[np.bool_]]:
    """For VM ``vm`` starting in ``window``: would its host, cluster or the bandwidth overflow?"""
    spans = problem.span[vm, window]
    host_full = np.zeros(len(vm), dtype=bool)
    cluster_full = np.zeros(len(vm), dtype=bool)
    bandwidth_full = np.zeros(len(vm), dtype=bool)
    for k in range(int(spans.max()) if len(vm) else 0):
        held = spans > k
        wk = np.minimum(window + k, problem.n_windows - 1)
        host_full |= held & (host_occ[problem.host[vm], wk] >= problem.host_limit[problem.host[vm]])
        cluster_full |= held & (cluster_occ[problem.cluster[vm], wk] >= problem.cluster_limit)
        bandwidth_full |= held & (
            bandwidth[wk] + problem.link_gbps[vm] > problem.bandwidth_limit + 1e-9
        )
    return host_full, cluster_full, bandwidth_full


def _reasons(
    problem: PlanningProblem,
    cost: NDArray[np.float64],
    chosen: NDArray[np.int64],
    host_occ: NDArray[np.int64],
    cluster_occ: NDArray[np.int64],
    bandwidth: NDArray[np.float64],
    goal: str,
) -> tuple[list[str], list[str]]:
    """A sentence per VM saying why it got its window (or none), and a category per VM."""
    V = problem.n_vms
    masked = np.where(problem.feasible, cost, np.inf)
    best = np.argmin(masked, axis=1)  # first minimum: earliest on ties
    rows = np.arange(V)
    placed = chosen >= 0
    w = np.where(placed, chosen, best)
    at_best = np.isclose(masked[rows, w], masked[rows, best], rtol=1e-12, atol=1e-9)
    host_full, cluster_full, bandwidth_full = _blockers(
        problem, rows, best, host_occ, cluster_occ, bandwidth
    )
    starts = problem.window_starts.strftime("%Y-%m-%d %H:%M")
    host_ids = problem.host_ids
    cluster_ids = problem.cluster_ids
    memory = problem.vms["memory_gb"].to_numpy()
    loads = problem.load[rows, w]
    rate = problem.model.dirty_rate_mbps(memory, loads, problem.vms["dirty_rate_coeff"].to_numpy())
    non_convergent = rate >= problem.model.bandwidth_mbps
    reasons: list[str] = []
    categories: list[str] = []
    placed_l, at_best_l, non_convergent_l = (
        placed.tolist(),
        at_best.tolist(),
        non_convergent.tolist(),
    )
    for v in range(V):
        if placed_l[v]:
            if at_best_l[v]:
                text = goal
            else:
                full = [
                    name
                    for name, flag in (
                        (f"host {host_ids[problem.host[v]]} at its limit", host_full[v]),
                        (
                            f"cluster {cluster_ids[problem.cluster[v]]} at its limit",
                            cluster_full[v],
                        ),
                        ("bandwidth budget used up", bandwidth_full[v]),
                    )
                    if flag
                ]
                why = ", ".join(full) if full else "taken by higher-priority or harder-to-place VMs"
                text = f"best window {starts[best[v]]} full ({why})"
            if non_convergent_l[v]:
                text += "; pre-copy cannot converge (dirty rate >= link rate): full stop-and-copy"
            reasons.append(text)
            categories.append("placed")
        else:
            text, category = _unplaced_reason(problem, v, host_occ, cluster_occ, bandwidth)
            reasons.append(text)
            categories.append(category)
    return reasons, categories


def _unplaced_reason(
    problem: PlanningProblem,
    v: int,
    host_occ: NDArray[np.int64],
    cluster_occ: NDArray[np.int64],
    bandwidth: NDArray[np.float64],
) -> tuple[str, str]:
    host = problem.host[v]
    if problem.host_limit[host] == 0:
        return (
            f"host {problem.host_ids[host]} allows no migrations (max_migrations = 0)",
            "host-disabled",
        )
    if not problem.forecast_known[v].any():
        return (
            f"no forecast in the planning period from {problem.window_starts[0]}: its "
            "forecast ends before (its telemetry stopped early)",
            "no-forecast",
        )
    if not problem.ends_in_time[v].any():
        must = problem.vms["must_move_by"].iat[v]
        limit = problem.deadline if pd.isna(must) or must >= problem.deadline else must
        shortest = float(problem.total_s[v].min())
        return (
            f"cannot finish by {limit}: the migration needs at least {shortest:.0f} s from "
            f"{problem.window_starts[0]}",
            "deadline",
        )
    windows = np.flatnonzero(problem.feasible[v])
    if len(windows) == 0:
        if not problem.blackout.any():
            return "no window it could finish in is covered by its forecast", "no-forecast"
        return "every window it could finish in overlaps a blackout or lacks a forecast", "blackout"
    vm = np.full(len(windows), v)
    host_full, cluster_full, bandwidth_full = _blockers(
        problem, vm, windows, host_occ, cluster_occ, bandwidth
    )
    parts = [
        f"{name} in {int(flags.sum())}"
        for name, flags in (
            (f"host {problem.host_ids[host]} full", host_full),
            (f"cluster {problem.cluster_ids[problem.cluster[v]]} full", cluster_full),
            ("bandwidth full", bandwidth_full),
        )
        if flags.any()
    ]
    return f"no room in any of its {len(windows)} feasible windows ({'; '.join(parts)})", "capacity"
