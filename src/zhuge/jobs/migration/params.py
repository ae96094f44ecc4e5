"""Parameters of the migration job kinds."""

from __future__ import annotations

import re
from typing import Any, Literal

import pandas as pd
from pydantic import Field, field_validator

from zhuge.errors import InvalidRequest
from zhuge.jobs.inputs import DataRef, JobOrDataRef
from zhuge.jobs.kinds import KindParams
from zhuge.migration import (
    PlanConstraints,
)
from zhuge.migration.constraints import parse_blackout

PARTITION_VMS = 20_000  # VMs per partition; below this the fleet is planned as one problem


def _as_value_error(check: Any, value: Any) -> Any:
    """Run a library check inside a pydantic validator: its InvalidRequest becomes a field error."""
    try:
        check(value)
    except InvalidRequest as exc:
        raise ValueError(exc.message) from exc
    return value


class PlanMigrationParams(KindParams):
    forecast: JobOrDataRef = Field(
        description="A forecast job of your tenant (its id), or Parquet data: series_id, "
        "timestamp, yhat (CPU %)."
    )
    vms: DataRef = Field(
        description="Parquet: vm_id, host_id, cluster_id, memory_gb "
        "(+ optional dirty_rate_coeff, priority, must_move_by)."
    )
    vm_list: DataRef | None = Field(None, description="Text file of vm_ids to plan, one per line.")
    hosts: DataRef | None = Field(
        None, description="Parquet: host_id, cluster_id (+ max_migrations); unknown hosts fail."
    )
    window: str = Field("30min", description="Window length: every migration starts on one.")
    deadline: str | None = Field(
        None,
        description="Everything must end by then: a duration after the planning start ('24h') "
        "or a timestamp. Default: the end of the forecast.",
    )
    not_before: str | None = Field(None, description="Planning start (default: forecast start).")
    max_per_host: int = Field(1, ge=1, description="Concurrent migrations leaving one host.")
    max_per_cluster: int | None = Field(
        8, ge=1, description="Concurrent migrations in one cluster; null: no limit."
    )
    bandwidth_gbps: float | None = Field(
        100.0, gt=0, description="Gbit/s shared by all concurrent migrations; null: no limit."
    )
    link_gbps: float | None = Field(
        None, gt=0, description="Gbit/s one migration takes (default: calibration's, else 10)."
    )
    blackouts: list[str] = Field(
        default_factory=list, description="Daily no-migration ranges such as '08:00-10:00'."
    )
    method: Literal["auto", "greedy", "milp"] = "auto"
    calibration: JobOrDataRef | None = Field(
        None,
        description="A calibrate-migration job of your tenant (its id), or a calibration's "
        "JSON file or saved folder.",
    )
    actual: DataRef | None = Field(
        None, description="Parquet of the load that really happened, to evaluate the plan."
    )
    partition_vms: int = Field(
        PARTITION_VMS, ge=1, description="Plan clusters in partitions of about this many VMs."
    )
    risk: float | None = Field(
        None,
        gt=0,
        lt=1,
        description="Plan on this quantile of the load forecast (0.8: minimise the 80th "
        "percentile of downtime, which grows with load); needs the forecast's quantile columns "
        "(yhat_q80, or ones around it to interpolate, yhat counting as the median).",
    )
    missing_forecast: Literal["error", "unplaced"] = Field(
        "error",
        description="A VM with no rows in the forecast: an error ('error'), or listed unplaced "
        "with the reason ('unplaced', as `plan-migrations --input` asks: a VM whose telemetry "
        "starts after the history ends has nothing to forecast from).",
    )

    @field_validator("window")
    @classmethod
    def _window(cls, value: str) -> str:
        return _as_value_error(lambda v: PlanConstraints(window=v), value)

    @field_validator("blackouts")
    @classmethod
    def _blackouts(cls, value: list[str]) -> list[str]:
        for text in value:
            _as_value_error(parse_blackout, text)
        return value

    @field_validator("deadline", "not_before")
    @classmethod
    def _when(cls, value: str | None) -> str | None:
        if value is not None:
            _as_value_error(parse_when, value)
        return value


class CalibrateMigrationParams(KindParams):
    history: DataRef | None = Field(
        None,
        description="CSV or Parquet of past migrations: vm_id, start, memory_gb, observed_load, "
        "downtime_ms, total_s. None: the documented defaults.",
    )
    min_migrations: int = Field(3, ge=1, description="Past migrations a VM needs for its own fit.")
    link_gbps: float = Field(10.0, gt=0, description="Link rate the history was measured at.")


def parse_when(text: str) -> pd.Timedelta | pd.Timestamp:
    """'24h' → a duration; '2024-01-02 06:00' → a timestamp."""
    text = str(text).strip()
    if re.fullmatch(r"[+-]?\d+(\.\d+)?\s*[a-zA-Z]+(\s*\d+(\.\d+)?\s*[a-zA-Z]+)*", text):
        try:
            return pd.Timedelta(text)
        except ValueError:
            pass
    try:
        stamp = pd.Timestamp(text)
    except ValueError as exc:
        raise InvalidRequest(
            f"{text!r} is neither a duration such as '24h' nor a timestamp such as "
            "'2024-01-02 06:00'"
        ) from exc
    if stamp is pd.NaT:
        raise InvalidRequest(f"{text!r} is not a timestamp")
    return stamp
