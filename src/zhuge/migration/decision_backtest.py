"""The rolling-origin backtest scored by the decision: at every origin, each model's (and each
baseline's) forecast of the next horizon is turned into a migration plan under the request's
limits, and the plan is scored on what really happened (:mod:`zhuge.migration.decision`).

Beside the models: the perfect-forecast plan, the 7-day profile (each VM's mean load per slot
of the day over the last 7 days), the forecast baselines (``seasonal_naive`` is yesterday's
load) and the earliest plan. A plan is made for the VMs that share one calendar at the origin
(the fleet's usual forecast start), whose actual load is fully observed over the horizon, and
that are in the VM table; the rest are counted in ``vms_left_out``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from zhuge.errors import DataError
from zhuge.migration.decision import EARLIEST, PERFECT, DecisionTask, captured_share, score_plans
from zhuge.ml.forecast._fleet import Fleet
from zhuge.ml.forecast.backtest import BacktestResult, backtest_fleet
from zhuge.ml.forecast.baselines import seasonal_mean
from zhuge.ml.forecast.forecaster import DECISION_ONLY_CANDIDATES

__all__ = [
    "BY_DECISION",
    "PROFILE",
    "DecisionBacktest",
    "decision_backtest",
    "select_online",
    "summarise_decisions",
]

PROFILE = "profile_7d"  # each VM's mean load per slot of the day over the last 7 days
BY_DECISION = "auto (by decision)"  # the plan auto makes when it selects by the decision


@dataclass
class DecisionBacktest:
    """``per_window``: plan, window, vms, vms_left_out, placed, realised_load, downtime_ms,
    captured, regret. ``overall``: per plan, means over windows; ``captured`` from the mean
    loads, ``captured_min`` the worst window. ``points``: the point backtest of the same run."""

    per_window: pd.DataFrame
    overall: pd.DataFrame
    points: BacktestResult


def _plannable(history: Fleet, actual: np.ndarray, vm_ids: set[str]) -> tuple[np.ndarray, Any]:
    """Rows that forecast from the fleet's usual origin, are fully observed, and have a VM row."""
    start = history.end.astype("datetime64[ns]").astype(np.int64) + history.freq.value
    values, counts = np.unique(start, return_counts=True)
    common = values[counts.argmax()]
    ids = np.asarray(history.series_ids).astype(str)
    keep = (start == common) & np.isfinite(actual).all(axis=1) & np.isin(ids, list(vm_ids))
    return keep, pd.Timestamp(int(common))


def summarise_decisions(per_window: pd.DataFrame) -> pd.DataFrame:
    """Per plan over the windows: mean realised load and downtime; captured share of the means
    (and the worst window's); regret."""
    overall = (
        per_window.groupby("plan", sort=False)
        .agg(
            realised_load=("realised_load", "mean"),
            downtime_ms=("downtime_ms", "mean"),
            captured_min=("captured", "min"),
            regret=("regret", "mean"),
            placed=("placed", "mean"),
        )
        .reset_index()
    )
    mean_load = overall.set_index("plan")["realised_load"]
    overall["captured"] = [
        captured_share(v, float(mean_load[EARLIEST]), float(mean_load[PERFECT]))
        for v in overall["realised_load"]
    ]
    return overall.sort_values("realised_load", kind="stable").reset_index(drop=True)


def select_online(
    per_window: pd.DataFrame, candidates: Sequence[str], first: str = "auto"
) -> pd.DataFrame:
    """The rows of :data:`BY_DECISION`: at each origin, the candidate whose plans captured the
    most over the earlier origins (whose actual load lies before it, so nothing after the
    origin is seen); at the first origin, ``first`` (auto's choice by MASE). ``chosen`` names
    the model used."""
    rows = []
    windows = sorted(per_window["window"].unique())
    for i, w in enumerate(windows):
        earlier = per_window.loc[
            per_window["window"].isin(windows[:i]) & per_window["plan"].isin(candidates)
        ]
        pick = first
        if not earlier.empty:
            pick = str(earlier.groupby("plan")["captured"].mean().idxmax())
        row = per_window.loc[(per_window["window"] == w) & (per_window["plan"] == pick)].copy()
        rows.append(row.assign(plan=BY_DECISION, chosen=pick))
    return pd.concat(rows, ignore_index=True)


def decision_backtest(
    fleet: Fleet,
    task: DecisionTask,
    *,
    horizon: int,
    windows: int = 3,
    models: Sequence[str] = ("auto",),
    step: int | None = None,
    quantiles: Sequence[float] = (0.1, 0.9),
    extra: dict[str, Any] | None = None,
    **forecaster_params: Any,
) -> DecisionBacktest:
    """Backtest ``models`` (and the baselines) by the plans they induce under ``task``.

    ``extra``: more forecasters to judge, name -> a callable ``(history: Fleet, horizon) ->
    (n_series, horizon)`` matrix (a planted forecast in tests, a combination of models).
    """
    vm_ids = set(task.vms["vm_id"].astype(str))
    # what auto may pick by the decision only (the harmonic curve, as cheap as a baseline) is
    # always planned, as the baselines are
    models = list(dict.fromkeys([*models, *DECISION_ONLY_CANDIDATES]))
    rows: list[pd.DataFrame] = []

    def score(w: int, history: Fleet, actual: np.ndarray, forecasts: dict[str, np.ndarray]):
        keep, start = _plannable(history, actual, vm_ids)
        if keep.sum() == 0:
            return
        mine = {name: yhat[keep] for name, yhat in forecasts.items()}
        mine[PROFILE] = seasonal_mean(history.values, horizon, history.season)[keep]
        for name, make in (extra or {}).items():
            mine[name] = np.asarray(make(history, horizon), dtype=np.float64)[keep]
        table = score_plans(mine, actual[keep], history.series_ids[keep], start, history.freq, task)
        table.insert(1, "window", w)
        table.insert(2, "vms", int(keep.sum()))
        table.insert(3, "vms_left_out", int((~keep).sum()))
        rows.append(table)

    points = backtest_fleet(
        fleet, horizon=horizon, windows=windows, models=models, step=step,
        quantiles=quantiles, on_window=score, **forecaster_params,
    )  # fmt: skip
    if not rows:
        raise DataError(
            "no backtest origin had a VM with a full actual horizon that is in the VM table"
        )
    per_window = pd.concat(rows, ignore_index=True)
    return DecisionBacktest(per_window, summarise_decisions(per_window), points)
