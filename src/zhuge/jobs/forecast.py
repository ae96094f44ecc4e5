"""Job kinds ``prepare``, ``train``, ``forecast`` and ``backtest``: fleet forecasting on the platform.

Every kind starts the same way (:func:`prepare_fleet`):

1. **stage**: the job streams the telemetry (CSV/Parquet at any fsspec URL, or a SQL query)
   as chunks of ``chunk_series`` whole series and writes each to ``staged/part-N.parquet``
   in its attempt folder (removed once cleaned). Memory holds one chunk. Input not grouped by ``series_id`` is
   hash-partitioned first (one more pass through temporary files). SQL results are read
   whole, so a query must fit in memory.
2. **clean**: the staged chunks are spread over the cluster (``ctx.map``, one part per chunk):
   each is cleaned on its sample grid and aggregated to the forecast grid
   (:mod:`zhuge.data.preparation`); every part writes ``prepared/part-N`` and its per-series
   cleaning report ``reports/part-N``. Host/cluster levels add the chunks' partial sums up
   in the job and aggregate the (8-60x fewer) host series in time.

Then ``train`` fits a :class:`~zhuge.ml.forecast.Forecaster` on a random sample of at most
``train_series`` prepared series (the global GBM learns from a sample anyway; per-series
models learn nothing fleet-wide) and saves it as a manifest-verified artifact with how its
input was prepared (``model/``); ``forecast`` trains the same way (or loads ``model_from``)
and predicts every chunk in parallel parts, writing ``forecast/part-N``, then one
``forecast.parquet`` (and ``out``); ``backtest`` scores rolling origins chunk by chunk,
always next to the baselines. Bad input raises ``DataError``/``InvalidRequest``: the job goes
dead at once and ``out`` is never written.
"""

from __future__ import annotations

import functools
import math
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Literal

import fsspec
import pandas as pd
from pydantic import Field, field_validator, model_validator

from zhuge.artifacts import ArtifactDir
from zhuge.data.preparation import ChunkSpec, detect_sample_freq, finish_level
from zhuge.data.sources import (
    TimestampUnit,
    UngroupedInput,
    _format_of,
    _standardise,
    iter_series_chunks,
    parse_column_map,
    read_sql,
)
from zhuge.errors import DataError, InvalidRequest, ModelNotFound
from zhuge.jobs.context import JobContext
from zhuge.jobs.kinds import KindParams, kind
from zhuge.jobs.outputs import check_out, copy_out, existing_location, json_safe, latest_saved
from zhuge.ml.forecast import DEFAULT_EDGES, MODEL_NAMES, load
from zhuge.ml.forecast.chunked import (
    Pipeline,
    backtest_part,
    concat_parquet,
    load_pipeline,
    parquet_columns,
    predict_part,
    prepare_part,
    read_parquet_url,
    sample_series,
    save_model,
)
from zhuge.ml.forecast.forecaster import Forecaster
from zhuge.ml.forecast.metrics import summarize

__all__ = [
    "BacktestParams",
    "ForecastParams",
    "PrepareParams",
    "TrainParams",
    "check_request",
    "horizon_steps",
    "prepare_fleet",
]

Freq = Literal["5min", "1h"]
Agg = Literal["mean", "max", "p95"]
Level = Literal["vm", "host", "cluster"]
# Series per chunk. Each worker cleans one chunk at a time, so peak memory is about two chunks'
# cleaning temporaries (two workers) plus the platform: 2,000 series x 14 days of 5-min samples
# peaked at 4.18 GB for the whole process tree at 100k VMs, over the 4 GB goal; 1,000 halves the
# chunks' share (not yet re-measured).
CHUNK_SERIES = 1000
TRAIN_SERIES = 2000  # series the model is trained on (the GBM's own sample size)
HASH_PARTITION_BYTES = 256 * 2**20  # input bytes per hash partition for ungrouped input
NOTE_EXAMPLES = 10  # series notes shown in a result


# -- parameters -----------------------------------------------------------------------------


def _value_error(check: Any, value: Any) -> Any:
    try:
        return check(value)
    except InvalidRequest as exc:
        raise ValueError(exc.message) from exc


class FleetInput(KindParams):
    """Where the telemetry comes from and how it becomes series on the forecast grid."""

    input: str | None = Field(
        None, description="CSV or Parquet of series_id, timestamp, value (any fsspec URL)."
    )
    sql: str | None = Field(None, description="A SQL query giving those columns (with db).")
    db: str | None = Field(None, description="SQLAlchemy URL of the database sql runs on.")
    columns: dict[str, str] = Field(
        default_factory=dict,
        description="Canonical name -> name in the input, e.g. 'series_id=vm,value=cpu'.",
    )
    timestamp_unit: TimestampUnit = Field(
        "auto", description="iso, or epoch s/ms/us/ns; auto detects it and reports what it chose."
    )
    vms: str | None = Field(
        None, description="Parquet VM table (vm_id, host_id, cluster_id, vcpus) for host/cluster."
    )
    freq: Freq = Field("1h", description="Forecast grid.")
    agg: Agg = Field("mean", description="Statistic of each forecast slot: mean, max or p95.")
    level: Level = Field("vm", description="Forecast each VM, or each host's / cluster's load.")
    sample_freq: str | None = Field(
        None, description="Grid the raw samples are cleaned on; default: detected."
    )
    chunk_series: int = Field(CHUNK_SERIES, ge=1, description="Series per chunk of work.")

    @field_validator("columns", mode="before")
    @classmethod
    def _columns(cls, value: Any) -> Any:
        if value is None:
            return {}
        return _value_error(parse_column_map, value)

    @field_validator("sample_freq")
    @classmethod
    def _sample_freq(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                step = pd.Timedelta(pd.tseries.frequencies.to_offset(value))
            except (ValueError, TypeError) as exc:
                raise ValueError(f"{value!r} is not a duration such as '5min'") from exc
            if step <= pd.Timedelta(0):
                raise ValueError("sample_freq must be positive")
        return value

    @model_validator(mode="after")
    def _one_source(self) -> FleetInput:
        if (self.input is None) == (self.sql is None):
            raise ValueError("give exactly one of input (a file or URL) or sql (with db)")
        if self.sql is not None and not self.db:
            raise ValueError("sql needs db, the database URL to run it on")
        step = pd.Timedelta(self.freq or "1h")
        if self.sample_freq is not None and step % pd.Timedelta(self.sample_freq):
            raise ValueError(f"sample_freq {self.sample_freq} must divide freq {self.freq}")
        return self


def parse_horizon(text: str) -> pd.Timedelta:
    text = str(text).strip()
    if not re.fullmatch(r"\d+(\.\d+)?\s*[a-zA-Z]+(\s*\d+(\.\d+)?\s*[a-zA-Z]+)*", text):
        raise InvalidRequest(f"horizon {text!r} is not a duration such as '24h' or '90min'")
    try:
        value = pd.Timedelta(text)
    except ValueError as exc:
        raise InvalidRequest(f"horizon {text!r} is not a duration such as '24h'") from exc
    if value <= pd.Timedelta(0):
        raise InvalidRequest(f"horizon must be positive, not {text!r}")
    return value


def horizon_steps(horizon: str, freq: str) -> int:
    """Forecast steps covering ``horizon`` on ``freq`` (rounded up: 90min at 1h is 2 steps)."""
    return max(1, math.ceil(parse_horizon(horizon) / pd.Timedelta(freq)))


def _check_model(value: str) -> str:
    if value != "auto" and value not in MODEL_NAMES:
        raise ValueError(f"unknown model {value!r}; choose auto or one of {list(MODEL_NAMES)}")
    return value


class ModelChoice(KindParams):
    """What is forecast and how models are chosen (shared by train, forecast and backtest)."""

    horizon: str = Field("24h", description="How far ahead: any duration ('24h', '90min').")
    quantiles: list[float] = Field(
        default_factory=list, description="Interval levels, e.g. [0.1, 0.9] -> yhat_q10, yhat_q90."
    )
    target: Literal["mean", "bucket"] = Field(
        "mean", description="bucket: also predict the load band of each step."
    )
    buckets: list[float] = Field(
        default_factory=lambda: list(DEFAULT_EDGES), description="Band edges for target=bucket."
    )
    selection: Literal["global", "per_series"] = Field(
        "global", description="auto: one model for the fleet, or each series its own."
    )
    selection_windows: int = Field(2, ge=1, le=10, description="Windows auto selects on.")
    seed: int = 0

    @field_validator("horizon")
    @classmethod
    def _horizon(cls, value: str | None) -> str | None:
        if value is not None:
            _value_error(parse_horizon, value)
        return value

    @field_validator("quantiles")
    @classmethod
    def _quantiles(cls, value: list[float] | None) -> list[float] | None:
        if value is None:
            return None
        if any(not 0 < q < 1 for q in value):
            raise ValueError(f"quantiles must lie strictly between 0 and 1: {value}")
        return sorted(set(value))

    @field_validator("buckets")
    @classmethod
    def _buckets(cls, value: list[float] | None) -> list[float] | None:
        if value is None:
            return None
        if len(value) < 2 or any(b >= a for a, b in zip(value[1:], value, strict=False)):
            raise ValueError(f"buckets must be at least 2 strictly increasing edges: {value}")
        return value


class PrepareParams(FleetInput):
    out: str | None = Field(None, description="Also write the prepared series here (Parquet).")


class TrainParams(FleetInput, ModelChoice):
    model: str = Field("auto", description=f"auto, or one of {', '.join(MODEL_NAMES)}.")
    train_series: int = Field(
        TRAIN_SERIES, ge=1, description="Train on a random sample of at most this many series."
    )

    @field_validator("model")
    @classmethod
    def _model(cls, value: str) -> str:
        return _check_model(value)


_FROM_MODEL = "default: the model's with model_from, else as for train"
PIPELINE_FIELDS = ("freq", "horizon", "agg", "level", "target", "quantiles", "buckets")


class ForecastParams(TrainParams):
    model_from: int | None = Field(
        None, ge=1, description="Reuse the model a train/forecast job saved (its id)."
    )
    out: str | None = Field(None, description="Also write the forecast here (Parquet).")
    # How the input is prepared and what is predicted: None takes them from the reused model
    # (or the train defaults), so that a stored job says what the caller really asked for.
    freq: Freq | None = Field(None, description=f"Forecast grid ({_FROM_MODEL}).")
    horizon: str | None = Field(None, description=f"How far ahead ({_FROM_MODEL}).")
    agg: Agg | None = Field(None, description=f"Statistic per slot ({_FROM_MODEL}).")
    level: Level | None = Field(None, description=f"vm, host or cluster ({_FROM_MODEL}).")
    target: Literal["mean", "bucket"] | None = Field(None, description=_FROM_MODEL)
    quantiles: list[float] | None = Field(None, description=f"Interval levels ({_FROM_MODEL}).")
    buckets: list[float] | None = Field(None, description=f"Band edges ({_FROM_MODEL}).")

    def resolved(self, pipeline: Pipeline | None = None) -> ForecastParams:
        """Every None filled from ``pipeline`` (a reused model) or the train defaults;
        ``DataError`` where a given value contradicts the reused model."""
        updates: dict[str, Any] = {}
        for name in PIPELINE_FIELDS:
            mine = getattr(self, name)
            if pipeline is None:
                if mine is None:
                    default = TrainParams.model_fields[name]
                    updates[name] = default.get_default(call_default_factory=True)
                continue
            theirs = getattr(pipeline, name)
            same = mine is None or (
                horizon_steps(mine, pipeline.freq) == pipeline.horizon_steps
                if name == "horizon"
                else [float(x) for x in mine] == [float(x) for x in theirs]
                if isinstance(mine, list)
                else mine == theirs
            )
            if not same:
                raise DataError(
                    f"the model of job {self.model_from} was trained with {name}={theirs!r}, "
                    f"not {mine!r}; leave {name} out to use the model's, or train a new model"
                )
            updates[name] = theirs
        return self.model_copy(update=updates)


class BacktestParams(FleetInput, ModelChoice):
    windows: int = Field(3, ge=1, le=50, description="Rolling origins, one horizon apart.")
    models: list[str] = Field(
        default_factory=lambda: ["auto"],
        description="Models to score; the baselines are always scored beside them.",
    )
    quantiles: list[float] = Field(
        default_factory=lambda: [0.1, 0.9], description="Interval whose coverage is reported."
    )

    @field_validator("models")
    @classmethod
    def _models(cls, value: list[str]) -> list[str]:
        for name in value:
            _check_model(name)
        if not value:
            raise ValueError("give at least one model")
        return list(dict.fromkeys(value))


# -- checks before any work -------------------------------------------------------------------


def _exists(url: str, what: str) -> tuple[Any, str]:
    return existing_location(url, what, missing=f"{what} {url} does not exist")


def _head(url: str, rows: int = 2000) -> pd.DataFrame:
    """The first rows of a CSV or Parquet file (or folder), for checks."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    fs, path = _exists(url, "input")
    try:
        if _format_of(url, "auto") == "csv":
            with fs.open(path, "rb", compression="infer") as fh:
                return pd.read_csv(fh, nrows=rows)
        files = sorted(f for f in fs.find(path) if f.endswith((".parquet", ".pq")))
        files = files if fs.isdir(path) else [path]
        if not files:
            raise DataError(f"input {url} is a folder without Parquet files")
        with fs.open(files[0], "rb") as fh:
            batch = next(pq.ParquetFile(fh).iter_batches(batch_size=rows), None)
            return batch.to_pandas() if batch is not None else pd.DataFrame()
    except (pa.ArrowException, pd.errors.ParserError, UnicodeDecodeError, OSError) as exc:
        raise DataError(f"input {url} is not readable CSV or Parquet: {exc}") from exc


def check_request(params: FleetInput) -> dict[str, Any]:
    """Check what can be checked cheaply before a job runs: the input opens, its columns map,
    its timestamps and values parse, the VM table and output folder exist. Returns what the
    first rows showed (columns, timestamp unit). The CLI runs this before submitting."""
    out = getattr(params, "out", None)
    if out is not None:
        check_out(out)
    seen: dict[str, Any] = {}
    if params.input is not None:
        head = _head(params.input)
        if head.empty:
            raise DataError(f"input {params.input} has no rows")
        telemetry = _standardise(head, params.columns, params.timestamp_unit, params.input)
        seen = {"columns": list(head.columns), "timestamp_unit": telemetry.timestamp_unit}
        placed = {"host_id", "cluster_id"} & set(telemetry.frame.columns)
        level = params.level or "vm"
        if level != "vm" and f"{level}_id" not in placed and params.vms is None:
            raise DataError(
                f"level {level} needs each VM's {level}_id: the input has no {level}_id "
                "column; map one with columns or give the VM table (vms)"
            )
    if params.vms is not None:
        _exists(params.vms, "VM table")
        vms = read_parquet_url(params.vms)
        if "vm_id" not in vms.columns:
            raise DataError(
                f"VM table {params.vms} lacks column 'vm_id'; it has {list(vms.columns)}"
            )
        if params.level not in (None, "vm") and f"{params.level}_id" not in vms.columns:
            raise DataError(f"VM table {params.vms} lacks column '{params.level}_id'")
    return seen


# -- preparing a fleet ------------------------------------------------------------------------


@dataclass
class PreparedFleetParts:
    """A fleet prepared into chunk files on the forecast grid."""

    parts: list[str]  # prepared/part-N.parquet URLs
    counts: list[int]  # series per part
    spec: ChunkSpec
    timestamp_unit: str
    report: str  # report.parquet URL (one row per input series)
    summary: dict[str, Any]
    notes: list[dict[str, str]] = field(default_factory=list)

    @property
    def n_series(self) -> int:
        return int(sum(self.counts))


def _stage_chunks(params: FleetInput, partitions: int | None):
    if params.sql is not None:
        telemetry = read_sql(
            params.sql,
            params.db or "",
            columns=params.columns,
            timestamp_unit=params.timestamp_unit,
        )
        frame = telemetry.frame.sort_values("series_id", kind="stable", ignore_index=True)
        codes = pd.factorize(frame["series_id"])[0]
        for first in range(0, int(codes.max(initial=-1)) + 1, params.chunk_series):
            part = frame.loc[(codes >= first) & (codes < first + params.chunk_series)]
            yield part.reset_index(drop=True), telemetry.timestamp_unit
        return
    for telemetry in iter_series_chunks(
        params.input or "",
        series_per_chunk=params.chunk_series,
        columns=params.columns,
        timestamp_unit=params.timestamp_unit,
        partitions=partitions,
    ):
        yield telemetry.frame, telemetry.timestamp_unit


def _input_bytes(url: str) -> int:
    fs, path = fsspec.core.url_to_fs(url)
    if fs.isdir(path):
        return sum(fs.size(f) for f in fs.find(path))
    return int(fs.size(path))


def _stage(
    params: FleetInput, ctx: JobContext, sample_freq: str | None
) -> tuple[list[str], str, str]:
    """Stream the input into staged chunk files; return (urls, sample_freq, timestamp unit).
    ``sample_freq`` None: detected on the first chunk."""
    fixed = sample_freq
    attempt = 0
    partitions: int | None = None
    while True:
        attempt += 1
        staged = ctx.artifacts.child(f"staged/pass-{attempt}")
        urls: list[str] = []
        sample_freq, unit, series = fixed, "", 0
        try:
            for frame, chunk_unit in _stage_chunks(params, partitions):
                unit = chunk_unit
                ctx.check_cancelled()
                if sample_freq is None:
                    sample_freq = detect_sample_freq(frame, params.freq)
                urls.append(staged.write_parquet(f"part-{len(urls):05d}.parquet", frame))
                series += int(frame["series_id"].nunique())
                ctx.progress(0, 1, f"reading input: {series:,} series")
        except UngroupedInput:
            if partitions is not None or params.input is None:
                raise
            partitions = max(4, math.ceil(_input_bytes(params.input) / HASH_PARTITION_BYTES))
            ctx.log(f"input is not grouped by series_id: hash-partitioning it into {partitions}")
            fs, path = fsspec.core.url_to_fs(staged.url)
            if fs.exists(path):
                fs.rm(path, recursive=True)
            continue
        if not urls:
            raise DataError("the input has no rows")
        return urls, sample_freq or params.freq, unit


def prepare_fleet(params: FleetInput, ctx: JobContext, spec: ChunkSpec | None = None):
    """Stage, clean and aggregate the fleet in parts (module docstring); return its parts.

    ``spec`` (from a saved model's pipeline) fixes how the series are prepared.
    """
    given = spec.sample_freq if spec is not None else params.sample_freq
    staged, sample_freq, unit = _stage(params, ctx, given)
    if spec is None:
        spec = ChunkSpec(
            freq=params.freq, sample_freq=sample_freq, agg=params.agg, level=params.level
        )
    ctx.log(
        f"{len(staged)} chunk(s) of up to {params.chunk_series} series; timestamps read as "
        f"{unit}; samples cleaned on a {spec.sample_freq} grid, {spec.agg} per {spec.freq}, "
        f"level {spec.level}"
    )
    work = ctx.artifacts.url
    parts = ctx.map(
        functools.partial(prepare_part, spec=spec, out=work, vms_url=params.vms),
        list(enumerate(staged)),
        message="chunks cleaned",
    )
    _remove(staged)  # raw copies of the input: as big as the input itself
    report = _combine_reports(parts, ctx)
    summary = _sum_counts(parts)
    if spec.level == "vm":
        urls = [p["prepared"] for p in parts if p["rows"]]
        counts = [p["series"] for p in parts if p["rows"]]
    else:
        urls, counts = _roll_up_parts(parts, spec, params.chunk_series, ctx)
    if not urls:
        raise DataError("no series has any usable value after cleaning")
    prepared = PreparedFleetParts(urls, counts, spec, unit, report, summary)
    prepared.notes = _notes(report)
    return prepared


def _remove(urls: list[str]) -> None:
    for url in urls:
        fs, path = fsspec.core.url_to_fs(url)
        fs.rm(path)


def _combine_reports(parts: list[dict[str, Any]], ctx: JobContext) -> str:
    target = ctx.artifacts.path("report.parquet")
    concat_parquet([p["report"] for p in parts], target)
    return target


def _sum_counts(parts: list[dict[str, Any]]) -> dict[str, Any]:
    total: Counter[str] = Counter()
    for p in parts:
        total.update(p["summary"])
    return dict(total)


def _notes(report_url: str) -> list[dict[str, str]]:
    report = read_parquet_url(report_url, ["series_id", "notes"])
    noted = report.loc[report["notes"].astype(str) != ""]
    return [
        {"series_id": str(r.series_id), "notes": str(r.notes)}
        for r in noted.head(NOTE_EXAMPLES).itertuples()
    ]


def _roll_up_parts(
    parts: list[dict[str, Any]], spec: ChunkSpec, chunk: int, ctx: JobContext
) -> tuple[list[str], list[int]]:
    partials = pd.concat([read_parquet_url(p["partials"]) for p in parts], ignore_index=True)
    rolled = finish_level(partials, spec)
    del partials
    codes = pd.factorize(rolled["series_id"], sort=True)[0]
    folder = ctx.artifacts.child("prepared")
    urls, counts = [], []
    for i, first in enumerate(range(0, int(codes.max(initial=-1)) + 1, chunk)):
        part = rolled.loc[(codes >= first) & (codes < first + chunk)]
        urls.append(folder.write_parquet(f"{spec.level}-{i:05d}.parquet", part))
        counts.append(int(part["series_id"].nunique()))
    ctx.log(f"rolled {sum(counts)} {spec.level}(s) up from the VMs")
    return urls, counts


def _prepare_result(prepared: PreparedFleetParts) -> dict[str, Any]:
    return {
        "series": prepared.n_series,
        "chunks": len(prepared.parts),
        "freq": prepared.spec.freq,
        "sample_freq": prepared.spec.sample_freq,
        "agg": prepared.spec.agg,
        "level": prepared.spec.level,
        "timestamp_unit": prepared.timestamp_unit,
        "cleaning": prepared.summary,
        "notes_examples": prepared.notes,
    }


# -- models -----------------------------------------------------------------------------------


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


def _train(
    params: TrainParams, prepared: PreparedFleetParts, ctx: JobContext
) -> tuple[Forecaster, Pipeline, str, int]:
    steps = horizon_steps(params.horizon, prepared.spec.freq)
    ctx.progress(0, 1, f"sampling up to {params.train_series:,} series to train on")
    sample = sample_series(prepared.parts, prepared.counts, params.train_series, seed=params.seed)
    n_sample = int(sample["series_id"].nunique())
    ctx.progress(0, 1, f"training {params.model} on {n_sample:,} series")
    forecaster = _forecaster(params, prepared.spec.freq, steps).fit(sample)
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


def _model_summary(forecaster: Forecaster, target: str) -> dict[str, Any]:
    selection = dict(forecaster.selection_)
    summary = {
        "chosen": forecaster.model_,
        "requested": forecaster.model,
        "strategy": selection.get("strategy"),
        "reason": selection.get("reason"),
        "scores": selection.get("scores", {}),
        "metric": "bucket_error" if target == "bucket" and forecaster.model == "auto" else "mase",
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


# -- the kinds --------------------------------------------------------------------------------


@kind(
    "prepare",
    params=PrepareParams,
    description="Clean fleet telemetry onto the forecast grid; report per series what was done.",
)
def run_prepare(params: PrepareParams, ctx: JobContext) -> dict[str, Any]:
    check_request(params)
    prepared = prepare_fleet(params, ctx)
    ctx.progress(0, 1, "writing the prepared series")
    target = ctx.artifacts.path("prepared.parquet")
    rows = concat_parquet(prepared.parts, target)
    out = copy_out(target, params.out) if params.out is not None else None
    ctx.progress(1, 1, "done")
    return {
        **_prepare_result(prepared),
        "rows": rows,
        "artifacts": {"prepared": target, "report": prepared.report},
        "out": out,
    }


@kind("train", params=TrainParams, description="Train a fleet forecaster and save it.")
def run_train(params: TrainParams, ctx: JobContext) -> dict[str, Any]:
    check_request(params)
    prepared = prepare_fleet(params, ctx)
    forecaster, pipeline, model_url, n_sample = _train(params, prepared, ctx)
    ctx.progress(1, 1, "saved")
    return {
        "prepare": _prepare_result(prepared),
        "model": _model_summary(forecaster, params.target),
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
        forecaster, pipeline, model_url, n_sample = _train(params, prepared, ctx)
    results = ctx.map(
        functools.partial(predict_part, model=model_url, out=ctx.artifacts.path("forecast")),
        list(enumerate(prepared.parts)),
        message="chunks forecast",
    )
    ctx.progress(len(results), len(results), "writing the forecast")
    target = ctx.artifacts.path("forecast.parquet")
    rows = concat_parquet(
        [ctx.artifacts.path(f"forecast/part-{r['index']:05d}.parquet") for r in results], target
    )
    models: Counter[str] = Counter()
    for r in results:
        models.update(r["models"])
    out = copy_out(target, params.out) if params.out is not None else None
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
        "model": _model_summary(forecaster, pipeline.target),
        "models_used": dict(models.most_common()),
        "model_from": params.model_from,
        "trained_on_series": n_sample,
        "prepare": _prepare_result(prepared),
        "artifacts": {"forecast": target, "model": model_url, "report": prepared.report},
        "out": out,
    }


@kind(
    "backtest",
    params=BacktestParams,
    description="Rolling-origin backtest of forecast models next to the baselines.",
)
def run_backtest(params: BacktestParams, ctx: JobContext) -> dict[str, Any]:
    check_request(params)
    prepared = prepare_fleet(params, ctx)
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
    return {
        "series": series,
        "windows": params.windows,
        "horizon": params.horizon,
        "horizon_steps": steps,
        "freq": prepared.spec.freq,
        "level": prepared.spec.level,
        "models": params.models,
        "overall": json_safe(overall.to_dict(orient="records")),
        "auto_chose": dict(chosen.most_common()),
        "auto_reasons": [r["reasons"]["auto"][-1] for r in results if r["reasons"].get("auto")][:3],
        "prepare": _prepare_result(prepared),
        "artifacts": {"per_series": target, "report": prepared.report},
    }
