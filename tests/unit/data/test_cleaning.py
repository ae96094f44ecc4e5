"""Cleaning rules, one messy-data case each, with exact counts; then real NAB series."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from zhuge.data import REPORT_COLUMNS, CleaningRules, clean_fleet, read_telemetry
from zhuge.errors import DataError

T0 = pd.Timestamp("2024-01-01 00:00:00")
FIVE = pd.Timedelta("5min")


def _series(sid: str, values, *, start=T0, step=FIVE, offset="0min") -> pd.DataFrame:
    values = np.asarray(values, dtype=float)
    ts = start + pd.Timedelta(offset) + np.arange(len(values)) * step
    return pd.DataFrame({"series_id": sid, "timestamp": ts, "value": values})


def _report(prepared, sid):
    return prepared.report.set_index("series_id").loc[sid]


def test_off_grid_timestamps_snap_to_nearest_step():
    # NAB-style: samples at :27, :32, :37 -> :25, :30, :35; :29 -> :30
    frame = pd.concat(
        [
            _series("a", [10, 11, 12], offset="2min"),
            _series("b", [20, 21, 22], offset="4min"),
        ]
    )
    prepared = clean_fleet(frame, CleaningRules(min_points=1))
    a = prepared.frame[prepared.frame.series_id == "a"]
    assert a["timestamp"].tolist() == [T0, T0 + FIVE, T0 + 2 * FIVE]
    b = prepared.frame[prepared.frame.series_id == "b"]
    assert b["timestamp"].iloc[0] == T0 + FIVE
    assert _report(prepared, "a")["snapped"] == 3
    floor = clean_fleet(frame, CleaningRules(min_points=1, align="floor"))
    assert floor.frame[floor.frame.series_id == "b"]["timestamp"].iloc[0] == T0


def test_exact_duplicates_dropped_and_shared_slots_averaged():
    frame = _series("vm", [10, 20, 30, 40, 50, 60])
    retried = frame.iloc[[1, 1, 4]]  # an exporter retried row 1 twice and row 4 once
    conflicting = pd.DataFrame(
        {"series_id": ["vm"], "timestamp": [T0 + 2 * FIVE + pd.Timedelta("1min")], "value": [36.0]}
    )
    prepared = clean_fleet(pd.concat([frame, retried, conflicting]), CleaningRules(min_points=1))
    report = _report(prepared, "vm")
    assert report["rows_in"] == 10
    assert report["rows_dropped_duplicates"] == 3
    assert report["duplicate_timestamps"] == 1  # 30 and 36 share the 00:10 slot
    assert prepared.frame["value"].tolist() == [10, 20, 33, 40, 50, 60]
    assert not prepared.frame["timestamp"].duplicated().any()


def test_values_clipped_to_cpu_range_and_counted():
    prepared = clean_fleet(
        _series("vm", [50, 130.5, -2, 99, 100, 0, 101]), CleaningRules(min_points=1)
    )
    assert _report(prepared, "vm")["clipped"] == 3
    assert prepared.frame["value"].tolist() == [50, 100, 0, 99, 100, 0, 100]
    unbounded = clean_fleet(_series("vm", [5e8, -1]), CleaningRules(min_points=1, clip=None))
    assert unbounded.report["clipped"].iloc[0] == 0
    assert unbounded.frame["value"].tolist() == [5e8, -1]


def test_clipping_happens_before_averaging_a_slot():
    frame = pd.DataFrame(
        {"series_id": "vm", "timestamp": [T0, T0 + pd.Timedelta("1min")], "value": [250.0, 80.0]}
    )
    prepared = clean_fleet(frame, CleaningRules(min_points=1))
    assert prepared.frame["value"].tolist() == [90.0]  # mean(100, 80), not mean(250, 80)


def test_short_gaps_interpolated_long_gaps_left_empty():
    values = np.arange(40, dtype=float)
    frame = _series("vm", values)
    missing = [5, 6, *range(20, 30)]  # a 2-step gap and a 10-step gap
    prepared = clean_fleet(frame.drop(index=missing), CleaningRules(min_points=1, max_gap_fill=3))
    report = _report(prepared, "vm")
    assert (report["points"], report["observed"]) == (40, 28)
    assert (report["gaps_filled"], report["steps_filled"]) == (1, 2)
    assert (report["long_gaps"], report["long_gap_steps"]) == (1, 10)
    out = prepared.frame
    assert out["value"].iloc[5:7].tolist() == [5.0, 6.0]  # linear between 4 and 7
    assert out["filled"].sum() == 2 and out["filled"].iloc[5:7].all()
    assert out["value"].iloc[20:30].isna().all()
    assert (out["timestamp"].diff().dropna() == FIVE).all()


def test_missing_values_are_gaps_too():
    frame = _series("vm", [1, np.nan, 3, 4])
    prepared = clean_fleet(frame, CleaningRules(min_points=1))
    report = _report(prepared, "vm")
    assert (report["missing_values"], report["steps_filled"]) == (1, 1)
    assert prepared.frame["value"].tolist() == [1, 2, 3, 4]


def test_flat_short_late_and_early_series_are_flagged():
    day = 288
    frame = pd.concat(
        [
            _series("busy", 20 + 10 * np.sin(np.arange(3 * day) / 40)),
            _series("stuck", np.full(3 * day, 12.5)),
            _series(
                "new", np.full(100, 30.0) + np.arange(100) % 3, start=T0 + (3 * day - 100) * FIVE
            ),
            _series("gone", 40 + np.arange(2 * day) % 7),
        ]
    )
    prepared = clean_fleet(frame)  # min_points defaults to two days: 576 at 5 min
    report = prepared.report.set_index("series_id")
    assert report["flat"].to_dict() == {"busy": False, "gone": False, "new": False, "stuck": True}
    assert report.index[report["too_short"]].tolist() == ["new"]
    assert report.index[report["starts_late"]].tolist() == ["new"]
    assert report.index[report["stops_early"]].tolist() == ["gone"]
    assert "too short (100 < 576 points)" in report.loc["new", "notes"]
    assert set(prepared.series_flagged("flat")) == {"stuck"}
    assert prepared.summary()["too_short"] == 1


def _hourly(sid, days, rng, *, shift_at=None, shift=0.0, weekend_dip=0.0):
    t = np.arange(days * 24)
    value = 30 + 12 * np.sin(2 * np.pi * t / 24) + rng.normal(0, 2, len(t))
    value[(t // 24) % 7 >= 5] *= 1 - weekend_dip  # 2024-01-01 is a Monday
    if shift_at is not None:
        value[shift_at:] += shift
    return _series(sid, value, step=pd.Timedelta("1h"))


def test_level_shift_found_near_its_time_and_weekends_are_not_shifts():
    rng = np.random.default_rng(3)
    frame = pd.concat(
        [
            _hourly("up", 14, rng, shift_at=200, shift=25),
            _hourly("down", 14, rng, shift_at=90, shift=-20),
            _hourly("office", 14, rng, weekend_dip=0.5),
            _hourly("steady", 14, rng),
        ]
    )
    prepared = clean_fleet(frame, CleaningRules(freq="1h"))
    report = prepared.report.set_index("series_id")
    assert set(prepared.series_flagged("level_shift")) == {"up", "down"}
    assert abs(report.loc["up", "level_shift_at"] - (T0 + pd.Timedelta(hours=200))) <= pd.Timedelta(
        "6h"
    )
    assert abs(
        report.loc["down", "level_shift_at"] - (T0 + pd.Timedelta(hours=90))
    ) <= pd.Timedelta("6h")
    assert report.loc["up", "level_shift_size"] == pytest.approx(25, abs=3)
    assert report.loc["down", "level_shift_size"] == pytest.approx(-20, abs=3)


def test_report_has_one_row_per_series_even_when_all_values_are_missing():
    frame = pd.concat([_series("ok", [1, 2, 3]), _series("dead", [np.nan, np.nan])])
    prepared = clean_fleet(frame, CleaningRules(min_points=1))
    assert list(prepared.report.columns) == REPORT_COLUMNS
    dead = _report(prepared, "dead")
    assert (dead["rows_in"], dead["missing_values"], dead["points"]) == (2, 2, 0)
    assert pd.isna(dead["first_timestamp"]) and dead["too_short"]
    assert set(prepared.frame["series_id"]) == {"ok"}


def test_bad_input_is_refused_with_the_column_named():
    with pytest.raises(DataError, match=r"\['value'\].*columns present"):
        clean_fleet(pd.DataFrame({"series_id": ["a"], "timestamp": [T0]}))
    with pytest.raises(DataError, match="'series_id' has 1 missing"):
        clean_fleet(pd.DataFrame({"series_id": [None], "timestamp": [T0], "value": [1.0]}))
    stray = pd.concat(
        [_series("a", [1, 2, 3]), _series("a", [4], start=pd.Timestamp("1971-01-01"))]
    )
    with pytest.raises(DataError, match=r"series 'a' spans .* steps"):
        clean_fleet(stray)


def test_placement_follows_the_vm_to_its_latest_host():
    frame = _series("vm", [1, 2, 3, 4]).assign(host_id=["h1", "h1", "h2", "h2"], cluster_id="c")
    prepared = clean_fleet(frame, CleaningRules(min_points=1))
    assert prepared.frame["host_id"].unique().tolist() == ["h2"]


EC2 = [
    # file, rows, points on the 5-minute grid, steps filled
    ("ec2_cpu_utilization_5f5533.csv", 4032, 4032, 0),
    ("ec2_cpu_utilization_825cc2.csv", 4032, 4034, 2),
    ("ec2_cpu_utilization_ac20cd.csv", 4032, 4037, 5),
    ("ec2_cpu_utilization_24ae8d.csv", 4032, 4032, 0),
]


@pytest.mark.data
def test_real_nab_ec2_series_land_on_the_grid(shared_data):
    folder = shared_data / "nab/realAWSCloudwatch"
    frame = pd.concat(
        [read_telemetry(folder / name, series_id=name[20:26]).frame for name, *_ in EC2]
    )
    prepared = clean_fleet(frame)
    out = prepared.frame
    assert (out["timestamp"].dt.minute % 5 == 0).all() and (out["timestamp"].dt.second == 0).all()
    assert not out.duplicated(["series_id", "timestamp"]).any()
    report = prepared.report.set_index("series_id")
    for name, rows, points, filled in EC2:
        row = report.loc[name[20:26]]
        assert (row["rows_in"], row["points"], row["steps_filled"]) == (rows, points, filled), name
        assert row["points"] == row["observed"] + row["steps_filled"] + row["long_gap_steps"]
        span = (row["last_timestamp"] - row["first_timestamp"]) / FIVE + 1
        assert span == points
    # off-grid files: every sample moved; on-grid ones: none did
    assert report.loc["5f5533", "snapped"] == 4032
    assert report.loc["24ae8d", "snapped"] == 0
    assert out["value"].notna().all()
    assert not report["too_short"].any() and not report["flat"].any()


@pytest.mark.data
def test_real_nab_duplicates_are_merged(shared_data):
    # this CloudWatch export repeats 11 timestamps with different values
    path = shared_data / "nab/realAWSCloudwatch/ec2_network_in_5abac7.csv"
    prepared = clean_fleet(read_telemetry(path, series_id="net").frame, CleaningRules(clip=None))
    row = prepared.report.iloc[0]
    assert row["rows_dropped_duplicates"] + row["duplicate_timestamps"] >= 11
    assert not prepared.frame["timestamp"].duplicated().any()
    assert len(prepared.frame) == row["points"]
