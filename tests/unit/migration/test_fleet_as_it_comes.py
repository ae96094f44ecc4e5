"""The plan path on a real fleet as it comes: a VM with no forecast row (its telemetry started
after the history ended) is listed unplaced with the reason, and ``--evaluate-with`` takes the
next day's raw telemetry (duplicate and off-grid timestamps, a VM with no rows, one that starts
late), cleaned by the forecasting rules, scoring the VMs it covers and naming the others."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from zhuge.errors import DataError
from zhuge.jobs.context import local_context
from zhuge.jobs.migration import PlanMigrationParams, run_plan_migration
from zhuge.jobs.migration.coverage import NO_FORECAST, clean_actual

START = pd.Timestamp("2024-01-15")
VMS = ["a", "b", "c", "d", "late"]


def _forecast() -> pd.DataFrame:
    stamps = pd.date_range(START, periods=24, freq="1h")
    frames = []
    for i, vm in enumerate(VMS[:-1]):  # "late" has no forecast: no history to forecast from
        load = 50 + 30 * np.sin(2 * np.pi * (np.arange(24) - 3 * i) / 24)
        frames.append(pd.DataFrame({"series_id": vm, "timestamp": stamps, "yhat": load}))
    return pd.concat(frames, ignore_index=True)


def _raw_next_day() -> pd.DataFrame:
    """5-minute telemetry of the planned day, as collectors write it."""
    rng = np.random.default_rng(0)
    frames = []
    for i, vm in enumerate(["a", "b", "c", "late"]):  # "d" has no rows at all
        stamps = pd.date_range(START, periods=288, freq="5min")
        if vm == "late":
            stamps = stamps[150:]  # started mid-day: misses part of the planning period
        jitter = pd.to_timedelta(rng.integers(-90, 90, len(stamps)), unit="s")  # off the grid
        hours = (stamps - START) / pd.Timedelta("1h")
        load = 50 + 30 * np.sin(2 * np.pi * (hours - 3 * i) / 24)
        frames.append(pd.DataFrame({"series_id": vm, "timestamp": stamps + jitter, "value": load}))
    raw = pd.concat(frames, ignore_index=True)
    return pd.concat([raw, raw.iloc[::7]], ignore_index=True)  # duplicate rows


@pytest.fixture
def files(tmp_path):
    vms = pd.DataFrame(
        {
            "vm_id": VMS,
            "host_id": ["h1", "h1", "h2", "h2", "h3"],
            "cluster_id": "c1",
            "memory_gb": 8.0,
        }
    )
    paths = {name: tmp_path / f"{name}.parquet" for name in ("vms", "forecast", "actual")}
    vms.to_parquet(paths["vms"])
    _forecast().to_parquet(paths["forecast"])
    _raw_next_day().to_parquet(paths["actual"])
    return paths


def _params(files, **changes) -> PlanMigrationParams:
    base = {
        "forecast": str(files["forecast"]),
        "vms": str(files["vms"]),
        "window": "30min",
        "deadline": "24h",
        "max_per_host": 2,
        "actual": str(files["actual"]),
        "missing_forecast": "unplaced",
    }
    return PlanMigrationParams(**{**base, **changes})


def test_every_vm_is_planned_or_unplaced_with_its_reason_and_raw_actuals_are_cleaned(
    files, tmp_path
):
    ctx = local_context(1, artifacts_url=(tmp_path / "artifacts").as_uri())
    result = run_plan_migration(_params(files), ctx)

    plan = ctx.artifacts.read_parquet("plan.parquet")
    assert sorted(plan["vm_id"]) == sorted(VMS)
    late = plan.set_index("vm_id").loc["late"]
    assert pd.isna(late["start"]) and late["reason"] == NO_FORECAST
    assert plan.set_index("vm_id").loc[["a", "b", "c", "d"], "start"].notna().all()
    summary = result["summary"]
    assert (summary["vms"], summary["placed"], summary["unplaced"]) == (5, 4, 1)
    assert summary["unplaced_by_reason"] == {"no-forecast": 1}

    evaluation = result["evaluation"]
    assert evaluation["evaluated_vms"] == 3  # a, b, c; d has no rows; late has no forecast
    assert evaluation["left_out"]["by_reason"] == {"no actual rows": 1}
    table = {row["plan"]: row for row in evaluation["table"]}
    assert table["plan"]["placed"] == 3
    # the forecast is the truth's shape: the plan realises the oracle's load
    assert table["plan"]["mean_load"] == pytest.approx(table["oracle"]["mean_load"], abs=3.0)
    assert table["plan"]["mean_load"] < table["earliest"]["mean_load"]


def test_a_vm_without_a_forecast_is_still_an_error_when_asked(files, tmp_path):
    ctx = local_context(1, artifacts_url=(tmp_path / "artifacts").as_uri())
    with pytest.raises(DataError, match="'late' have no rows in the forecast"):
        run_plan_migration(_params(files, missing_forecast="error"), ctx)


def test_raw_telemetry_is_cleaned_onto_the_forecast_grid():
    cleaned = clean_actual(_raw_next_day(), pd.Timedelta("1h"))
    assert not cleaned.duplicated(["series_id", "timestamp"]).any()
    assert (cleaned["timestamp"] == cleaned["timestamp"].dt.floor("1h")).all()
    assert cleaned.groupby("series_id").size().to_dict() == {"a": 24, "b": 24, "c": 24, "late": 12}
