"""Chunk preparation: sample-grid detection, the partial last slot, roll-ups over chunks."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from zhuge.data import roll_up
from zhuge.data.aggregation import finish_roll_up, partial_roll_up
from zhuge.data.preparation import (
    ChunkSpec,
    detect_sample_freq,
    drop_partial_last_slot,
    prepare_chunk,
)
from zhuge.errors import DataError


def _series(sid: str, start: str, periods: int, freq: str, offset: str = "0min") -> pd.DataFrame:
    times = pd.date_range(start, periods=periods, freq=freq) + pd.Timedelta(offset)
    return pd.DataFrame(
        {"series_id": sid, "timestamp": times, "value": np.arange(periods, dtype=float)}
    )


@pytest.mark.parametrize(
    ("freq", "offset", "target", "expected"),
    [
        ("5min", "2min", "1h", "5min"),  # NAB: 14:27, 14:32 ... still a 5-minute grid
        ("1min", "0min", "5min", "1min"),
        ("1h", "0min", "1h", "1h"),
        ("6min", "0min", "1h", "5min"),  # nearest grid that divides the hour
    ],
)
def test_sample_grid_is_detected(freq, offset, target, expected):
    frame = pd.concat([_series(s, "2024-01-01", 500, freq, offset) for s in "ab"])
    assert detect_sample_freq(frame, target) == expected


def test_samples_sparser_than_the_forecast_grid_are_refused():
    with pytest.raises(DataError, match=r"sampled every 1h \(median spacing\).*coarser freq"):
        detect_sample_freq(_series("a", "2024-01-01", 50, "1h"), "5min")


def test_a_last_slot_less_than_half_full_is_dropped():
    spec = ChunkSpec(freq="1h", sample_freq="5min")
    # a: ends at 02:10 (3 samples in its last hour); b: ends at 02:55 (a full hour)
    samples = pd.concat(
        [_series("a", "2024-01-01", 27, "5min"), _series("b", "2024-01-01", 36, "5min")]
    )
    series, cleaned = prepare_chunk(samples, spec)
    last = series.groupby("series_id")["timestamp"].max()
    assert last["a"] == pd.Timestamp("2024-01-01 01:00") and last["b"] == pd.Timestamp(
        "2024-01-01 02:00"
    )
    assert cleaned.report.set_index("series_id").loc["a", "points"] == 27
    # on the same grid nothing is aggregated, so nothing is partial
    same = drop_partial_last_slot(samples, samples, ChunkSpec(freq="5min", sample_freq="5min"))
    assert len(same) == len(samples)


def test_p95_per_forecast_slot():
    spec = ChunkSpec(freq="1h", sample_freq="5min", agg="p95")
    series, _ = prepare_chunk(_series("a", "2024-01-01", 24, "5min"), spec)
    assert series["value"].tolist() == pytest.approx(
        [np.percentile(np.arange(12), 95), np.percentile(np.arange(12, 24), 95)]
    )


def test_host_roll_up_in_chunks_equals_the_whole():
    rng = np.random.default_rng(1)
    times = pd.date_range("2024-01-01", periods=12, freq="5min")
    frame = pd.DataFrame(
        {
            "series_id": np.repeat([f"vm{i}" for i in range(6)], len(times)),
            "timestamp": np.tile(times, 6),
            "value": rng.uniform(0, 100, 6 * len(times)),
        }
    )
    frame.loc[5, "value"] = np.nan  # a VM that did not report once
    vms = pd.DataFrame(
        {
            "vm_id": [f"vm{i}" for i in range(6)],
            "host_id": ["h1", "h1", "h2", "h1", "h2", "h2"],
            "vcpus": [1, 2, 4, 8, 1, 2],
        }
    )
    whole = roll_up(frame, "host", vms=vms)
    chunks = [
        frame[frame["series_id"].isin(ids)]
        for ids in (["vm0", "vm2"], ["vm1", "vm3", "vm4", "vm5"])
    ]
    partials = pd.concat([partial_roll_up(c, "host", vms=vms) for c in chunks])
    pd.testing.assert_frame_equal(finish_roll_up(partials), whole)
    assert set(whole["series_id"]) == {"h1", "h2"}
