"""The job kinds ``prepare``, ``train``, ``forecast`` and ``backtest``.

A result's ``output`` names the artifact a caller usually wants (``zhuge forecast --out``
downloads it through the API); jobs write nowhere but their own artifact folder."""

from __future__ import annotations

import functools
from collections import Counter
from typing import Any

from zhuge.errors import DataError, ModelNotFound
from zhuge.jobs.context import JobContext
from zhuge.jobs.forecast.checks import check_request
from zhuge.jobs.forecast.decision import run_decision_backtest
from zhuge.jobs.forecast.models import find_model, model_summary, train_forecaster
from zhuge.jobs.forecast.params import (
    BacktestParams,
    ForecastParams,
    PrepareParams,
    TrainParams,
    horizon_steps,
)
from zhuge.jobs.forecast.prepare import prepare_fleet, prepare_result
from zhuge.jobs.kinds import kind
from zhuge.jobs.outputs import json_safe
from zhuge.ml.forecast import load
from zhuge.ml.forecast.chunked import (
    backtest_part,
    concat_parquet,
    load_pipeline,
    parquet_columns,
    predict_part,
    read_parquet_url,
)
from zhuge.ml.forecast.metrics import summarize

PREPARED = "prepared.parquet"  # the output of prepare
FORECAST = "forecast.parquet"  # the output of forecast


@kind(
    "prepare",
    params=PrepareParams,
    description="Clean fleet telemetry onto the forecast grid; report per series what was done.",
)
def run_prepare(params: PrepareParams, ctx: JobContext) -> dict[str, Any]:
    check_request(params)
    prepared = prepare_fleet(params, ctx)
    ctx.progress(0, 1, "writing the prepared series")
    target = ctx.artifacts.path(PREPARED)
    rows = concat_parquet(prepared.parts, target)
    ctx.progress(1, 1, "done")
    return {
        **prepare_result(prepared),
        "rows": rows,
        "artifacts": {"prepared": target, "report": prepared.report},
        "output": PREPARED,
    }


@kind("train", params=TrainParams, description="Train a fleet forecaster and save it.")
def run_train(params: TrainParams, ctx: JobContext) -> dict[str, Any]:
    check_request(params)
    prepared = prepare_fleet(params, ctx)
    forecaster, pipeline, model_url, n_sample = train_forecaster(params, prepared, ctx)
    ctx.progress(1, 1, "saved")
    return {
        "prepare": prepare_result(prepared),
        "model": model_summary(forecaster, params.target),
        "pipeline": pipeline.__dict__,
        "trained_on_series": n_sample,
        "artifacts": {"model": model_url, "report": prepared.report},
    }


@kind(
    "forecast",
    params=ForecastParams,
    description="Forecast every series of a fleet (train, or reuse model_from), in chunks.",
)
def run_forecast(params: ForecastParams, ctx: JobContext) -> dict[str, Any]:
    if params.model_from is not None:
        from zhuge.jobs.registry.use import used_version

        used_version(ctx, "forecast")  # a registered clustering model is refused by name
        folder = find_model(params.model_from, ctx.artifacts_root)
        try:
            pipeline = load_pipeline(folder)
            forecaster = load(folder)
        except ModelNotFound as exc:
            raise DataError(f"model of job {params.model_from}: {exc.message}") from exc
        params = params.resolved(pipeline)
        check_request(params)
        prepared = prepare_fleet(params, ctx, spec=pipeline.chunk_spec())
        model_url, n_sample = folder.url, None
    else:
        params = params.resolved()
        check_request(params)
        prepared = prepare_fleet(params, ctx)
        forecaster, pipeline, model_url, n_sample = train_forecaster(params, prepared, ctx)
    results = ctx.map(
        functools.partial(predict_part, model=model_url, out=ctx.artifacts.path("forecast")),
        list(enumerate(prepared.parts)),
        message="chunks forecast",
    )
    ctx.progress(len(results), len(results), "writing the forecast")
    target = ctx.artifacts.path(FORECAST)
    rows = concat_parquet(
        [ctx.artifacts.path(f"forecast/part-{r['index']:05d}.parquet") for r in results], target
    )
    models: Counter[str] = Counter()
    for r in results:
        models.update(r["models"])
    first_last = read_parquet_url(target, ["timestamp"])["timestamp"]
    return {
        "series": int(sum(r["series"] for r in results)),
        "rows": rows,
        "freq": pipeline.freq,
        "horizon": pipeline.horizon,
        "horizon_steps": pipeline.horizon_steps,
        "level": pipeline.level,
        "target": pipeline.target,
        "columns": parquet_columns(target),
        "first_timestamp": str(first_last.min()),
        "last_timestamp": str(first_last.max()),
        "model": model_summary(forecaster, pipeline.target),
        "models_used": dict(models.most_common()),
        "model_from": params.model_from,
        "trained_on_series": n_sample,
        "prepare": prepare_result(prepared),
        "artifacts": {"forecast": target, "model": model_url, "report": prepared.report},
        "output": FORECAST,
    }


@kind(
    "backtest",
    params=BacktestParams,
    description="Rolling-origin backtest of forecast models next to the baselines.",
)
def run_backtest(params: BacktestParams, ctx: JobContext) -> dict[str, Any]:
    frozen = None
    if params.model_from is not None:
        frozen, params = _frozen_model(params, ctx)
    check_request(params)
    prepared = prepare_fleet(params, ctx, spec=frozen[2].chunk_spec() if frozen else None)
    steps = horizon_steps(params.horizon, prepared.spec.freq)
    forecaster_params = {
        "selection": params.selection,
        "backtest_windows": params.selection_windows,
        "n_jobs": 1,
        "random_state": params.seed,
    }
    results = ctx.map(
        functools.partial(
            backtest_part,
            out=ctx.artifacts.path("backtest"),
            freq=prepared.spec.freq,
            horizon=steps,
            windows=params.windows,
            models=params.models,
            quantiles=params.quantiles,
            buckets=params.buckets if params.target == "bucket" else None,
            forecaster_params=forecaster_params,
            model=frozen[0] if frozen else None,
            model_name=frozen[1] if frozen else "model",
        ),
        list(enumerate(prepared.parts)),
        message="chunks backtested",
    )
    ctx.progress(len(results), len(results), "scoring")
    target = ctx.artifacts.path("backtest.parquet")
    concat_parquet(
        [ctx.artifacts.path(f"backtest/part-{r['index']:05d}.parquet") for r in results], target
    )
    per_series = read_parquet_url(target)
    overall = summarize(per_series, by="model")
    cpu: Counter[str] = Counter()
    for r in results:
        cpu.update(r["cpu_seconds"])
    series = int(sum(r["series"] for r in results))
    overall["cpu_ms_per_series_window"] = overall["model"].map(
        lambda m: 1000 * cpu[m] / max(1, series * params.windows)
    )
    overall = overall.sort_values("mase", kind="stable").reset_index(drop=True)
    chosen: Counter[str] = Counter()
    for r in results:
        for name in r["chosen"].get("auto", []):
            chosen[str(name)] += 1
    decision = None
    if params.decision == "migration":
        decision = run_decision_backtest(params, prepared, steps, forecaster_params, ctx)
    in_sample = _in_sample_note(frozen[1], prepared, steps, params.windows, ctx) if frozen else None
    return {
        "decision": decision,
        "in_sample": in_sample,
        "series": series,
        "windows": params.windows,
        "horizon": params.horizon,
        "horizon_steps": steps,
        "freq": prepared.spec.freq,
        "level": prepared.spec.level,
        "models": params.models,
        "model_from": params.model_from,
        "frozen_model": frozen[1] if frozen else None,
        "overall": json_safe(overall.to_dict(orient="records")),
        "auto_chose": dict(chosen.most_common()),
        "auto_reasons": [r["reasons"]["auto"][-1] for r in results if r["reasons"].get("auto")][:3],
        "prepare": prepare_result(prepared),
        "artifacts": {"per_series": target, "report": prepared.report},
    }


def _frozen_model(
    params: BacktestParams, ctx: JobContext
) -> tuple[tuple[str, str, Any], BacktestParams]:
    """``model_from`` of a backtest: (its folder's URL, the name it is scored under, its
    pipeline), and the parameters with the model's grid, horizon, statistic, level and target
    (a value given that is not the default and not the model's is refused)."""
    from zhuge.jobs.registry.use import used_version

    assert params.model_from is not None
    # a registered version is scored under its NAME@VERSION
    name = used_version(ctx, "forecast") or f"model of job {params.model_from}"
    folder = find_model(int(params.model_from), ctx.artifacts_root)
    try:
        pipeline = load_pipeline(folder)
    except ModelNotFound as exc:
        raise DataError(f"{name}: {exc.message}") from exc
    defaults = BacktestParams.model_fields
    updates: dict[str, Any] = {}
    for field in ("freq", "horizon", "agg", "level", "target"):
        mine, theirs = getattr(params, field), getattr(pipeline, field)
        same = (
            horizon_steps(mine, pipeline.freq) == pipeline.horizon_steps
            if field == "horizon"
            else mine == theirs
        )
        if not same and mine != defaults[field].get_default(call_default_factory=True):
            raise DataError(
                f"{name} was trained with {field}={theirs!r}, not {mine!r}: leave {field} out "
                "to backtest it on its own"
            )
        updates[field] = theirs
    if len(pipeline.quantiles) >= 2:  # coverage of the model's own interval
        updates["quantiles"] = list(pipeline.quantiles)
    if pipeline.buckets:
        updates["buckets"] = list(pipeline.buckets)
    ctx.log(f"backtesting {name} frozen, beside {', '.join(params.models) or 'the baselines'}")
    return (folder.url, name, pipeline), params.model_copy(update=updates)


def _in_sample_note(name: str, prepared: Any, steps: int, windows: int, ctx: JobContext) -> Any:
    """Words for a registered version trained on data the backtest's windows cover (its
    scores there are in-sample, so optimistic); None when it was not, or nobody knows."""
    import pandas as pd

    from zhuge.jobs.registry.use import registry_of

    if "@" not in name or not ctx.db_url:
        return None
    lineage = registry_of(ctx).resolve(ctx.tenant, name).lineage or {}
    trained_until = (lineage.get("holdout") or {}).get("trained_until")
    if trained_until is None:
        return None
    last = max(read_parquet_url(p, ["timestamp"])["timestamp"].max() for p in prepared.parts)
    first_slot = pd.Timestamp(last) - (windows * steps - 1) * pd.Timedelta(prepared.spec.freq)
    if pd.Timestamp(trained_until) < first_slot:
        return None
    note = (
        f"{name} was trained on data up to {trained_until}, inside the backtest's windows "
        f"(from {first_slot}): its scores there are in-sample, so optimistic; backtest it on "
        "data after its training"
    )
    ctx.log(note)
    return note
