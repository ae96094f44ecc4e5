"""Two ways to give each VM a window under the capacity limits: exact (MILP) and greedy.

Both minimise the same objective, ``plan_objective``: the summed cost (predicted downtime, or
another preference) of the placed VMs plus, for each VM left unplaced, a penalty larger than
any sum of costs, scaled by the VM's priority rank. Placing VMs therefore always comes first,
high-priority VMs before low-priority ones, and among plans that place the same VMs the lower
summed cost wins.

- ``solve_milp``: one binary per feasible (VM, window) pair and one "unplaced" binary per VM;
  rows for host x window, cluster x window and bandwidth x window. scipy's HiGHS. Exact, for
  instances up to some thousands of pairs.
- ``solve_greedy``: VMs by priority, then by regret (how much worse their second-best window
  is than their best: VMs with one good option go first), then by table order; each takes
  its cheapest window (earliest on ties) that still has room in every window it would hold.
  Capacity counters are flat lists indexed (entity * W + window): one pass, O(V * W) worst case.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from numpy.typing import NDArray
from scipy.optimize import Bounds, LinearConstraint, milp

from zhuge.migration.problem import PlanningProblem

__all__ = ["MilpResult", "occupancy", "plan_objective", "solve_greedy", "solve_milp"]

BANDWIDTH_SLACK = 1e-9  # Gbit/s: float sums of link rates must not fail an exact fit


def _masked(problem: PlanningProblem, cost: NDArray[np.float64]) -> NDArray[np.float64]:
    return np.where(problem.feasible, cost, np.inf)


def _unplaced_penalty(problem: PlanningProblem, cost: NDArray[np.float64]) -> NDArray[np.float64]:
    finite = np.where(problem.feasible, np.abs(cost), 0.0)
    big = float(finite.max(axis=1).sum()) + 1.0
    rank = np.unique(problem.vms["priority"].to_numpy(), return_inverse=True)[1]
    return big * (1.0 + rank)


def plan_objective(
    problem: PlanningProblem, cost: NDArray[np.float64], chosen: NDArray[np.int64]
) -> float:
    """Summed cost of placed VMs plus the unplaced penalties: lower is better."""
    placed = chosen >= 0
    rows = np.flatnonzero(placed)
    total = float(cost[rows, chosen[rows]].sum())
    return total + float(_unplaced_penalty(problem, cost)[~placed].sum())


def occupancy(
    problem: PlanningProblem, chosen: NDArray[np.int64]
) -> tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.float64]]:
    """Migrations per (host, window), per (cluster, window), and Gbit/s per window."""
    W = problem.n_windows
    host_occ = np.zeros((len(problem.host_ids), W), dtype=np.int64)
    cluster_occ = np.zeros((len(problem.cluster_ids), W), dtype=np.int64)
    bandwidth = np.zeros(W)
    rows = np.flatnonzero(chosen >= 0)
    spans = problem.span[rows, chosen[rows]]
    for k in range(int(spans.max()) if len(rows) else 0):
        held = spans > k
        r, w = rows[held], chosen[rows[held]] + k
        np.add.at(host_occ, (problem.host[r], w), 1)
        np.add.at(cluster_occ, (problem.cluster[r], w), 1)
        np.add.at(bandwidth, w, problem.link_gbps[r])
    return host_occ, cluster_occ, bandwidth


def solve_greedy(problem: PlanningProblem, cost: NDArray[np.float64]) -> NDArray[np.int64]:
    """Window index per VM, -1 where none has room."""
    V, W = cost.shape
    cost = _masked(problem, cost)
    candidates = np.argsort(cost, axis=1, kind="stable")  # cheapest first, earliest on ties
    n_feasible = problem.feasible.sum(axis=1)
    best = np.take_along_axis(cost, candidates[:, :1], axis=1)[:, 0]
    second = (
        np.take_along_axis(cost, candidates[:, 1:2], axis=1)[:, 0] if W > 1 else np.full(V, np.inf)
    )
    with np.errstate(invalid="ignore"):
        regret = np.where(np.isfinite(best), second - best, 0.0)
    order = np.lexsort((np.arange(V), -regret, -problem.vms["priority"].to_numpy()))

    host_used = [0] * (len(problem.host_ids) * W)
    cluster_used = [0] * (len(problem.cluster_ids) * W)
    bandwidth_used = [0.0] * W
    host_limit = problem.host_limit.tolist()
    cluster_limit = problem.cluster_limit
    bandwidth_limit = problem.bandwidth_limit + BANDWIDTH_SLACK
    host_of = problem.host.tolist()
    cluster_of = problem.cluster.tolist()
    link = problem.link_gbps.tolist()
    n_ok = n_feasible.tolist()
    span = problem.span
    chosen = [-1] * V

    for v in order.tolist():
        n = n_ok[v]
        h = host_of[v]
        if n == 0 or host_limit[h] == 0:
            continue
        h_limit = host_limit[h]
        h0, c0, b = h * W, cluster_of[v] * W, link[v]
        row = span[v]
        for w in candidates[v, :n].tolist():
            end = w + int(row[w])
            for k in range(w, end):
                if (
                    host_used[h0 + k] >= h_limit
                    or cluster_used[c0 + k] >= cluster_limit
                    or bandwidth_used[k] + b > bandwidth_limit
                ):
                    break
            else:
                for k in range(w, end):
                    host_used[h0 + k] += 1
                    cluster_used[c0 + k] += 1
                    bandwidth_used[k] += b
                chosen[v] = w
                break
    return np.asarray(chosen, dtype=np.int64)


def _earliest_of_ties(
    problem: PlanningProblem, cost: NDArray[np.float64], chosen: NDArray[np.int64]
) -> NDArray[np.int64]:
    """Move each VM to the earliest window of equal cost that has room: the solver picks any
    optimum, the plan promises the earliest. Same objective, so still optimal."""
    chosen = chosen.copy()
    host_occ, cluster_occ, bandwidth = occupancy(problem, chosen)
    masked = _masked(problem, cost)
    for v in np.flatnonzero(chosen >= 0):
        w = chosen[v]
        ties = np.flatnonzero(np.isclose(masked[v, :w], masked[v, w], rtol=1e-12, atol=1e-12))
        if len(ties) == 0:
            continue
        h, c, b = problem.host[v], problem.cluster[v], problem.link_gbps[v]
        old = slice(w, w + problem.span[v, w])
        host_occ[h, old] -= 1
        cluster_occ[c, old] -= 1
        bandwidth[old] -= b
        for t in ties:
            new = slice(t, t + problem.span[v, t])
            if (
                (host_occ[h, new] < problem.host_limit[h]).all()
                and (cluster_occ[c, new] < problem.cluster_limit).all()
                and (bandwidth[new] + b <= problem.bandwidth_limit + BANDWIDTH_SLACK).all()
            ):
                chosen[v], old = t, new
                break
        host_occ[h, old] += 1
        cluster_occ[c, old] += 1
        bandwidth[old] += b
    return chosen


@dataclass(frozen=True)
class MilpResult:
    chosen: NDArray[np.int64]
    status: int  # scipy.optimize.milp status: 0 optimal, 1 iteration/time limit, ...
    message: str
    objective: float
    bound: float  # best proven lower bound (equal to objective when optimal)


def solve_milp(
    problem: PlanningProblem, cost: NDArray[np.float64], *, time_limit: float = 60.0
) -> MilpResult:
    V, W = cost.shape
    vm, win = np.nonzero(problem.feasible)
    n_x = len(vm)
    penalty = _unplaced_penalty(problem, cost)
    objective = np.concatenate([cost[vm, win], penalty])
    n_var = n_x + V

    # every VM: sum of its window binaries + its unplaced binary == 1
    assign = sp.csr_matrix(
        (np.ones(n_var), (np.concatenate([vm, np.arange(V)]), np.arange(n_var))), shape=(V, n_var)
    )
    # capacity rows: a pair holds windows win .. win + span - 1
    spans = problem.span[vm, win]
    pair = np.repeat(np.arange(n_x), spans)
    held = np.repeat(win, spans) + (
        np.arange(len(pair)) - np.repeat(np.cumsum(spans) - spans, spans)
    )
    pv = vm[pair]
    blocks, limits = [], []
    ones = np.ones(len(pair))
    rows_by_limit = (
        (problem.host[pv] * W + held, ones, np.repeat(problem.host_limit, W).astype(float)),
        (
            problem.cluster[pv] * W + held,
            ones,
            np.full(len(problem.cluster_ids) * W, float(problem.cluster_limit)),
        ),
        (held, problem.link_gbps[pv], np.full(W, problem.bandwidth_limit + BANDWIDTH_SLACK)),
    )
    for row_id, coeff, limit in rows_by_limit:
        used, compact = np.unique(row_id, return_inverse=True)
        keep = np.isfinite(limit[used])  # an unlimited bandwidth needs no rows
        block = sp.csr_matrix((coeff, (compact, pair)), shape=(len(used), n_var))
        blocks.append(block[keep])
        limits.append(limit[used][keep])
    capacity = sp.vstack(blocks, format="csr")
    constraints = [
        LinearConstraint(assign, 1.0, 1.0),
        LinearConstraint(capacity, -np.inf, np.concatenate(limits)),
    ]
    result = milp(
        objective,
        constraints=constraints,
        integrality=np.ones(n_var),
        bounds=Bounds(0.0, 1.0),
        options={"time_limit": float(time_limit), "mip_rel_gap": 1e-9},
    )
    chosen = np.full(V, -1, dtype=np.int64)
    if result.x is None:  # no solution found in time: the caller falls back to greedy
        return MilpResult(chosen, int(result.status), str(result.message), math.inf, -math.inf)
    take = result.x[:n_x] > 0.5
    chosen[vm[take]] = win[take]
    chosen = _earliest_of_ties(problem, cost, chosen)
    bound = getattr(result, "mip_dual_bound", None)
    return MilpResult(
        chosen,
        int(result.status),
        str(result.message),
        plan_objective(problem, cost, chosen),
        float(bound) if bound is not None else -math.inf,
    )
