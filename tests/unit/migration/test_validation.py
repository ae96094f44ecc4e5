"""Bad input fails with a clear message before anything is planned."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from zhuge.errors import DataError, InvalidRequest
from zhuge.migration import PlanConstraints, plan_migrations

from .conftest import make_forecast


def _fleet() -> tuple[pd.DataFrame, pd.DataFrame]:
    forecast = make_forecast({"a": [10, 20, 30, 40], "b": [40, 30, 20, 10]})
    vms = pd.DataFrame(
        {
            "vm_id": ["a", "b"],
            "host_id": ["h1", "h2"],
            "cluster_id": ["c", "c"],
            "memory_gb": [8.0, 4.0],
        }
    )
    return forecast, vms


def test_vm_missing_from_forecast() -> None:
    forecast, vms = _fleet()
    vms = pd.concat([vms, vms.iloc[[0]].assign(vm_id="ghost")], ignore_index=True)
    with pytest.raises(DataError, match=r"VM\(s\) 'ghost' have no rows in the forecast"):
        plan_migrations(forecast, vms)


def test_unknown_host() -> None:
    forecast, vms = _fleet()
    hosts = pd.DataFrame({"host_id": ["h1"], "cluster_id": ["c"]})
    with pytest.raises(DataError, match=r"unknown host\(s\) 'h2' \(VM\(s\) 'b'\)"):
        plan_migrations(forecast, vms, hosts=hosts)


def test_vm_without_host() -> None:
    forecast, vms = _fleet()
    vms.loc[1, "host_id"] = None
    with pytest.raises(DataError, match=r"no host_id for VM\(s\) 'b'"):
        plan_migrations(forecast, vms)


def test_host_in_another_cluster() -> None:
    forecast, vms = _fleet()
    hosts = pd.DataFrame({"host_id": ["h1", "h2"], "cluster_id": ["c", "other"]})
    with pytest.raises(DataError, match="not their host's cluster"):
        plan_migrations(forecast, vms, hosts=hosts)


def test_deadline_shorter_than_one_window() -> None:
    forecast, vms = _fleet()
    constraints = PlanConstraints(window="1h", deadline=pd.Timestamp("2024-01-01 00:30"))
    with pytest.raises(InvalidRequest, match="less than one window"):
        plan_migrations(forecast, vms, constraints)


@pytest.mark.parametrize("memory", [-4.0, 0.0, np.nan])
def test_non_positive_memory(memory: float) -> None:
    forecast, vms = _fleet()
    vms.loc[0, "memory_gb"] = memory
    with pytest.raises(
        DataError, match=r"memory_gb must be a positive number; it is not for VM\(s\) 'a'"
    ):
        plan_migrations(forecast, vms)


def test_duplicate_vm_ids() -> None:
    forecast, vms = _fleet()
    vms.loc[1, "vm_id"] = "a"
    with pytest.raises(DataError, match=r"duplicate vm_id\(s\): 'a'"):
        plan_migrations(forecast, vms)


def test_missing_columns_are_named() -> None:
    forecast, vms = _fleet()
    with pytest.raises(DataError, match=r"vms lacks column\(s\) \['memory_gb'\]"):
        plan_migrations(forecast, vms.drop(columns="memory_gb"))
    with pytest.raises(DataError, match=r"forecast lacks column\(s\) \['yhat'\]"):
        plan_migrations(forecast.rename(columns={"yhat": "value"}), vms)


def test_gaps_duplicates_and_nans_in_forecast() -> None:
    forecast, vms = _fleet()
    with pytest.raises(DataError, match=r"misses timestamps .* for series 'b'"):
        plan_migrations(forecast.drop(index=5), vms)
    with pytest.raises(DataError, match="duplicate timestamps for series 'a'"):
        plan_migrations(pd.concat([forecast, forecast.iloc[[1]]]), vms)
    nan = forecast.copy()
    nan.loc[2, "yhat"] = np.nan
    with pytest.raises(DataError, match="missing values for series 'a'"):
        plan_migrations(nan, vms)


def test_irregular_grid() -> None:
    forecast, vms = _fleet()
    forecast.loc[forecast["timestamp"] == pd.Timestamp("2024-01-01 03:00"), "timestamp"] = (
        pd.Timestamp("2024-01-01 03:20")
    )
    with pytest.raises(DataError, match="regular grid"):
        plan_migrations(forecast, vms)


def test_negative_dirty_rate_coefficient() -> None:
    forecast, vms = _fleet()
    with pytest.raises(DataError, match="dirty_rate_coeff must be >= 0"):
        plan_migrations(forecast, vms.assign(dirty_rate_coeff=[1.0, -1.0]))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"blackouts": ("8-10",)}, "not a time-of-day range"),
        ({"blackouts": ("25:00-26:00",)}, "out of range"),
        ({"window": "0min"}, "window must be positive"),
        ({"window": "soon"}, "not a duration"),
        ({"max_per_host": 0}, "max_per_host"),
        ({"bandwidth_gbps": -1.0}, "bandwidth_gbps"),
    ],
)
def test_bad_constraints(kwargs: dict, message: str) -> None:
    with pytest.raises(InvalidRequest, match=message):
        PlanConstraints(**kwargs)


def test_link_faster_than_shared_budget() -> None:
    forecast, vms = _fleet()
    with pytest.raises(InvalidRequest, match="nothing could ever run"):
        plan_migrations(forecast, vms, PlanConstraints(bandwidth_gbps=5.0))


def test_timezone_mismatch() -> None:
    forecast, vms = _fleet()
    constraints = PlanConstraints(deadline=pd.Timestamp("2024-01-01 03:00", tz="UTC"))
    with pytest.raises(InvalidRequest, match="time zone"):
        plan_migrations(forecast, vms, constraints)


def test_inputs_are_not_modified() -> None:
    forecast, vms = _fleet()
    before = (forecast.copy(), vms.copy())
    plan_migrations(forecast, vms)
    pd.testing.assert_frame_equal(forecast, before[0])
    pd.testing.assert_frame_equal(vms, before[1])
