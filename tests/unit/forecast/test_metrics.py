import numpy as np
import pandas as pd
import pytest

from zhuge.ml.forecast import (
    coverage_matrix,
    mae_matrix,
    mase_matrix,
    mase_scale,
    score_frame,
    smape_matrix,
    summarize,
)


def test_mase_by_hand():
    # season 2: in-sample seasonal diffs |3-1|, |4-2|, |5-3| -> scale 2
    history = np.array([[1.0, 2.0, 3.0, 4.0, 5.0]])
    actual = np.array([[6.0, 7.0]])
    forecast = np.array([[5.0, 9.0]])  # errors 1 and 2 -> MAE 1.5
    assert mase_scale(history, 2)[0] == pytest.approx(2.0)
    assert mase_matrix(actual, forecast, history, 2)[0] == pytest.approx(0.75)


def test_mase_zero_scale_is_guarded():
    flat = np.full((1, 10), 3.0)
    exact = mase_matrix(np.full((1, 2), 3.0), np.full((1, 2), 3.0), flat, 2)
    off = mase_matrix(np.full((1, 2), 3.0), np.full((1, 2), 4.0), flat, 2)
    assert exact[0] == 0.0
    assert np.isfinite(off[0]) and off[0] > 0
    # seasonal scale 0 but lag-1 scale is not: falls back to lag-1 (|diffs| all 1)
    alternating = np.array([[0.0, 1.0, 0.0, 1.0, 0.0, 1.0]])
    assert mase_scale(alternating, 2)[0] == pytest.approx(1.0)


def test_smape_mae_coverage_by_hand():
    actual = np.array([[100.0, 0.0, np.nan, 50.0]])
    forecast = np.array([[50.0, 0.0, 3.0, 150.0]])
    # sMAPE terms: 2*50/150, 0 (both zero), skipped (NaN), 2*100/200 -> mean of 3 terms
    assert smape_matrix(actual, forecast)[0] == pytest.approx(100 * (2 / 3 + 0 + 1) / 3)
    assert mae_matrix(actual, forecast)[0] == pytest.approx((50 + 0 + 100) / 3)
    lower = np.array([[90.0, -1.0, 0.0, 60.0]])
    upper = np.array([[110.0, 1.0, 1.0, 70.0]])
    assert coverage_matrix(actual, lower, upper)[0] == pytest.approx(2 / 3)


def test_vectorised_over_series():
    history = np.array([[1.0, 2.0, 3.0, 4.0], [0.0, 0.0, 2.0, 2.0]])
    actual = np.array([[5.0], [2.0]])
    forecast = np.array([[4.0], [4.0]])
    np.testing.assert_allclose(mase_matrix(actual, forecast, history, 2), [0.5, 1.0])


def test_score_frame_and_summary():
    ts = pd.date_range("2024-01-01", periods=4, freq="h")
    history = pd.DataFrame(
        {"series_id": ["a"] * 4 + ["b"] * 4, "timestamp": list(ts) * 2, "value": [1, 2, 3, 4] * 2}
    )
    future = pd.date_range("2024-01-01 04:00", periods=2, freq="h")
    actual = pd.DataFrame(
        {"series_id": ["a", "a", "b", "b"], "timestamp": list(future) * 2, "value": [5, 6, 5, 6]}
    )
    forecast = actual.rename(columns={"value": "yhat"}).assign(yhat=[5.0, 8.0, 5.0, 6.0])
    table = score_frame(actual, forecast, history, season=1)
    assert list(table["series_id"]) == ["a", "b"]
    np.testing.assert_allclose(table["mae"], [1.0, 0.0])
    np.testing.assert_allclose(table["mase"], [1.0, 0.0])  # scale: lag-1 diffs = 1
    overall = summarize(table.assign(model="m"))
    assert overall.loc[0, "mase"] == pytest.approx(0.5)
    assert overall.loc[0, "n_series"] == 2
