"""Parameters of the forecast job kinds: where the telemetry comes from, how it is prepared, and
what is forecast."""

from __future__ import annotations

import math
import re
from typing import Annotated, Any, Literal

import pandas as pd
from pydantic import BeforeValidator, Field, field_validator, model_validator

from zhuge.data.sources import (
    TimestampUnit,
    parse_column_map,
)
from zhuge.errors import DataError, InvalidRequest
from zhuge.jobs.inputs import ConnectionName, DataRef, JobRef, ModelRef
from zhuge.jobs.kinds import KindParams
from zhuge.ml.forecast import DEFAULT_EDGES, MODEL_NAMES
from zhuge.ml.forecast.chunked import (
    Pipeline,
)

_FREQ_UNITS = {  # seconds per unit, in the spellings pandas and people use (case-insensitive)
    **dict.fromkeys(("s", "sec", "secs", "second", "seconds"), 1),
    **dict.fromkeys(("t", "m", "min", "mins", "minute", "minutes"), 60),
    **dict.fromkeys(("h", "hr", "hrs", "hour", "hours"), 3600),
}
_FREQ_NAMES = {300: "5min", 1800: "30min", 3600: "1h"}


def _freq_alias(value: Any) -> Any:
    """``60min``, ``1H``, ``1 hour``, ``5T``, ``300s`` → the grid's own spelling (``1h``,
    ``5min``); anything else is left for the Literal to refuse."""
    match = re.fullmatch(r"\s*(\d*)\s*([a-zA-Z]+)\s*", value) if isinstance(value, str) else None
    if match and match[2].lower() in _FREQ_UNITS:
        seconds = int(match[1] or 1) * _FREQ_UNITS[match[2].lower()]
        return _FREQ_NAMES.get(seconds, value)
    return value


Freq = Annotated[Literal["5min", "30min", "1h"], BeforeValidator(_freq_alias)]
Agg = Literal["mean", "max", "p95"]
Level = Literal["vm", "host", "cluster"]
# Series per chunk. Each worker cleans one chunk at a time, so peak memory is about two chunks'
# cleaning temporaries (two workers) plus the platform: 2,000 series x 14 days of 5-min samples
# peaked at 4.18 GB for the whole process tree at 100k VMs, over the 4 GB goal; 1,000 halves the
# chunks' share (not yet re-measured).
CHUNK_SERIES = 1000
TRAIN_SERIES = 2000  # series the model is trained on (the GBM's own sample size)


def _value_error(check: Any, value: Any) -> Any:
    try:
        return check(value)
    except InvalidRequest as exc:
        raise ValueError(exc.message) from exc


class FleetInput(KindParams):
    """Where the telemetry comes from and how it becomes series on the forecast grid."""

    input: DataRef | None = Field(
        None,
        description="CSV or Parquet of series_id, timestamp, value: dataset://NAME, "
        "connection://NAME/KEY or a path under your allowed roots.",
    )
    sql: str | None = Field(
        None, description="One SQL query giving those columns, run read-only on connection."
    )
    connection: ConnectionName | None = Field(
        None, description="The SQL connection sql runs on (zhuge connections ls)."
    )
    columns: dict[str, str] = Field(
        default_factory=dict,
        description="Canonical name -> name in the input, e.g. 'series_id=vm,value=cpu'.",
    )
    timestamp_unit: TimestampUnit = Field(
        "auto", description="iso, or epoch s/ms/us/ns; auto detects it and reports what it chose."
    )
    vms: DataRef | None = Field(
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
            raise ValueError("give exactly one of input (data) or sql (with a connection)")
        if self.sql is not None and not self.connection:
            raise ValueError("sql needs connection, the SQL connection to run it on")
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


DECISION_SERIES = 2000  # VMs a decision backtest (or a selection by decision) plans on


class DecisionChoice(KindParams):
    """The migration plan request forecasts are judged by (``decision="migration"`` on a
    backtest, ``select_by="decision"``)."""

    select_by: Literal["mase", "decision"] = Field(
        "mase",
        description="How auto chooses its model: by point error (mase), or by the share of the "
        "perfect forecast's gain its migration plans capture under the limits below (decision; "
        "needs vms with memory_gb).",
    )
    window: str = Field("30min", description="Migration window length (with decision).")
    max_per_host: int = Field(1, ge=1, description="Concurrent migrations leaving one host.")
    max_per_cluster: int | None = Field(
        8, ge=0, description="Concurrent migrations in one cluster; 0 or null: no limit."
    )
    bandwidth_gbps: float | None = Field(
        100.0, ge=0, description="Gbit/s shared by all concurrent migrations; 0 or null: no limit."
    )
    blackouts: list[str] = Field(
        default_factory=list, description="Daily no-migration ranges such as '08:00-10:00'."
    )

    @field_validator("max_per_cluster", "bandwidth_gbps")
    @classmethod
    def _zero_is_no_limit(cls, value: float | None) -> float | None:
        return None if value == 0 else value

    decision_series: int = Field(
        DECISION_SERIES, ge=1, description="Plan on a random sample of at most this many VMs."
    )

    @field_validator("window")
    @classmethod
    def _window(cls, value: str) -> str:
        from zhuge.migration import PlanConstraints

        return _value_error(lambda v: PlanConstraints(window=v) and v, value)

    @field_validator("blackouts")
    @classmethod
    def _blackouts(cls, value: list[str]) -> list[str]:
        from zhuge.migration.constraints import parse_blackout

        for text in value:
            _value_error(parse_blackout, text)
        return value

    @model_validator(mode="after")
    def _needs_vms(self) -> DecisionChoice:
        if getattr(self, "decision", None) is not None or self.select_by == "decision":
            if getattr(self, "vms", None) is None:
                raise ValueError(
                    "judging forecasts by migration plans (--decision migration, --select-by "
                    "decision) needs the VM table they are for: give --vms (vms)"
                )
            if getattr(self, "level", "vm") not in (None, "vm"):
                raise ValueError("judging forecasts by migration plans needs level vm")
        return self


class PrepareParams(FleetInput):
    """The prepared series are the job's ``prepared.parquet`` artifact."""


class TrainParams(FleetInput, ModelChoice, DecisionChoice):
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
    model_from: JobRef | ModelRef | None = Field(
        None,
        description="Reuse a model: the id of a train/forecast job of your tenant, or a "
        "registered version, NAME@ALIAS or NAME@VERSION (resolved when the job starts).",
    )
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


class BacktestParams(FleetInput, ModelChoice, DecisionChoice):
    windows: int = Field(3, ge=1, le=50, description="Rolling origins, one horizon apart.")
    decision: Literal["migration"] | None = Field(
        None,
        description="migration: also score each model by the migration plans its forecasts "
        "induce under the plan limits (needs vms with memory_gb).",
    )
    models: list[str] = Field(
        default_factory=lambda: ["auto"],
        description="Models to score; the baselines are always scored beside them.",
    )
    quantiles: list[float] = Field(
        default_factory=lambda: [0.1, 0.9], description="Interval whose coverage is reported."
    )
    model_from: JobRef | ModelRef | None = Field(
        None,
        description="Also score a saved model, frozen (not refitted): the id of a train/forecast "
        "job of your tenant, or a registered version, NAME@ALIAS or NAME@VERSION (resolved when "
        "the job starts). Its grid, horizon, statistic, level and target are used.",
    )

    @field_validator("models")
    @classmethod
    def _models(cls, value: list[str]) -> list[str]:
        for name in value:
            _check_model(name)
        return list(dict.fromkeys(value))

    @model_validator(mode="after")
    def _something_to_score(self) -> BacktestParams:
        if not self.models and self.model_from is None:
            raise ValueError("give at least one model (models), or a saved one (model_from)")
        if self.model_from is not None and self.decision is not None:
            raise ValueError(
                "decision=migration scores models trained in each window; it does not take "
                "model_from yet"
            )
        return self
