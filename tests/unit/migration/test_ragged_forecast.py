"""Forecasts whose series end at different times (telemetry that stopped early), as the
forecasting engine writes them: planning starts at the freshest forecast, and a VM with no
forecast from there is reported, not planned in the past."""

from __future__ import annotations

import pandas as pd
import pytest

from zhuge.errors import DataError
from zhuge.migration import PlanConstraints, evaluate_plan, plan_migrations
from zhuge.migration.validation import freshest_start

STEP = pd.Timedelta("1h")
NOW = pd.Timestamp("2024-01-15 00:00")


def _series(vm: str, start: pd.Timestamp, values: list[float]) -> pd.DataFrame:
    stamps = pd.date_range(start, periods=len(values), freq=STEP)
    return pd.DataFrame({"series_id": vm, "timestamp": stamps, "yhat": values})


def _vms(ids: list[str]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "vm_id": ids,
            "host_id": [f"h{i}" for i in range(len(ids))],
            "cluster_id": "c",
            "memory_gb": 8.0,
        }
    )


def test_stale_vm_is_reported_and_the_rest_planned_from_now():
    forecast = pd.concat(
        [
            _series("fresh", NOW, [50, 40, 5, 60, 70, 80]),
            _series("late-start", NOW + 2 * STEP, [30, 2, 40, 50]),  # starts later, same end
            _series("stale", NOW - 3 * 24 * STEP, [1.0] * 6),  # telemetry stopped 3 days ago
        ]
    )
    plan, summary = plan_migrations(forecast, _vms(["fresh", "late-start", "stale"]))
    rows = plan.set_index("vm_id")
    # the job's relative --deadline counts from the same "now" the planner starts at
    assert freshest_start(forecast) == NOW + 2 * STEP == plan["start"].min()
    assert rows.at["fresh", "start"] == NOW + 2 * STEP  # its quietest hour, from now on
    assert rows.at["late-start", "start"] == NOW + 3 * STEP  # only windows it has a forecast for
    assert pd.isna(rows.at["stale", "start"])
    assert "no forecast in the planning period" in rows.at["stale", "reason"]
    assert summary["unplaced_by_reason"] == {"no-forecast": 1}


def test_a_hole_inside_one_vm_forecast_is_still_an_error():
    forecast = _series("a", NOW, [10, 20, 30, 40]).drop(index=1)
    with pytest.raises(DataError, match=r"misses timestamps .* for series 'a'"):
        plan_migrations(forecast, _vms(["a"]))


def test_the_actual_load_must_cover_every_vm_and_window():
    forecast = pd.concat([_series("a", NOW, [10, 20, 30, 40]), _series("b", NOW, [9, 8, 7, 6])])
    plan, _ = plan_migrations(forecast, _vms(["a", "b"]), PlanConstraints(window=STEP))
    actual = pd.concat([_series("a", NOW, [10, 20, 30, 40]), _series("b", NOW, [9, 8, 7])])
    with pytest.raises(DataError, match=r"actual misses timestamps .* for series 'b'"):
        evaluate_plan(plan, actual, _vms(["a", "b"]))
