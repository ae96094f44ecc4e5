"""Forecasts judged by the migration plans they induce (predict-then-optimise).

A load forecast exists to pick each VM's migration window. Its worth to that decision is the
load that really happened in the windows the plan made from it picks, under the plan's own
limits: the **realised mean load** (over placed VMs). Two plans frame it, both solved on the
same problem:

- the **perfect forecast**: the plan made from the actual load itself (on the forecast's grid:
  the best any forecast on that grid can do);
- **earliest** (naive): every VM as early as the limits allow; it looks at no load.

The **captured share** of a plan is ``(L_earliest - L_plan) / (L_earliest - L_perfect)``: 1 for
a plan as good as the perfect forecast's, 0 for one no better than migrating at once. The
**decision regret** is ``L_plan - L_perfect`` in load points (0 at best), what a gate that
compares models by the decision they serve can use (:func:`decision_regret`).

Every plan obeys the same constraints, and is scored on the same actual problem, so they differ
only in the windows the forecast led them to.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from zhuge.errors import DataError
from zhuge.migration.constraints import PlanConstraints
from zhuge.migration.evaluation import _baseline_cost, _chosen_from_plan
from zhuge.migration.model import MigrationModel
from zhuge.migration.planner import Method, assign_windows
from zhuge.migration.problem import PlanningProblem, build_problem
from zhuge.migration.solvers import solve_greedy

__all__ = [
    "EARLIEST",
    "PERFECT",
    "DecisionTask",
    "captured_share",
    "decision_regret",
    "score_plans",
]

PERFECT = "perfect_forecast"  # the plan made from the actual load
EARLIEST = "earliest"  # as early as the limits allow (the naive plan)


@dataclass(frozen=True)
class DecisionTask:
    """The planning request forecasts are judged by: the VM table and the plan's limits.

    ``constraints.deadline``/``not_before`` are usually left None: each backtest origin plans
    over its own horizon. ``method`` is the planner's solver (``greedy`` is what fleets above
    20,000 (VM, window) pairs get, and keeps a backtest fast).
    """

    vms: pd.DataFrame  # vm_id, host_id, cluster_id, memory_gb (+ optional columns)
    constraints: PlanConstraints = field(default_factory=PlanConstraints)
    model: MigrationModel = field(default_factory=MigrationModel)
    hosts: pd.DataFrame | None = None
    method: Method = "greedy"


def captured_share(load: float, earliest: float, perfect: float) -> float:
    """``(earliest - load) / (earliest - perfect)``; NaN when the perfect plan is no quieter."""
    gap = earliest - perfect
    return float((earliest - load) / gap) if gap > 1e-9 else float("nan")


def _choose(problem: PlanningProblem, cost: NDArray[np.float64], method: Method, goal: str):
    if method == "greedy":
        return solve_greedy(problem, cost)
    plan, _ = assign_windows(problem, cost, goal=goal, method=method)
    return _chosen_from_plan(problem, plan)


def _realised(actual: PlanningProblem, chosen: NDArray[np.int64]) -> dict[str, float]:
    rows = np.flatnonzero(chosen >= 0)
    load = actual.load[rows, chosen[rows]]
    downtime = actual.downtime_ms[rows, chosen[rows]]
    return {
        "placed": len(rows),
        "realised_load": float(load.mean()) if len(rows) else float("nan"),
        "downtime_ms": float(downtime.mean()) if len(rows) else float("nan"),
    }


def _problem(frame: pd.DataFrame, task: DecisionTask, *, ragged: bool, what: str):
    return build_problem(
        frame, task.vms, task.constraints, task.model, task.hosts, ragged=ragged, what=what
    )


def _score(
    forecasts: Mapping[str, pd.DataFrame], actual: pd.DataFrame, task: DecisionTask
) -> pd.DataFrame:
    truth = _problem(actual, task, ragged=False, what="actual")
    chosen = {PERFECT: _choose(truth, truth.downtime_ms, task.method, "quietest window")}
    earliest = _baseline_cost(truth, "earliest", "02:00")
    chosen[EARLIEST] = solve_greedy(truth, np.ascontiguousarray(earliest))
    for name, forecast in forecasts.items():
        problem = _problem(forecast, task, ragged=True, what=f"{name} forecast")
        if not problem.window_starts.equals(truth.window_starts):
            raise DataError(
                f"the {name} forecast's windows ({problem.window_starts[0]}, "
                f"{problem.n_windows}) are not the actual load's ({truth.window_starts[0]}, "
                f"{truth.n_windows})"
            )
        chosen[name] = _choose(problem, problem.downtime_ms, task.method, "quietest window")
    table = pd.DataFrame({name: _realised(truth, c) for name, c in chosen.items()}).T
    table.index.name = "plan"
    table = table.reset_index().astype({"placed": int})
    best = float(table.loc[table["plan"] == PERFECT, "realised_load"].iloc[0])
    naive = float(table.loc[table["plan"] == EARLIEST, "realised_load"].iloc[0])
    table["captured"] = [captured_share(v, naive, best) for v in table["realised_load"]]
    table["regret"] = table["realised_load"] - best
    return table


def _long(values: NDArray[np.float64], ids: pd.Index, start: pd.Timestamp, step: pd.Timedelta):
    n, h = values.shape
    stamps = pd.date_range(start, periods=h, freq=step)
    return pd.DataFrame(
        {
            "series_id": np.repeat(ids.to_numpy(), h),
            "timestamp": np.tile(stamps.to_numpy(), n),
            "yhat": values.reshape(-1),
        }
    )


def score_plans(
    forecasts: Mapping[str, NDArray[np.float64]],
    actual: NDArray[np.float64],
    vm_ids: pd.Index | NDArray,
    start: pd.Timestamp,
    step: pd.Timedelta,
    task: DecisionTask,
) -> pd.DataFrame:
    """Realised mean load, mean downtime (the model on the actual load), captured share and
    regret of the plan each forecast induces, beside the perfect-forecast and earliest plans.

    ``forecasts``: name -> ``(V, H)`` matrix on the grid ``start, start + step, ...`` of
    ``actual`` (``(V, H)``, fully observed), rows in the order of ``vm_ids``, which must all be
    in ``task.vms``. Returns one row per plan: ``plan, placed, realised_load, downtime_ms,
    captured, regret``.
    """
    ids = pd.Index(np.asarray(vm_ids).astype(str))
    vms = task.vms.assign(vm_id=task.vms["vm_id"].astype(str))
    missing = ~ids.isin(vms["vm_id"])
    if missing.any():
        raise DataError(
            f"{int(missing.sum())} series are not in the VM table, e.g. {ids[missing][0]!r}"
        )
    vms = (
        vms.drop_duplicates("vm_id").set_index("vm_id").loc[ids].rename_axis("vm_id").reset_index()
    )
    task = DecisionTask(vms, task.constraints, task.model, task.hosts, task.method)
    frames = {
        name: _long(np.asarray(v, np.float64), ids, start, step) for name, v in forecasts.items()
    }
    return _score(frames, _long(np.asarray(actual, np.float64), ids, start, step), task)


def decision_regret(
    forecast: pd.DataFrame,
    actual: pd.DataFrame,
    vms: pd.DataFrame,
    constraints: PlanConstraints | None = None,
    *,
    model: MigrationModel | None = None,
    hosts: pd.DataFrame | None = None,
    method: Method = "greedy",
) -> float:
    """How much louder, in load points, the windows ``forecast``'s plan picks really were than
    the perfect forecast's plan's (0 at best; lower is better).

    ``forecast`` and ``actual``: long frames ``series_id, timestamp, yhat`` on one grid over
    the same period (``actual`` may name its column ``value``); ``vms`` as ``plan_migrations``
    takes it. A model registry's gate can compare two models' regret on the same held-out day.
    """
    if "yhat" not in actual.columns and "value" in actual.columns:
        actual = actual.rename(columns={"value": "yhat"})
    task = DecisionTask(
        vms, constraints or PlanConstraints(), model or MigrationModel(), hosts, method
    )
    table = _score({"forecast": forecast}, actual, task).set_index("plan")
    return float(table.at["forecast", "regret"])
