"""Invariants of cleaning on arbitrary messy input (hypothesis)."""

from __future__ import annotations

import numpy as np
import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from zhuge.data import CleaningRules, clean_fleet

T0 = pd.Timestamp("2024-01-01")

rows = st.lists(
    st.tuples(
        st.sampled_from(["a", "b", "c"]),
        st.integers(0, 6 * 3600),  # seconds after T0: any second, mostly off the grid
        st.one_of(st.floats(-50, 300, allow_nan=False), st.just(float("nan")), st.just(100.0)),
    ),
    min_size=1,
    max_size=120,
)


@settings(max_examples=150, deadline=None)
@given(rows=rows, align=st.sampled_from(["nearest", "floor"]), max_gap=st.integers(0, 5))
def test_output_is_on_grid_unique_and_in_range(rows, align, max_gap):
    frame = pd.DataFrame(rows, columns=["series_id", "seconds", "value"])
    frame["timestamp"] = T0 + pd.to_timedelta(frame.pop("seconds"), unit="s")
    rules = CleaningRules(align=align, max_gap_fill=max_gap, min_points=1)
    prepared = clean_fleet(frame, rules)
    out, report = prepared.frame, prepared.report.set_index("series_id")

    assert (out["timestamp"].dt.second == 0).all() and (out["timestamp"].dt.minute % 5 == 0).all()
    assert not out.duplicated(["series_id", "timestamp"]).any()
    values = out["value"].dropna()
    assert ((values >= 0) & (values <= 100)).all()
    for sid, series in out.groupby("series_id"):
        steps = series["timestamp"].diff().dropna()
        assert (steps == pd.Timedelta("5min")).all(), "grid must be complete within a series"
        assert series["value"].iloc[[0, -1]].notna().all()
        row = report.loc[sid]
        assert row["points"] == len(series)
        assert row["points"] == row["observed"] + row["steps_filled"] + row["long_gap_steps"]
        assert series["filled"].sum() == row["steps_filled"]
    # every input row is accounted for
    assert (
        report["rows_in"]
        == report["missing_values"]
        + report["rows_dropped_duplicates"]
        + report["duplicate_timestamps"]
        + report["observed"]
    ).all()
    assert report["rows_in"].sum() == len(frame)
    distinct = frame.drop_duplicates()  # exact duplicates are dropped before clipping
    outside = (distinct["value"] < 0) | (distinct["value"] > 100)
    assert report["clipped"].sum() == int(outside.sum())
    assert np.array_equal(report.index.to_numpy(), np.sort(frame["series_id"].unique()))
