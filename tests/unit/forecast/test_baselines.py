import numpy as np
import pandas as pd

from zhuge.ml.forecast import (
    last_value,
    seasonal_median,
    seasonal_naive,
    to_fleet,
    to_long,
    window_median,
)


def test_last_value_skips_trailing_nan():
    values = np.array([[1.0, 2.0, np.nan], [np.nan, np.nan, np.nan]])
    out = last_value(values, 3)
    np.testing.assert_array_equal(out[0], [2.0, 2.0, 2.0])
    assert np.isnan(out[1]).all()


def test_seasonal_naive_repeats_last_season_exactly():
    values = np.arange(12, dtype=float).reshape(1, 12)  # season 4: last season 8, 9, 10, 11
    np.testing.assert_array_equal(seasonal_naive(values, 6, 4)[0], [8, 9, 10, 11, 8, 9])


def test_seasonal_naive_fills_a_gap_from_the_season_before_then_last_value():
    values = np.arange(12, dtype=float).reshape(1, 12)
    values[0, 9] = np.nan  # phase 1 of the last season -> phase 1 of the season before (5)
    np.testing.assert_array_equal(seasonal_naive(values, 4, 4)[0], [8, 5, 10, 11])
    short = np.array([[1.0, 2.0]])  # shorter than a season: last value
    np.testing.assert_array_equal(seasonal_naive(short, 3, 4)[0], [2.0, 2.0, 2.0])


def test_window_and_seasonal_median():
    values = np.array([[5.0, 1.0, 3.0, np.nan, 2.0, 4.0]])
    np.testing.assert_array_equal(window_median(values, 2, 4)[0], [3.0, 3.0])  # of 3, 2, 4
    days = np.array([[1.0, 10.0, 3.0, 20.0, 2.0, 30.0]])  # season 2, 3 seasons
    np.testing.assert_array_equal(seasonal_median(days, 3, 2)[0], [2.0, 20.0, 2.0])


def test_long_matrix_round_trip_right_aligns_series():
    ts = pd.date_range("2024-01-01", periods=5, freq="h")
    frame = pd.DataFrame(
        {
            "series_id": ["b"] * 5 + ["a"] * 3,
            "timestamp": list(ts) + list(ts[:3]),
            "value": [1.0, 2, 3, 4, 5, 7, 8, 9],
        }
    )
    fleet = to_fleet(frame.sample(frac=1, random_state=0), freq="1h")
    assert list(fleet.series_ids) == ["a", "b"]
    np.testing.assert_array_equal(fleet.values[0], [np.nan, np.nan, 7, 8, 9])
    assert fleet.end[0] == np.datetime64(ts[2]) and fleet.end[1] == np.datetime64(ts[4])
    out = to_long(
        fleet.series_ids,
        fleet.first_forecast_time(),
        fleet.freq,
        {"yhat": last_value(fleet.values, 2)},
    )
    assert list(out["timestamp"][:2]) == [ts[3], ts[4]]
    assert list(out["yhat"]) == [9.0, 9.0, 5.0, 5.0]
