"""``risk``: plan on an upper quantile of the load forecast, so a window that is quiet on
average but may well be busy loses to a slightly busier window that is surely so (MILP and
greedy alike)."""

from __future__ import annotations

import pandas as pd
import pytest

from zhuge.errors import DataError
from zhuge.jobs.context import local_context
from zhuge.jobs.migration import PlanMigrationParams, run_plan_migration

START = pd.Timestamp("2024-01-15")


@pytest.fixture
def files(tmp_path):
    stamps = pd.date_range(START, periods=4, freq="1h")
    forecast = pd.DataFrame(
        {
            "series_id": "a",
            "timestamp": stamps,
            # hour 1: quiet on average, but its 90th percentile is busy; hour 2: surely calm
            "yhat": [90.0, 20.0, 30.0, 90.0],
            "yhat_q10": [85.0, 5.0, 28.0, 85.0],
            "yhat_q90": [95.0, 80.0, 32.0, 95.0],
        }
    )
    vms = pd.DataFrame({"vm_id": ["a"], "host_id": ["h"], "cluster_id": ["c"], "memory_gb": 64.0})
    paths = {"forecast": tmp_path / "f.parquet", "vms": tmp_path / "v.parquet"}
    forecast.to_parquet(paths["forecast"])
    vms.to_parquet(paths["vms"])
    return paths


def _start(files, tmp_path, **changes) -> pd.Timestamp:
    params = PlanMigrationParams(
        forecast=str(files["forecast"]), vms=str(files["vms"]), window="1h", **changes
    )
    ctx = local_context(1, artifacts_url=(tmp_path / "out").as_uri())
    run_plan_migration(params, ctx)
    return ctx.artifacts.read_parquet("plan.parquet")["start"].iloc[0]


@pytest.mark.parametrize("method", ["greedy", "milp"])
def test_risk_steers_away_from_a_window_that_may_be_busy(files, tmp_path, method):
    assert _start(files, tmp_path, method=method) == START + pd.Timedelta("1h")
    # 0.8 lies between yhat (the median) and yhat_q90: 20 + 0.75 * 60 = 65 against 29.5
    assert _start(files, tmp_path, method=method, risk=0.8) == START + pd.Timedelta("2h")
    assert _start(files, tmp_path, method=method, risk=0.9) == START + pd.Timedelta("2h")


def test_risk_needs_quantiles_around_it(files, tmp_path):
    with pytest.raises(DataError, match=r"--risk 0\.95 needs the forecast.s quantile columns"):
        _start(files, tmp_path, risk=0.95)
