"""Job kind ``model-train``: train a new version of a registered model behind the release gate.

``zhuge train ... --register NAME`` runs it. In order:

1. the telemetry is prepared as for ``train`` and a sample of at most ``train_series`` series
   is drawn (the same series serve training and the gate);
2. the last ``gate_windows`` horizons of that data are **held out**; the forecaster is
   trained on what precedes them and saved (manifest with hashes);
3. the version is registered with its lineage: the datasets it read and their SHA-256, its
   parameters, zhuge's and the libraries' versions, the job, the holdout it was judged on;
4. the **gate**: the new version and the current champion are loaded back from their saved
   artifacts (hashes verified: both frozen) and forecast each held-out window from the same
   history; each series' loss (the model's metric) is averaged over the windows and
   :func:`zhuge.ml.gate.decide` compares the two. The decision and its evidence are stored on
   the version; ``champion`` moves to it only if it is better by the margin and significantly
   so, otherwise it becomes ``challenger``. The first version of a model becomes champion.

The gate runs as the second phase of the same job rather than as a job of its own: it
needs the held-out windows the first phase cut, and a job that dies between the two phases
is retried whole (a retry finds the version its job already registered and reuses it).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import pandas as pd
from pydantic import Field

from zhuge.artifacts import MANIFEST, ArtifactDir
from zhuge.errors import DataError, ModelNotFound
from zhuge.jobs.context import JobContext
from zhuge.jobs.forecast.checks import check_request
from zhuge.jobs.forecast.models import model_summary
from zhuge.jobs.forecast.params import TrainParams, horizon_steps
from zhuge.jobs.forecast.prepare import prepare_fleet
from zhuge.jobs.kinds import kind
from zhuge.jobs.outputs import json_safe
from zhuge.jobs.registry import metrics as _metrics  # noqa: F401 (registers decision_regret)
from zhuge.jobs.registry.model import (
    CHAMPION,
    NAME_PATTERN,
    ModelConfig,
    ModelVersion,
    check_config,
    check_name,
    manifest_digest,
    verified_folder,
)
from zhuge.jobs.registry.store import Registry
from zhuge.jobs.registry.use import file_sha256 as _file_sha256
from zhuge.jobs.registry.use import lineage as _lineage
from zhuge.jobs.registry.use import registry_of, relative
from zhuge.ml import gate
from zhuge.ml.forecast import load
from zhuge.ml.forecast._fleet import daily_season
from zhuge.ml.forecast.chunked import Pipeline, load_pipeline, sample_series, save_model
from zhuge.ml.forecast.forecaster import Forecaster

MODEL_FOLDER = "model"
LIBRARIES = ("numpy", "pandas", "pyarrow", "lightgbm", "statsforecast", "scikit-learn")
# what must agree between two models for one to be judged on the other's windows
COMPARABLE = ("freq", "horizon_steps", "agg", "level", "target")


class RegisterParams(TrainParams):
    register_as: str = Field(
        pattern=NAME_PATTERN.pattern,
        description="The registered model this version is added to.",
    )
    config: dict[str, Any] | None = Field(
        None,
        description="Release gate settings to set on the model (metric, margin, level, test, "
        "min_series, manual, gate_windows, drift_*); default: the model's, or the defaults.",
    )


def load_version(root: ArtifactDir, version: ModelVersion) -> tuple[Forecaster, Pipeline]:
    """The forecaster of a registered version, refused unless its manifest is the one
    registered and every file matches the manifest's hash."""
    folder = verified_folder(root, version)
    try:
        return load(folder), load_pipeline(folder)
    except ModelNotFound as exc:
        raise DataError(f"model {version.ref} was tampered with: {exc.message}") from exc


# -- lineage ---------------------------------------------------------------------------------


def lineage(params: RegisterParams, ctx: JobContext) -> dict[str, Any]:
    """What made this version (:func:`zhuge.jobs.registry.use.lineage`)."""
    return _lineage(params, ctx, LIBRARIES)


# -- the held-out windows ---------------------------------------------------------------------


def holdout_origins(frame: pd.DataFrame, freq: str, steps: int, windows: int) -> list[pd.Timestamp]:
    """The origins of the last ``windows`` horizons of ``frame``: the model trains on what
    is at or before the first, and each window is the ``steps`` slots after its origin."""
    step = pd.Timedelta(freq)
    end = pd.Timestamp(frame["timestamp"].max())
    first = end - windows * steps * step
    if first <= pd.Timestamp(frame["timestamp"].min()) + 2 * steps * step:
        raise DataError(
            f"too little data to hold out {windows} horizon(s) of {steps} step(s) for the "
            "release gate and train on what precedes them: give more history or lower "
            "gate_windows"
        )
    return [first + k * steps * step for k in range(windows)]


def _matrix(frame: pd.DataFrame, series: pd.Index, columns: Any, value: str) -> np.ndarray:
    table = frame.pivot_table(index="series_id", columns="timestamp", values=value)
    return table.reindex(index=series, columns=columns).to_numpy(dtype=np.float64)


def window_losses(
    model: Forecaster,
    frame: pd.DataFrame,
    origins: list[pd.Timestamp],
    *,
    freq: str,
    steps: int,
    metric: str,
) -> tuple[pd.DataFrame, dict[str, float]]:
    """Loss per series (rows) and window (columns) of ``model`` forecasting each window from
    the history before it; and each window's mean coverage of its first interval, if any."""
    step = pd.Timedelta(freq)
    season = daily_season(freq)
    score = gate.metric(metric)
    series = pd.Index(sorted(frame["series_id"].unique()))
    losses: dict[str, np.ndarray] = {}
    coverage: dict[str, float] = {}
    for origin in origins:
        history = frame[frame["timestamp"] <= origin]
        grid = pd.date_range(origin + step, periods=steps, freq=step)
        future = frame[frame["timestamp"].isin(grid)]
        forecast = model.predict(history)
        actual = _matrix(future, series, grid, "value")
        yhat = _matrix(forecast, series, grid, "yhat")
        past = _matrix(history, series, sorted(history["timestamp"].unique()), "value")
        with np.errstate(invalid="ignore", divide="ignore"):
            losses[origin.isoformat()] = score(actual, yhat, past, season)
        bands = sorted(c for c in forecast.columns if c.startswith("yhat_q"))
        if len(bands) >= 2:
            lower = _matrix(forecast, series, grid, bands[0])
            upper = _matrix(forecast, series, grid, bands[-1])
            inside = (actual >= lower) & (actual <= upper)
            coverage[origin.isoformat()] = float(inside[~np.isnan(actual)].mean())
    return pd.DataFrame(losses, index=series), coverage


# -- the kind ---------------------------------------------------------------------------------


def _train(params: RegisterParams, frame: pd.DataFrame, freq: str, steps: int) -> Forecaster:
    return Forecaster(
        model=params.model,
        freq=freq,
        horizon=steps,
        quantiles=tuple(params.quantiles),
        target=params.target,
        buckets=tuple(params.buckets),
        selection=params.selection,
        backtest_windows=params.selection_windows,
        n_jobs=1,
        random_state=params.seed,
    ).fit(frame)


def _config(registry: Registry, tenant: str, params: RegisterParams) -> ModelConfig:
    try:
        current = registry.config(tenant, params.register_as).model_dump()
    except ModelNotFound:
        current = {}
    return check_config({**current, **(params.config or {})})


def _window_means(losses: pd.DataFrame) -> dict[str, float | None]:
    return {k: (None if np.isnan(v) else float(v)) for k, v in losses.mean(axis=0).items()}


@kind(
    "model-train",
    params=RegisterParams,
    description="Train a version of a registered model on all but the last gate_windows "
    "horizons, register it with its lineage, and promote it over the champion only on "
    "evidence from those windows.",
)
def run_model_train(params: RegisterParams, ctx: JobContext) -> dict[str, Any]:
    name = check_name(params.register_as)
    registry = registry_of(ctx)
    try:
        task = registry.task(ctx.tenant, name)
    except ModelNotFound:
        task = "forecast"
    if task != "forecast":  # fails before any work, and for good
        raise DataError(
            f"model {name!r} holds {task} models, not forecast models: register under another name"
        )
    config = _config(registry, ctx.tenant, params)
    if config.metric not in gate.known_metrics():  # fails before any work, and for good
        raise DataError(
            f"model {name!r} is configured with gate metric {config.metric!r}, which this "
            f"worker does not know; known: {', '.join(gate.known_metrics())}"
        )
    check_request(params)
    prepared = prepare_fleet(params, ctx)
    freq = prepared.spec.freq
    steps = horizon_steps(params.horizon, freq)
    frame = sample_series(prepared.parts, prepared.counts, params.train_series, seed=params.seed)
    origins = holdout_origins(frame, freq, steps, config.gate_windows)
    # a retried job finds the version it registered, and judges it again without training
    # (a second model folder would not be the one registered)
    existing = [v for v in registry_versions(registry, ctx.tenant, name) if v.job_id == ctx.job_id]
    if existing:
        version = existing[0]
        frozen, _ = load_version(ctx.artifacts_root, version)
        forecaster = frozen
    else:
        ctx.progress(0, 3, f"training on data up to {origins[0]}")
        forecaster = _train(params, frame[frame["timestamp"] <= origins[0]], freq, steps)
        pipeline = Pipeline(
            freq=freq,
            horizon=params.horizon,
            horizon_steps=steps,
            agg=prepared.spec.agg,
            level=prepared.spec.level,
            sample_freq=prepared.spec.sample_freq,
            target=params.target,
            buckets=list(params.buckets),
            quantiles=list(params.quantiles),
        )
        folder = ctx.artifacts.child(MODEL_FOLDER)
        save_model(forecaster, folder, pipeline)
        ctx.progress(1, 3, "registering")
        lineage_ = lineage(params, ctx)
        lineage_["holdout"] = {
            "trained_until": origins[0].isoformat(),
            "windows": [o.isoformat() for o in origins],
            "horizon_steps": steps,
            "series": int(frame["series_id"].nunique()),
        }
        version = registry.register(
            ctx.tenant,
            name,
            artifact=relative(ctx, folder),
            manifest_sha256=manifest_digest(folder.read_bytes(MANIFEST)),
            lineage=json_safe(lineage_),
            job_id=ctx.job_id,
            config=config.model_dump(),
        )
    try:
        champion = registry.resolve(ctx.tenant, f"{name}@{CHAMPION}")
    except ModelNotFound:
        champion = None
    if champion is not None and not existing and champion.version == version.version:
        champion = None  # it became champion as the first version of the model

    ctx.progress(2, 3, "judging it against the champion on the held-out windows")
    frozen, mine_pipeline = load_version(ctx.artifacts_root, version)
    mine, my_coverage = window_losses(
        frozen, frame, origins, freq=freq, steps=steps, metric=config.metric
    )
    evidence: dict[str, Any] = {
        "metric": config.metric,
        "windows": [o.isoformat() for o in origins],
        "horizon_steps": steps,
        "series": len(mine),
        "challenger_per_window": _window_means(mine),
        "coverage_per_window": my_coverage,
    }
    metrics = {
        config.metric: float(np.nanmean(mine.to_numpy())),
        "coverage": float(np.mean(list(my_coverage.values()))) if my_coverage else None,
        "per_window": _window_means(mine),
        "selection": model_summary(forecaster, params.target),  # auto's own backtest
    }
    if config.metric != "mase":  # live scoring compares MASE with MASE
        as_mase, _ = window_losses(frozen, frame, origins, freq=freq, steps=steps, metric="mase")
        metrics["mase"] = float(np.nanmean(as_mase.to_numpy()))
    if champion is None or champion.version == version.version:
        decision = {
            "decision": "champion" if champion is None else "unchanged",
            "reason": "the first version of a model becomes champion"
            if champion is None
            else "it is the champion already (this job was retried)",
            "challenger_score": metrics[config.metric],
            **evidence,
        }
        promote = False
    else:
        decision, promote = _judge(
            ctx,
            champion,
            frozen,
            mine_pipeline,
            frame,
            origins,
            freq,
            steps,
            config,
            mine,
            evidence,
        )
    version = registry.record_gate(
        ctx.tenant, name, version.version, json_safe(decision), promote=promote, job_id=ctx.job_id
    )
    registry.record_metrics(ctx.tenant, name, version.version, json_safe(metrics))
    ctx.progress(3, 3, decision["reason"])
    ctx.log(f"{name}@{version.version}: {decision['decision']}: {decision['reason']}")
    return {
        "model": name,
        "version": version.version,
        "ref": version.ref,
        "aliases": list(version.aliases),
        "gate": json_safe(decision),
        "metrics": json_safe(metrics),
        "artifacts": {
            "model": ctx.artifacts_root.child(version.artifact).url,
            "report": prepared.report,
        },
    }


def registry_versions(registry: Registry, tenant: str, name: str) -> list[ModelVersion]:
    try:
        return registry.versions(tenant, name)
    except ModelNotFound:
        return []


def _judge(
    ctx: JobContext,
    champion: ModelVersion,
    frozen: Forecaster,
    mine_pipeline: Pipeline,
    frame: pd.DataFrame,
    origins: list[pd.Timestamp],
    freq: str,
    steps: int,
    config: ModelConfig,
    mine: pd.DataFrame,
    evidence: dict[str, Any],
) -> tuple[dict[str, Any], bool]:
    """The gate's decision between the champion and the new version, with its evidence."""
    theirs_model, theirs_pipeline = load_version(ctx.artifacts_root, champion)
    differs = [k for k in COMPARABLE if getattr(theirs_pipeline, k) != getattr(mine_pipeline, k)]
    if differs:
        reason = (
            f"the champion ({champion.ref}) forecasts another way ("
            + ", ".join(f"{k} {getattr(theirs_pipeline, k)}" for k in differs)
            + "): not comparable on these windows; promote by hand if wanted"
        )
        return {"decision": "challenger", "reason": reason, **evidence}, False
    theirs, _ = window_losses(
        theirs_model, frame, origins, freq=freq, steps=steps, metric=config.metric
    )
    champion_losses = theirs.mean(axis=1).to_numpy()
    challenger_losses = mine.mean(axis=1).to_numpy()
    decided = gate.decide(
        champion_losses,
        challenger_losses,
        margin=config.margin,
        level=config.level,
        test=config.test,
        min_series=config.min_series,
        manual=config.manual,
        seed=0,
    )
    decision = {
        **decided.as_dict(),
        "champion_version": champion.version,
        "champion_per_window": _window_means(theirs),
        **evidence,
    }
    if decided.promote:
        _no_regression(ctx, champion, theirs_model, frozen, theirs_pipeline, config, decision)
    return decision, bool(decision["promote"])


def _champion_data(
    ctx: JobContext, champion: ModelVersion, pipeline: Pipeline
) -> tuple[pd.DataFrame, list[pd.Timestamp]] | str:
    """The series and held-out windows the champion was judged on, read again by digest;
    the reason in words when they cannot be (removed, changed since, or from SQL)."""
    from zhuge.jobs.inputs import resolve_input

    lineage_ = champion.lineage or {}
    holdout, submitted = lineage_.get("holdout"), lineage_.get("params") or {}
    inputs = {d.get("param"): d for d in lineage_.get("datasets", [])}
    entry = inputs.get("input")
    if not holdout or entry is None or submitted.get("vms"):
        return "the champion has no held-out windows of a single input on record"
    try:
        url = resolve_input(entry["ref"], ctx)
    except (DataError, ModelNotFound) as exc:
        return f"the champion's data cannot be read again ({exc.message})"
    if entry.get("name") is None and _file_sha256(url) != entry.get("sha256"):
        return "the champion's data changed since it was judged (its SHA-256 differs)"
    params = RegisterParams.model_validate({**submitted, "input": url})
    own = dataclasses.replace(ctx, artifacts=ctx.artifacts.child("gate-champion-data"))
    prepared = prepare_fleet(params, own, spec=pipeline.chunk_spec())
    frame = sample_series(prepared.parts, prepared.counts, params.train_series, seed=params.seed)
    return frame, [pd.Timestamp(w) for w in holdout["windows"]]


def _no_regression(
    ctx: JobContext,
    champion: ModelVersion,
    theirs_model: Forecaster,
    frozen: Forecaster,
    pipeline: Pipeline,
    config: ModelConfig,
    decision: dict[str, Any],
) -> None:
    """A version better on its own windows must not be worse, by more than the margin, on
    the windows the champion won its place on: data that is itself corrupted (stuck series,
    shifted clocks) makes its own held-out windows easy for a model fitted to it."""
    found = _champion_data(ctx, champion, pipeline)
    if isinstance(found, str):
        decision["champion_windows"] = {"checked": False, "why": found}
        return
    frame, origins = found
    steps, freq = pipeline.horizon_steps, pipeline.freq
    theirs, _ = window_losses(
        theirs_model, frame, origins, freq=freq, steps=steps, metric=config.metric
    )
    mine, _ = window_losses(frozen, frame, origins, freq=freq, steps=steps, metric=config.metric)
    champion_score = float(np.nanmean(theirs.mean(axis=1)))
    challenger_score = float(np.nanmean(mine.mean(axis=1)))
    worse = (challenger_score - champion_score) / champion_score if champion_score > 0 else 0.0
    decision["champion_windows"] = {
        "checked": True,
        "windows": [o.isoformat() for o in origins],
        "series": len(mine),
        "champion_score": champion_score,
        "challenger_score": challenger_score,
        "worse_by": worse,
    }
    if worse > config.margin:
        decision.update(
            promote=False,
            decision="challenger",
            reason=f"{decision['reason']} on its own windows, but worse by {worse:.1%} on the "
            f"windows {champion.ref} was judged on",
        )
