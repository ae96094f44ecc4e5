"""The harmonic daily curve: each series' smooth shape, unmoved by bursts, its own on weekends."""

from __future__ import annotations

import numpy as np
import pandas as pd

from zhuge.artifacts import ArtifactDir
from zhuge.ml.forecast import Forecaster, load, save, to_fleet
from zhuge.ml.forecast.baselines import seasonal_mean
from zhuge.ml.forecast.forecaster import AUTO_CANDIDATES, MASE_CANDIDATES
from zhuge.ml.forecast.harmonic import harmonic_profile

MONDAY = pd.Timestamp("2024-01-01")


def _shape(n: int, hours: np.ndarray, weekend_factor: float = 1.0) -> np.ndarray:
    """(n, len(hours)) noise-free load: a daily sine of each series' own phase, times
    ``weekend_factor`` on Saturdays and Sundays (hours counted from a Monday 00:00)."""
    phase = np.arange(n)[:, None] * 24 / n
    load = 40 * (1 + 0.5 * np.sin(2 * np.pi * (hours[None, :] % 24 - phase) / 24))
    weekend = (hours // 24) % 7 >= 5
    return np.where(weekend[None, :], load * weekend_factor, load)


def _bursty(truth: np.ndarray, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    noisy = truth + rng.normal(0, 2, truth.shape)
    return noisy + (rng.random(truth.shape) < 0.05) * rng.uniform(30, 60, truth.shape)


def test_the_curve_follows_the_daily_shape_and_ignores_bursts():
    n, days = 24, 14
    hours = np.arange((days + 1) * 24)
    truth = _shape(n, hours)
    values = _bursty(truth[:, : days * 24], seed=0)
    monday = np.zeros(n, dtype=np.int64)
    curve = harmonic_profile(values, monday, 24, 24)
    profile = seasonal_mean(values, 24, 24)
    actual = truth[:, days * 24 :]
    assert np.abs(curve - actual).mean() < 1.0  # the bursts (5 % of hours, +30..60) left out
    assert np.abs(curve - actual).mean() < 0.3 * np.abs(profile - actual).mean()
    # the quietest hour of each series' day is where the truth has it (within an hour)
    miss = np.abs(curve.argmin(axis=1) - actual.argmin(axis=1))
    assert (np.minimum(miss, 24 - miss) <= 1).all()


def test_weekends_get_their_own_curve_and_weekdays_are_not_dragged_down():
    n, days = 6, 14
    hours = np.arange((days + 2) * 24)
    truth = _shape(n, hours, weekend_factor=0.5)
    values = truth + np.random.default_rng(1).normal(0, 1, truth.shape)
    monday = np.zeros(n, dtype=np.int64)
    # history to Friday night (12 days): Saturday and Sunday are forecast as weekend days
    weekend = harmonic_profile(values[:, : 12 * 24], monday, 48, 24)
    np.testing.assert_allclose(weekend, truth[:, 12 * 24 : 14 * 24], atol=1.5)
    # history to Sunday night (14 days): Monday as a weekday, not a mix of the two
    weekday = harmonic_profile(values[:, : 14 * 24], monday, 24, 24)
    np.testing.assert_allclose(weekday, truth[:, 14 * 24 : 15 * 24], atol=1.5)
    assert (
        np.abs(seasonal_mean(values[:, : 14 * 24], 24, 24) - truth[:, 14 * 24 :][:, :24]).mean() > 5
    )


def test_a_history_without_a_weekend_forecasts_saturday_like_a_weekday():
    hours = np.arange(6 * 24)
    truth = _shape(3, hours)
    curve = harmonic_profile(truth[:, : 5 * 24], np.zeros(3, dtype=np.int64), 24, 24)
    np.testing.assert_allclose(curve, truth[:, 5 * 24 :], atol=1e-3)


def test_short_or_empty_rows_fall_back_to_the_7_day_profile():
    values = np.full((2, 5 * 24), np.nan)
    values[0, -30:] = np.arange(30.0)  # about a day: too little to fit a curve on
    out = harmonic_profile(values, np.zeros(2, dtype=np.int64), 24, 24)
    np.testing.assert_array_equal(out[0], seasonal_mean(values[:1], 24, 24)[0])
    assert np.isnan(out[1]).all()


def test_calendar_comes_from_each_series_own_start():
    """Two copies of one series, the second starting a day later: the same day forecast."""
    hours = np.arange(15 * 24)
    truth = _shape(1, hours, weekend_factor=0.5)[0]
    values = np.stack([truth[: 14 * 24], np.r_[np.nan * np.ones(24), truth[24 : 14 * 24]]])
    out = harmonic_profile(values, np.array([0, 0]), 24, 24)
    np.testing.assert_allclose(out[0], out[1], atol=0.1)  # the weekend penalty differs a little
    np.testing.assert_allclose(out[0], truth[14 * 24 :], atol=0.1)
    shifted = harmonic_profile(values[:1, 24:], np.array([24]), 24, 24)  # column 0: a Tuesday
    np.testing.assert_allclose(shifted[0], out[0], atol=0.1)
    wrong = harmonic_profile(values[:1, 24:], np.array([0]), 24, 24)  # as if it were Monday
    assert np.abs(wrong[0] - truth[14 * 24 :]).mean() > 5


def test_auto_may_choose_the_curve_by_the_decision_and_it_forecasts_as_a_named_model(tmp_path):
    n, days = 8, 12
    stamps = pd.date_range(MONDAY, periods=days * 24, freq="1h")
    values = _bursty(_shape(n, np.arange(days * 24)), seed=2)
    frame = pd.DataFrame(
        {
            "series_id": np.repeat([f"vm-{i}" for i in range(n)], len(stamps)),
            "timestamp": np.tile(stamps, n),
            "value": values.reshape(-1),
        }
    )
    fast = {"num_boost_round": 20}
    by_mase = Forecaster(model="auto", horizon=24, quantiles=(), gbm_params=fast).fit(frame)
    assert "harmonic" not in by_mase.selection_["scores"]  # a candidate by the decision only
    everything = Forecaster(
        model="auto", horizon=24, quantiles=(), gbm_params=fast, candidates=AUTO_CANDIDATES
    ).fit(frame)
    assert set(everything.selection_["scores"]) == set(AUTO_CANDIDATES)
    assert "harmonic" in AUTO_CANDIDATES and "harmonic" not in MASE_CANDIDATES
    named = Forecaster(model="harmonic", horizon=24, quantiles=(0.1, 0.9)).fit(frame)
    out = named.predict()
    fleet = to_fleet(frame, freq="1h")
    expected = harmonic_profile(fleet.values, fleet.steps_since_monday(), 24, 24)
    np.testing.assert_allclose(out["yhat"].to_numpy().reshape(n, 24), expected)
    assert (out["yhat_q90"] >= out["yhat"]).all() and (out["model"] == "harmonic").all()
    save(named, ArtifactDir(tmp_path.as_uri()))  # stateless: the kept history is all it needs
    again = load(ArtifactDir(tmp_path.as_uri())).predict()
    np.testing.assert_allclose(again["yhat"], out["yhat"])
    np.testing.assert_allclose(again["yhat_q90"], out["yhat_q90"])
