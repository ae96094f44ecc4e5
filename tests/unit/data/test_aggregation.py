"""Time aggregation (mean, max, p95) and VM -> host -> cluster roll-up."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from zhuge.data import aggregate, resample_series, roll_up
from zhuge.errors import DataError

T0 = pd.Timestamp("2024-01-01")


def _fleet() -> tuple[pd.DataFrame, pd.DataFrame]:
    ts = T0 + pd.to_timedelta(np.arange(24) * 5, unit="min")  # two hours at 5 min
    frame = pd.DataFrame(
        {
            "series_id": np.repeat(["small", "big", "other"], 24),
            "timestamp": np.tile(ts, 3),
            "value": np.r_[np.full(24, 100.0), np.full(24, 10.0), np.arange(24.0)],
        }
    )
    vms = pd.DataFrame(
        {
            "vm_id": ["small", "big", "other"],
            "host_id": ["h1", "h1", "h2"],
            "cluster_id": ["c1", "c1", "c1"],
            "vcpus": [1, 9, 2],
        }
    )
    return frame, vms


def test_hourly_mean_max_p95_per_vm():
    frame, _ = _fleet()
    out = resample_series(frame, "1h", ["mean", "max", "p95"])
    other = out[out.series_id == "other"].reset_index(drop=True)
    assert other["timestamp"].tolist() == [T0, T0 + pd.Timedelta("1h")]
    assert other["mean"].tolist() == [5.5, 17.5]
    assert other["max"].tolist() == [11.0, 23.0]
    assert other["p95"].tolist() == pytest.approx(
        [np.percentile(np.arange(12.0), 95), np.percentile(np.arange(12.0, 24.0), 95)]
    )
    single = resample_series(frame, "1h", "max")
    assert list(single.columns) == ["series_id", "timestamp", "value"]


def test_host_load_is_vcpu_weighted_mean():
    frame, vms = _fleet()
    host = roll_up(frame, "host", vms=vms)
    h1 = host[host.series_id == "h1"]
    # 1 vCPU at 100 % + 9 vCPUs at 10 % = 19 % of the host's placed vCPUs busy
    assert h1["value"].to_numpy() == pytest.approx(np.full(24, 19.0))
    assert (h1["n_series"] == 2).all()
    busy = roll_up(frame, "host", vms=vms, how="sum")
    assert busy[busy.series_id == "h1"]["value"].iloc[0] == pytest.approx(1.0 + 0.9)


def test_missing_vm_reading_does_not_look_idle():
    frame, vms = _fleet()
    frame.loc[(frame.series_id == "big") & (frame.timestamp == T0), "value"] = np.nan
    host = roll_up(frame, "host", vms=vms)
    first = host[(host.series_id == "h1") & (host.timestamp == T0)].iloc[0]
    assert (first["value"], first["n_series"]) == (100.0, 1)


def test_cluster_hourly_p95_is_taken_after_roll_up():
    frame, vms = _fleet()
    out = aggregate(frame, freq="1h", stat="p95", level="cluster", vms=vms)
    cluster_load = (1 * 100 + 9 * 10 + 2 * np.arange(12.0)) / 12
    assert out["series_id"].unique().tolist() == ["c1"]
    assert out["value"].iloc[0] == pytest.approx(np.percentile(cluster_load, 95))


def test_unweighted_when_no_vcpus_and_placement_from_columns():
    frame, vms = _fleet()
    frame = frame.merge(vms[["vm_id", "host_id"]], left_on="series_id", right_on="vm_id")
    host = roll_up(frame.drop(columns="vm_id"), "host")
    assert host[host.series_id == "h1"]["value"].iloc[0] == pytest.approx(55.0)


def test_roll_up_refuses_unknown_vms_and_missing_placement():
    frame, vms = _fleet()
    with pytest.raises(DataError, match=r"1 series have no host_id.*'other'"):
        roll_up(frame, "host", vms=vms[vms.vm_id != "other"])
    with pytest.raises(DataError, match="needs 'host_id'"):
        roll_up(frame, "host")
    with pytest.raises(DataError, match="unknown statistic"):
        resample_series(frame, "1h", "p42x")
    with pytest.raises(DataError, match="level must be"):
        roll_up(frame, "rack", vms=vms)  # type: ignore[arg-type]
