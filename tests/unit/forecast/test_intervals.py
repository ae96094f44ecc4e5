"""Conformal intervals: the finite-sample rule, and coverage on held-out days of a fleet whose
VMs are quiet or bursty (issue 16: intervals a risk-aware plan can rely on)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tests.unit.forecast.conftest import FAST_GBM
from zhuge.ml.forecast import Forecaster
from zhuge.ml.forecast.intervals import conformal_offsets, conformal_quantile, interval_spread
from zhuge.ml.forecast.metrics import mase_scale

HISTORY_DAYS = 14
HELD_OUT_DAYS = 3


def test_conformal_quantile_takes_the_finite_sample_rank():
    errors = np.arange(1.0, 10.0)  # n = 9: (n + 1) * 0.9 = 9 -> the largest, 0.1 -> the smallest
    assert conformal_quantile(errors, 0.9) == 9.0
    assert conformal_quantile(errors, 0.1) == 1.0
    # n = 4: the upper rank ceil(5 * 0.9) = 5 passes n: the largest error, never beyond it
    assert conformal_quantile(np.array([4.0, 1.0, np.nan, 3.0, 2.0]), 0.9) == 4.0
    assert conformal_quantile(np.array([np.nan]), 0.9) == 0.0


def test_one_unrepresentative_window_does_not_set_the_width():
    rng = np.random.default_rng(0)
    calm = rng.standard_normal((4, 50, 6))
    shocked = np.concatenate([calm, 10 * rng.standard_normal((1, 50, 6))])
    assert np.allclose(
        conformal_offsets(shocked, [0.1, 0.9]), conformal_offsets(calm, [0.1, 0.9]), atol=0.5
    )
    pooled_upper = np.quantile(shocked, 0.9)
    assert conformal_offsets(shocked, [0.9])[0].max() < 0.7 * pooled_upper


def test_offsets_follow_the_growth_of_errors_with_the_step():
    rng = np.random.default_rng(1)
    growth = np.linspace(1.0, 3.0, 12)
    offsets = conformal_offsets(rng.standard_normal((5, 200, 12)) * growth, [0.1, 0.9])
    assert offsets[1, -1] / offsets[1, 0] == pytest.approx(3.0, rel=0.25)
    assert (offsets[0] < 0).all() and (offsets[1] > 0).all()


def test_spread_is_robust_to_bursts_and_never_zero():
    hours = np.arange(14 * 24)
    calm = (
        20 + 5 * np.sin(2 * np.pi * hours / 24) + np.random.default_rng(2).normal(0, 1, hours.size)
    )
    bursty = calm.copy()
    bursty[::40] += 60  # a burst every ~2 days
    flat = np.full(hours.size, 7.0)
    spread = interval_spread(np.stack([calm, bursty, flat]), 24)
    assert spread[1] < 1.3 * spread[0]  # the bursts barely move the median difference
    mase = mase_scale(np.stack([calm, bursty]), 24)
    assert mase[1] > 2 * mase[0]  # while they dominate the mean one (the MASE scale)
    assert spread[2] > 0


def bursty_fleet(vms: int = 120, seed: int = 7) -> tuple[pd.DataFrame, np.ndarray]:
    """Hourly load of ``vms`` VMs over ``HISTORY_DAYS + HELD_OUT_DAYS`` days: a daily cycle of
    each VM's own level, amplitude and phase plus noise; the second half also bursts (about one
    hour in eight, 10-60 % of its level on top, decaying over the next hours)."""
    rng = np.random.default_rng(seed)
    steps = (HISTORY_DAYS + HELD_OUT_DAYS) * 24
    t = np.arange(steps)
    level = rng.uniform(10, 60, (vms, 1))
    amplitude = rng.uniform(0.2, 0.6, (vms, 1))
    phase = rng.uniform(0, 24, (vms, 1))
    load = level * (1 + amplitude * np.sin(2 * np.pi * (t - phase) / 24))
    load += rng.normal(0, 1, (vms, steps)) * (0.02 + 0.03 * rng.random((vms, 1))) * level
    bursty = np.arange(vms) >= vms // 2
    burst = (rng.random((vms, steps)) < 0.12) * rng.uniform(0.1, 0.6, (vms, steps)) * level
    for lag in range(1, 3):
        burst[:, lag:] += 0.5**lag * burst[:, :-lag]
    load = np.clip(load + np.where(bursty[:, None], burst, 0.0), 0, 100)
    frame = pd.DataFrame(
        {
            "series_id": np.repeat([f"vm-{i:03d}" for i in range(vms)], steps),
            "timestamp": np.tile(pd.date_range("2024-03-04", periods=steps, freq="1h"), vms),
            "value": load.reshape(-1),
        }
    )
    return frame, bursty


def test_80_percent_interval_covers_80_percent_of_held_out_hours_quiet_and_bursty():
    frame, bursty = bursty_fleet()
    start = frame["timestamp"].min()
    ids = sorted(frame["series_id"].unique())
    is_bursty = dict(zip(ids, bursty, strict=True))
    inside, which = [], []
    for day in range(HELD_OUT_DAYS):
        cut = start + pd.Timedelta(days=HISTORY_DAYS + day)
        forecaster = Forecaster(
            model="gbm", freq="1h", horizon=24, quantiles=(0.1, 0.9), gbm_params=FAST_GBM
        ).fit(frame.loc[frame["timestamp"] < cut])
        assert forecaster.calibration_windows_ == 5
        forecast = forecaster.predict()
        actual = frame.loc[
            (frame["timestamp"] >= cut) & (frame["timestamp"] < cut + pd.Timedelta("1D"))
        ]
        both = forecast.merge(actual, on=["series_id", "timestamp"], validate="one_to_one")
        assert len(both) == len(bursty) * 24
        inside.append(both["value"].between(both["yhat_q10"], both["yhat_q90"]).to_numpy())
        which.append(both["series_id"].map(is_bursty).to_numpy())
    inside, which = np.concatenate(inside), np.concatenate(which).astype(bool)
    overall, on_bursty, on_quiet = inside.mean(), inside[which].mean(), inside[~which].mean()
    print(f"coverage {overall:.3f}, bursty {on_bursty:.3f}, quiet {on_quiet:.3f}")
    assert 0.77 <= overall <= 0.83, (overall, on_bursty, on_quiet)
    assert abs(on_bursty - 0.80) <= 0.08, (overall, on_bursty, on_quiet)
    assert abs(on_quiet - 0.80) <= 0.08, (overall, on_bursty, on_quiet)


def test_intervals_are_deterministic_for_a_seed():
    frame, _ = bursty_fleet(vms=30, seed=11)
    cut = frame["timestamp"].min() + pd.Timedelta(days=HISTORY_DAYS)
    history = frame.loc[frame["timestamp"] < cut]
    params = {"model": "gbm", "freq": "1h", "horizon": 24, "gbm_params": FAST_GBM}
    first = Forecaster(**params).fit(history)
    again = Forecaster(**params).fit(history)
    np.testing.assert_array_equal(first.residual_quantiles_, again.residual_quantiles_)
    pd.testing.assert_frame_equal(first.predict(), again.predict())
