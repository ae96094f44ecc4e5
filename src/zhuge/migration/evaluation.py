"""How good was a plan, once the future is known?

``evaluate_plan`` takes a plan made on a forecast and the load that really happened (the same
long shape as the forecast) and scores, with the same migration model:

- the plan itself: the realised load and downtime in the windows it chose;
- the oracle: the plan ``plan_migrations`` would have made knowing the actual load;
- naive plans: everything as early as allowed (``earliest``), and everything as near a fixed
  night hour as allowed (``night``, default 02:00).

All four obey the same constraints. Naive plans are solved on the actual problem (they look at
no load, only at durations and limits), so their realised numbers are exact.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from zhuge.errors import DataError, InvalidRequest
from zhuge.migration.constraints import DAY_NS, PlanConstraints
from zhuge.migration.model import MigrationModel
from zhuge.migration.planner import Method, MigrationPlan, assign_windows
from zhuge.migration.problem import PlanningProblem, build_problem

__all__ = ["PlanEvaluation", "baseline_plan", "evaluate_plan"]

Strategy = Literal["earliest", "night"]


def _baseline_cost(
    problem: PlanningProblem, strategy: Strategy, night_start: str
) -> NDArray[np.float64]:
    W = problem.n_windows
    if strategy == "earliest":
        row = np.arange(W, dtype=np.float64)
    elif strategy == "night":
        try:
            target = pd.Timedelta(
                f"{night_start}:00" if night_start.count(":") == 1 else night_start
            )
        except ValueError as exc:
            raise InvalidRequest(
                f"night_start {night_start!r} is not a time of day such as '02:00'"
            ) from exc
        starts = problem.window_starts
        time_of_day = (starts - starts.normalize()).asi8
        gap = np.abs(time_of_day - target.value) % DAY_NS
        row = np.minimum(gap, DAY_NS - gap) / 60e9  # minutes from the night hour, either side
    else:
        raise InvalidRequest(f"strategy must be 'earliest' or 'night', got {strategy!r}")
    return np.broadcast_to(row, (problem.n_vms, W))


def baseline_plan(
    forecast: pd.DataFrame,
    vms: pd.DataFrame,
    constraints: PlanConstraints | None = None,
    *,
    strategy: Strategy = "earliest",
    night_start: str = "02:00",
    model: MigrationModel | None = None,
    hosts: pd.DataFrame | None = None,
    method: Method = "greedy",
) -> MigrationPlan:
    """A naive plan under the same constraints: as early as allowed, or near ``night_start``."""
    problem = build_problem(
        forecast, vms, constraints or PlanConstraints(), model or MigrationModel(), hosts
    )
    goal = "earliest window" if strategy == "earliest" else f"window nearest {night_start}"
    return assign_windows(
        problem, _baseline_cost(problem, strategy, night_start), goal=goal, method=method
    )


@dataclass(frozen=True)
class PlanEvaluation:
    table: pd.DataFrame  # one row per plan: plan, oracle, earliest, night
    ratios: dict[str, float]  # plan / other, for mean load and total downtime
    per_vm: pd.DataFrame = field(
        repr=False
    )  # vm_id, realised_load, realised_downtime_ms of the plan

    def __str__(self) -> str:
        lines = [self.table.to_string(float_format=lambda x: f"{x:,.2f}"), ""]
        lines += [f"{name:<34} {value:6.3f}" for name, value in self.ratios.items()]
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {"table": self.table.reset_index().to_dict(orient="records"), "ratios": self.ratios}


def _chosen_from_plan(problem: PlanningProblem, plan: pd.DataFrame) -> NDArray[np.int64]:
    for column in ("vm_id", "start"):
        if column not in plan.columns:
            raise DataError(f"plan lacks column {column!r}")
    by_vm = plan.drop_duplicates("vm_id").set_index("vm_id")["start"]
    start = by_vm.reindex(problem.vms["vm_id"])
    chosen = problem.window_starts.get_indexer(pd.DatetimeIndex(start))
    off_grid = start.notna().to_numpy() & (chosen < 0)
    if off_grid.any():
        raise DataError(
            f"{int(off_grid.sum())} plan start(s) are not windows of the actual data's grid "
            f"(first window {problem.window_starts[0]}, every {problem.constraints.window})"
        )
    return chosen.astype(np.int64)


def _realised(problem: PlanningProblem, chosen: NDArray[np.int64]) -> dict[str, Any]:
    placed = chosen >= 0
    rows = np.flatnonzero(placed)
    load = problem.load[rows, chosen[rows]]
    downtime = problem.downtime_ms[rows, chosen[rows]]
    rate = problem.model.dirty_rate_mbps(
        problem.vms["memory_gb"].to_numpy()[rows],
        load,
        problem.vms["dirty_rate_coeff"].to_numpy()[rows],
    )
    return {
        "placed": int(placed.sum()),
        "mean_load": float(load.mean()) if len(rows) else np.nan,
        "total_downtime_ms": float(downtime.sum()),
        "mean_downtime_ms": float(downtime.mean()) if len(rows) else np.nan,
        "p95_downtime_ms": float(np.percentile(downtime, 95)) if len(rows) else np.nan,
        "non_convergent": int((rate >= problem.model.bandwidth_mbps).sum()),
    }


def evaluate_plan(
    plan: pd.DataFrame,
    actual: pd.DataFrame,
    vms: pd.DataFrame,
    constraints: PlanConstraints | None = None,
    *,
    model: MigrationModel | None = None,
    hosts: pd.DataFrame | None = None,
    night_start: str = "02:00",
    method: Method = "auto",
) -> PlanEvaluation:
    """Realised load and downtime of ``plan`` against the oracle and the naive plans."""
    problem = build_problem(
        actual,
        vms,
        constraints or PlanConstraints(),
        model or MigrationModel(),
        hosts,
        ragged=False,  # what really happened must cover every VM and window
        what="actual",
    )
    chosen = {"plan": _chosen_from_plan(problem, plan)}
    oracle, _ = assign_windows(problem, problem.downtime_ms, goal="quietest window", method=method)
    chosen["oracle"] = _chosen_from_plan(problem, oracle)
    for strategy in ("earliest", "night"):
        naive, _ = assign_windows(
            problem, _baseline_cost(problem, strategy, night_start), goal=strategy, method="greedy"
        )
        chosen[strategy] = _chosen_from_plan(problem, naive)
    table = pd.DataFrame({name: _realised(problem, c) for name, c in chosen.items()}).T
    table = table.astype({"placed": int, "non_convergent": int})
    table.index.name = "plan"
    ratios = {}
    for other in ("oracle", "earliest", "night"):
        for metric in ("mean_load", "total_downtime_ms"):
            denominator = float(table.at[other, metric])
            ratios[f"{metric} plan/{other}"] = (
                float(table.at["plan", metric]) / denominator if denominator else float("nan")
            )
    mine = chosen["plan"]
    rows = np.arange(problem.n_vms)
    w = np.where(mine >= 0, mine, 0)
    per_vm = pd.DataFrame(
        {
            "vm_id": problem.vms["vm_id"].to_numpy(),
            "realised_load": np.where(mine >= 0, problem.load[rows, w], np.nan),
            "realised_downtime_ms": np.where(mine >= 0, problem.downtime_ms[rows, w], np.nan),
        }
    )
    return PlanEvaluation(table=table, ratios=ratios, per_vm=per_vm)
