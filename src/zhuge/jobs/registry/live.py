"""Job kind ``model-score``: score the forecasts a registered model already made against what
then happened, keep the result in the model's live record, and act on drift.

``zhuge models score NAME --actuals DATA`` runs it. The forecasts scored are those of the
jobs that used the model (``--model-from NAME@...``: each is a ``use`` in the model's
history, with the version it resolved to) and were not scored before. The actuals are
prepared the way the model's input was (its pipeline: grid, statistic, level), and each
forecast is scored on the slots it covers that the actuals reach: MASE (each series' MAE over
those slots divided by the in-sample seasonal-naive MAE of its actuals before the forecast's
first slot, :func:`zhuge.ml.forecast.metrics.score_frame`; the mean over series), and the
coverage of its widest interval. The row of the live record is compared with the error the
version had on the release gate's held-out windows (``gate_mase``): above ``drift_factor``
times that is a drifted scoring.

After ``drift_scorings`` drifted scorings in a row (counted since the last action), the
platform acts as the model is configured (``drift_action``):

- ``retrain``: a ``model-train`` job with the version's own parameters on the newest version
  of the same dataset (it goes through the release gate like any other);
- ``rollback``: the previous champion forecasts the same slots from the same history; it
  becomes champion again only if it scores better there;
- ``none``: the drift is recorded, nothing else.

The action and its reason go to the model's history and to the audit log.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from pydantic import Field

from zhuge.errors import DataError, JobNotFound, ModelNotFound
from zhuge.jobs.context import JobContext
from zhuge.jobs.forecast.checks import check_request
from zhuge.jobs.forecast.params import FleetInput
from zhuge.jobs.forecast.prepare import prepare_fleet
from zhuge.jobs.kinds import kind
from zhuge.jobs.outputs import json_safe
from zhuge.jobs.registry.kinds import load_version, registry_of
from zhuge.jobs.registry.model import CHAMPION, ModelConfig, ModelVersion, check_name
from zhuge.jobs.registry.store import Registry
from zhuge.ml.forecast._fleet import daily_season
from zhuge.ml.forecast.chunked import read_parquet_url
from zhuge.ml.forecast.metrics import score_frame

FORECAST = "forecast.parquet"


class ScoreParams(FleetInput):
    model: str = Field(description="The registered model whose forecasts are scored.")


def _forecasts_to_score(
    ctx: JobContext, registry: Registry, name: str
) -> list[tuple[int, int, pd.DataFrame]]:
    """(job id, version, forecast) of every succeeded job that used the model and has not
    been scored yet."""
    from zhuge.jobs.states import JobState
    from zhuge.jobs.store import store_for

    scored = {j for s in registry.scores(ctx.tenant, name) for j in s["metrics"].get("jobs", [])}
    store = store_for(ctx.db_url) if ctx.db_url else None
    found = []
    for event in registry.events(ctx.tenant, name):
        job_id = event["job_id"]
        if event["action"] != "use" or job_id in scored or store is None:
            continue
        try:
            job = store.get(job_id, tenant=ctx.tenant)
        except JobNotFound:
            continue
        if job.state is not JobState.SUCCEEDED or job.kind != "forecast":
            continue
        url = ctx.artifacts_root.child(job.artifact_prefix()).path(FORECAST)
        found.append((job_id, int(event["version"]), read_parquet_url(url)))
    return found


def score(
    forecast: pd.DataFrame, actuals: pd.DataFrame, freq: str
) -> tuple[pd.DataFrame, pd.Timestamp] | None:
    """Per-series MAE, MASE, sMAPE (and coverage) of ``forecast`` on the slots ``actuals``
    reach, the MASE scale from the actuals before its first slot; None if none is reached."""
    start = pd.Timestamp(forecast["timestamp"].min())
    revealed = actuals[actuals["timestamp"] >= start]
    joined = revealed.merge(forecast[["series_id", "timestamp"]], on=["series_id", "timestamp"])
    if joined.empty:
        return None
    history = actuals[actuals["timestamp"] < start]
    bands = sorted(c for c in forecast.columns if c.startswith("yhat_q"))
    lower, upper = (bands[0], bands[-1]) if len(bands) >= 2 else (None, None)
    table = score_frame(
        revealed, forecast, history, season=daily_season(freq), lower=lower, upper=upper
    )
    return table, start


def rolled_up(
    forecast: pd.DataFrame, actuals: pd.DataFrame, vms: pd.DataFrame, freq: str
) -> dict[str, dict[str, Any]]:
    """A VM-level forecast and its actuals rolled up to each host and cluster the VM table
    names (zhuge.data.roll_up: vCPU-weighted mean load), scored there."""
    from zhuge.data import roll_up

    levels: dict[str, dict[str, Any]] = {}
    predicted = forecast[["series_id", "timestamp", "yhat"]].rename(columns={"yhat": "value"})
    for level in ("host", "cluster"):
        if f"{level}_id" not in vms.columns:
            continue
        mine = roll_up(predicted, level, vms=vms).rename(columns={"value": "yhat"})
        found = score(mine, roll_up(actuals, level, vms=vms), freq)
        if found is not None:
            levels[level] = {"mase": float(found[0]["mase"].mean()), "series": len(found[0])}
    return levels


def _prepared_actuals(params: ScoreParams, ctx: JobContext, version: ModelVersion, root: Any):
    _, pipeline = load_version(root, version)
    prepared = prepare_fleet(params, ctx, spec=pipeline.chunk_spec())
    frames = [read_parquet_url(p, ["series_id", "timestamp", "value"]) for p in prepared.parts]
    return pd.concat(frames, ignore_index=True), pipeline


def _streak(scores: list[dict[str, Any]]) -> int:
    """Drifted scorings in a row at the end of the record, since the last action."""
    n = 0
    for s in reversed(scores):
        if not s["drifted"] or s["metrics"].get("acted"):
            break
        n += 1
    return n


@kind(
    "model-score",
    params=ScoreParams,
    description="Score a registered model's forecasts against what then happened; keep the "
    "live record; act on drift as the model is configured.",
)
def run_model_score(params: ScoreParams, ctx: JobContext) -> dict[str, Any]:
    name = check_name(params.model)
    registry = registry_of(ctx)
    try:  # fails for good, not retried: a name typed wrong stays wrong
        config = registry.config(ctx.tenant, name)
        champion = registry.resolve(ctx.tenant, f"{name}@{CHAMPION}")
    except ModelNotFound as exc:
        raise DataError(exc.message) from exc
    check_request(params)
    actuals, pipeline = _prepared_actuals(params, ctx, champion, ctx.artifacts_root)
    scored: list[dict[str, Any]] = []
    for job_id, version, forecast in _forecasts_to_score(ctx, registry, name):
        found = score(forecast, actuals, pipeline.freq)
        if found is None:
            continue  # what it forecast has not happened yet
        table, start = found
        levels = {pipeline.level: {"mase": float(table["mase"].mean()), "series": len(table)}}
        if pipeline.level == "vm" and params.vms:
            levels.update(rolled_up(forecast, actuals, read_parquet_url(params.vms), pipeline.freq))
        used = registry.version(ctx.tenant, name, version)
        gate_mase = (used.metrics or {}).get("mase")
        mase = float(table["mase"].mean())
        metrics = {
            "mase": mase,
            "coverage": float(table["coverage"].mean()) if "coverage" in table else None,
            "smape": float(table["smape"].mean()),
            "series": len(table),
            "from": start.isoformat(),
            "jobs": [job_id],
            "level": pipeline.level,
            "levels": levels,
            "gate_mase": gate_mase,
            "ratio": mase / gate_mase if gate_mase else None,
        }
        drifted = bool(gate_mase) and mase > config.drift_factor * float(gate_mase)
        registry.record_score(
            ctx.tenant, name, version, json_safe(metrics), drifted=drifted, job_id=ctx.job_id
        )
        scored.append({"job": job_id, "version": version, **json_safe(metrics), "drifted": drifted})
        action = _act_on_drift(ctx, registry, name, config, forecast, actuals, pipeline.freq)
        if action:
            scored[-1]["action"] = action
    ctx.progress(1, 1, f"{len(scored)} forecast(s) scored")
    return {"model": name, "scored": scored, "live": len(registry.scores(ctx.tenant, name))}


def _act_on_drift(
    ctx: JobContext,
    registry: Registry,
    name: str,
    config: ModelConfig,
    forecast: pd.DataFrame,
    actuals: pd.DataFrame,
    freq: str,
) -> dict[str, Any] | None:
    scores = registry.scores(ctx.tenant, name)
    streak = _streak(scores)
    if streak < config.drift_scorings:
        return None
    last = scores[-1]
    why = (
        f"live MASE above {config.drift_factor} x the gate's for {streak} scorings in a row "
        f"(last {last['metrics']['mase']:.3g} vs {last['metrics'].get('gate_mase') or 0:.3g})"
    )
    action: dict[str, Any] = {"action": config.drift_action, "reason": why}
    if config.drift_action == "retrain":
        action.update(_retrain(ctx, registry, name))
    elif config.drift_action == "rollback":
        action.update(_rollback_if_better(ctx, registry, name, forecast, actuals, freq))
    registry.mark_acted(ctx.tenant, name, last["id"])
    registry.record_event(
        ctx.tenant,
        name,
        "drift",
        version=last["version"],
        job_id=ctx.job_id,
        reason=f"{why}: {action.get('outcome', config.drift_action)}",
        details=json_safe(action),
    )
    _audit(ctx, name, action)
    return action


def _retrain(ctx: JobContext, registry: Registry, name: str) -> dict[str, Any]:
    from zhuge.jobs.kinds import get_kind
    from zhuge.jobs.store import store_for

    champion = registry.resolve(ctx.tenant, f"{name}@{CHAMPION}")
    params = dict((champion.lineage or {}).get("params") or {})
    given = str(params.get("input") or "")
    if not given.startswith("dataset://"):
        return {"outcome": "not retrained: the champion was not trained on a dataset"}
    params["input"] = given.split("@sha256:", 1)[0]  # the newest version of that dataset
    params["register_as"] = name
    params = get_kind("model-train").normalise(params)
    assert ctx.db_url is not None
    job, _ = store_for(ctx.db_url).submit(
        tenant=ctx.tenant,
        kind="model-train",
        params=params,
        idempotency_key=f"drift-retrain-{name}-{ctx.job_id}",
    )
    return {"outcome": f"retraining on {params['input']} (job {job.id})", "job_id": job.id}


def _rollback_if_better(
    ctx: JobContext,
    registry: Registry,
    name: str,
    forecast: pd.DataFrame,
    actuals: pd.DataFrame,
    freq: str,
) -> dict[str, Any]:
    previous = registry.previous_champion(ctx.tenant, name)
    if previous is None:
        return {"outcome": "kept: no previous champion"}
    model, _ = load_version(ctx.artifacts_root, registry.version(ctx.tenant, name, previous))
    start = pd.Timestamp(forecast["timestamp"].min())
    theirs = model.predict(actuals[actuals["timestamp"] < start])
    found_theirs = score(theirs, actuals, freq)
    found_mine = score(forecast, actuals, freq)
    if found_theirs is None or found_mine is None:
        return {"outcome": "kept: nothing to compare on"}
    theirs_mase = float(found_theirs[0]["mase"].mean())
    mine_mase = float(found_mine[0]["mase"].mean())
    compared = {"previous": previous, "previous_mase": theirs_mase, "champion_mase": mine_mase}
    if not np.isfinite(theirs_mase) or theirs_mase >= mine_mase:
        return {**compared, "outcome": f"kept: version {previous} scored no better"}
    registry.rollback(
        ctx.tenant,
        name,
        reason=f"drift: version {previous} scored {theirs_mase:.3g} on the same slots, "
        f"the champion {mine_mase:.3g}",
    )
    return {**compared, "outcome": f"rolled back to version {previous}"}


def _audit(ctx: JobContext, name: str, action: dict[str, Any]) -> None:
    from zhuge.jobs.model import Principal
    from zhuge.jobs.store import store_for

    if not ctx.db_url:
        return
    store_for(ctx.db_url).tenancy.record(
        action="model.drift",
        outcome="ok",
        principal=Principal(token_id=f"job-{ctx.job_id}", tenant=ctx.tenant),
        target=name,
        details=json_safe(action),
    )


__all__ = ["ScoreParams", "run_model_score", "score"]
