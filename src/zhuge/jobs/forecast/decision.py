"""Forecast jobs judged by the migration decision (``decision="migration"``): the plan request
from the job's parameters, and the decision backtest on a sample of the prepared fleet."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from zhuge.errors import DataError, InvalidRequest
from zhuge.jobs.context import JobContext
from zhuge.jobs.forecast.params import DecisionChoice
from zhuge.jobs.forecast.prepare import PreparedFleetParts
from zhuge.jobs.outputs import json_safe
from zhuge.ml.forecast import to_fleet
from zhuge.ml.forecast.chunked import sample_series


def decision_task(params: DecisionChoice, vms_url: str):
    """The plan request forecasts are judged by: the VM table (checked as plan-migration checks
    it) and the limits of ``params``."""
    from zhuge.jobs.migration.inputs import VM_OPTIONAL, VM_REQUIRED, read_parquet
    from zhuge.migration import PlanConstraints
    from zhuge.migration.decision import DecisionTask
    from zhuge.migration.validation import validate_vms

    vms = read_parquet(vms_url, "vms", required=VM_REQUIRED, optional=VM_OPTIONAL)
    vms = validate_vms(vms[[c for c in (*VM_REQUIRED, *VM_OPTIONAL) if c in vms.columns]])
    try:
        constraints = PlanConstraints(
            window=params.window,
            max_per_host=params.max_per_host,
            max_per_cluster=params.max_per_cluster,
            bandwidth_gbps=params.bandwidth_gbps,
            blackouts=tuple(params.blackouts),
        )
    except InvalidRequest as exc:
        raise DataError(exc.message) from exc
    return DecisionTask(vms, constraints)


def constraints_summary(params: DecisionChoice) -> dict[str, Any]:
    return {
        "window": params.window,
        "max_per_host": params.max_per_host,
        "max_per_cluster": params.max_per_cluster,
        "bandwidth_gbps": params.bandwidth_gbps,
        "blackouts": list(params.blackouts),
    }


def select_by_decision(
    params: Any, sample: pd.DataFrame, freq: str, steps: int, ctx: JobContext
) -> tuple[str, dict[str, Any]]:
    """``auto`` by the decision: the candidate whose plans capture most of the perfect
    forecast's gain over ``params.selection_windows`` origins of ``sample``'s history (at most
    ``params.decision_series`` VMs), under the request's limits. Returns (model, selection)."""
    from zhuge.migration.decision_backtest import decision_backtest
    from zhuge.ml.forecast.forecaster import AUTO_CANDIDATES

    task = decision_task(params, params.vms)
    ids = pd.unique(sample["series_id"])[: params.decision_series]
    fleet = to_fleet(sample.loc[sample["series_id"].isin(set(ids))], freq=freq)
    ctx.progress(0, 1, f"selecting by decision: plans for {fleet.n_series:,} VMs")
    result = decision_backtest(
        fleet, task, horizon=steps, windows=params.selection_windows, models=["gbm"],
        quantiles=params.quantiles or (0.1, 0.9), n_jobs=1, random_state=params.seed,
    )  # fmt: skip
    overall = result.overall.set_index("plan")
    scores = {m: float(overall.at[m, "captured"]) for m in AUTO_CANDIDATES if m in overall.index}
    ranked = sorted(scores, key=lambda m: -np.nan_to_num(scores[m], nan=-np.inf))
    best = ranked[0]
    runner_up = f"; next best {ranked[1]} ({scores[ranked[1]]:.0%})" if len(ranked) > 1 else ""
    selection = {
        "strategy": "decision",
        "metric": "captured",
        "scores": scores,
        "windows": int(result.per_window["window"].nunique()),
        "decision": constraints_summary(params),
        "reason": f"{best} captured the most of the perfect forecast's gain in the migration "
        f"plans ({scores[best]:.0%} over {int(result.per_window['window'].nunique())} "
        f"window(s) of {fleet.n_series:,} VMs){runner_up}",
    }
    return best, selection


def run_decision_backtest(
    params: Any,
    prepared: PreparedFleetParts,
    steps: int,
    forecaster_params: dict[str, Any],
    ctx: JobContext,
) -> dict[str, Any]:
    """The decision backtest of ``params.models`` on a sample of at most
    ``params.decision_series`` VMs (plans couple VMs through hosts and clusters, so it runs in
    one piece); its per-window table is the job's ``decision.parquet``."""
    from zhuge.migration.decision_backtest import decision_backtest

    task = decision_task(params, params.vms)
    frame = sample_series(prepared.parts, prepared.counts, params.decision_series, seed=params.seed)
    fleet = to_fleet(frame, freq=prepared.spec.freq)
    models = list(params.models)
    if params.select_by == "decision" and "auto" in models:
        models.append("gbm")  # every candidate auto may pick by the decision is planned
    ctx.progress(0, 1, f"decision backtest: plans for {fleet.n_series:,} VMs")
    result = decision_backtest(
        fleet, task, horizon=steps, windows=params.windows, models=models,
        quantiles=params.quantiles, **forecaster_params,
    )  # fmt: skip
    per_window, overall = result.per_window, result.overall
    if params.select_by == "decision" and "auto" in params.models:
        from zhuge.migration.decision_backtest import select_online, summarise_decisions
        from zhuge.ml.forecast.forecaster import AUTO_CANDIDATES

        online = select_online(per_window, AUTO_CANDIDATES)
        per_window = pd.concat([per_window, online], ignore_index=True)
        overall = summarise_decisions(per_window.drop(columns="chosen"))
    target = ctx.artifacts.write_parquet("decision.parquet", per_window)
    return {
        "series": fleet.n_series,
        "constraints": constraints_summary(params),
        "overall": json_safe(overall.to_dict(orient="records")),
        "per_window": json_safe(per_window.to_dict(orient="records")),
        "coverage": json_safe(
            result.points.overall.set_index("model")["coverage"].to_dict()
            if "coverage" in result.points.overall.columns
            else {}
        ),
        "artifact": target,
    }
