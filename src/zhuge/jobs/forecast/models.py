"""Training, summarising and finding the forecast models the jobs save."""

from __future__ import annotations

from typing import Any

from zhuge.artifacts import ArtifactDir
from zhuge.errors import DataError
from zhuge.jobs.context import JobContext
from zhuge.jobs.forecast.params import ModelChoice, TrainParams, horizon_steps
from zhuge.jobs.forecast.prepare import PreparedFleetParts
from zhuge.jobs.outputs import latest_saved
from zhuge.ml.forecast.chunked import (
    Pipeline,
    sample_series,
    save_model,
)
from zhuge.ml.forecast.forecaster import Forecaster


def _forecaster(params: ModelChoice, freq: str, steps: int) -> Forecaster:
    return Forecaster(
        model=params.model,
        freq=freq,
        horizon=steps,
        quantiles=tuple(params.quantiles),
        target=params.target,
        buckets=tuple(params.buckets),
        selection=params.selection,
        backtest_windows=params.selection_windows,
        n_jobs=1,  # the job holds one CPU slot
        random_state=params.seed,
    )


def train_forecaster(
    params: TrainParams, prepared: PreparedFleetParts, ctx: JobContext
) -> tuple[Forecaster, Pipeline, str, int]:
    steps = horizon_steps(params.horizon, prepared.spec.freq)
    ctx.progress(0, 1, f"sampling up to {params.train_series:,} series to train on")
    sample = sample_series(prepared.parts, prepared.counts, params.train_series, seed=params.seed)
    n_sample = int(sample["series_id"].nunique())
    by_decision = None
    if params.model == "auto" and params.select_by == "decision":
        from zhuge.jobs.forecast.decision import select_by_decision

        chosen, by_decision = select_by_decision(params, sample, prepared.spec.freq, steps, ctx)
        params = params.model_copy(update={"model": chosen})
    ctx.progress(0, 1, f"training {params.model} on {n_sample:,} series")
    forecaster = _forecaster(params, prepared.spec.freq, steps).fit(sample)
    if by_decision is not None:  # the choice and the plan limits it was made for, kept with it
        forecaster.model = "auto"
        forecaster.selection_ = by_decision
    del sample
    pipeline = Pipeline(
        freq=prepared.spec.freq,
        horizon=params.horizon,
        horizon_steps=steps,
        agg=prepared.spec.agg,
        level=prepared.spec.level,
        sample_freq=prepared.spec.sample_freq,
        target=params.target,
        buckets=list(params.buckets),
        quantiles=list(params.quantiles),
    )
    folder = ctx.artifacts.child("model")
    save_model(forecaster, folder, pipeline)
    ctx.log(f"model: {forecaster.selection_['reason']}")
    return forecaster, pipeline, folder.url, n_sample


def model_summary(forecaster: Forecaster, target: str) -> dict[str, Any]:
    selection = dict(forecaster.selection_)
    summary = {
        "chosen": forecaster.model_,
        "requested": forecaster.model,
        "strategy": selection.get("strategy"),
        "reason": selection.get("reason"),
        "scores": selection.get("scores", {}),
        "metric": selection.get("metric")
        or ("bucket_error" if target == "bucket" and forecaster.model == "auto" else "mase"),
        "windows": selection.get("windows", 0),
        "counts": selection.get("counts", {}),
        "notes": list(forecaster.notes_),
    }
    if summary["metric"] == "bucket_error" and forecaster.model_ in summary["scores"]:
        summary["bucket_accuracy"] = 1.0 - summary["scores"][forecaster.model_]
    return summary


def find_model(job_id: int, artifacts_root: ArtifactDir) -> ArtifactDir:
    """The saved model of job ``job_id`` (the latest attempt that saved a whole one)."""
    folder = latest_saved(artifacts_root, job_id, "model")
    if folder is not None:
        return folder
    raise DataError(
        f"job {job_id} saved no forecast model (is it a train or forecast job that succeeded?)"
    )
