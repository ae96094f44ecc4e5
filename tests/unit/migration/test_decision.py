"""Forecasts judged by the plans they induce: the decision backtest's ordering matches how its
fleets are built, and ``decision_regret`` is what a registry's gate can compare."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from zhuge.errors import DataError
from zhuge.migration import PlanConstraints
from zhuge.migration.decision import EARLIEST, PERFECT, DecisionTask, decision_regret
from zhuge.migration.decision_backtest import BY_DECISION, PROFILE, decision_backtest, select_online
from zhuge.ml.forecast import to_fleet

START = pd.Timestamp("2024-01-01")  # a Monday


def _vms(n: int, per_host: int = 2) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "vm_id": [f"vm-{i:03d}" for i in range(n)],
            "host_id": [f"h{i // per_host}" for i in range(n)],
            "cluster_id": "c1",
            "memory_gb": 16.0,
        }
    )


def _telemetry(days: int, n: int, quiet_hour, seed: int = 0) -> pd.DataFrame:
    """Hourly load, busy but for two quiet hours a day starting at ``quiet_hour(vm, day)``."""
    rng = np.random.default_rng(seed)
    stamps = pd.date_range(START, periods=days * 24, freq="1h")
    frames = []
    for v in range(n):
        hour = stamps.hour.to_numpy()
        load = 60 + 10 * np.sin(2 * np.pi * (hour + v) / 24) + rng.normal(0, 3, len(stamps))
        for d in range(days):
            q = quiet_hour(v, stamps[d * 24].dayofweek)
            load[d * 24 + q : d * 24 + q + 2] = 8 + rng.normal(0, 1, 2)
        frames.append(
            pd.DataFrame({"series_id": f"vm-{v:03d}", "timestamp": stamps, "value": load})
        )
    return pd.concat(frames, ignore_index=True)


def _task(n: int) -> DecisionTask:
    return DecisionTask(_vms(n), PlanConstraints(window="1h", max_per_host=1, max_per_cluster=None))


def test_a_planted_perfect_forecast_captures_everything_and_the_naive_plan_nothing():
    fleet = to_fleet(_telemetry(10, 12, lambda v, dow: (v * 5) % 22), freq="1h")

    def planted(history, horizon):  # the future itself
        t = history.n_steps
        return fleet.values[:, t : t + horizon]

    result = decision_backtest(
        fleet,
        _task(12),
        horizon=24,
        windows=2,
        models=["seasonal_naive"],
        extra={"planted": planted},
    )
    overall = result.overall.set_index("plan")
    assert overall.at["planted", "captured"] == pytest.approx(1.0)
    assert overall.at["planted", "regret"] == pytest.approx(0.0)
    assert overall.at[EARLIEST, "captured"] == pytest.approx(0.0)
    # the quiet hours repeat daily here: yesterday's load finds them too, the earliest plan not
    assert overall.at["seasonal_naive", "captured"] > 0.8
    assert overall.at[PERFECT, "realised_load"] < overall.at[EARLIEST, "realised_load"] - 20
    assert set(result.per_window["window"]) == {0, 1}
    assert (result.per_window["vms"] == 12).all()


def test_a_model_that_learns_the_weekly_pattern_beats_the_7_day_profile_when_the_quiet_window_moves_by_weekday():
    # each VM's quiet hours move 3 hours later every weekday: a 7-day profile averages them away
    fleet = to_fleet(_telemetry(28, 16, lambda v, dow: (2 + 3 * dow + v) % 22, seed=1), freq="1h")
    result = decision_backtest(fleet, _task(16), horizon=24, windows=3, models=["gbm"])
    overall = result.overall.set_index("plan")
    assert overall.at["gbm", "captured"] > overall.at[PROFILE, "captured"] + 0.2
    assert overall.at["gbm", "captured"] > overall.at["seasonal_naive", "captured"]


def test_the_harmonic_curve_is_always_planned_and_plans_like_the_noise_free_cycle():
    # a smooth daily cycle per VM, noise and bursts on 8 % of hours: the best any forecaster can
    # do is plan on the noise-free cycle; the robust curve is fitted from the noisy history
    rng = np.random.default_rng(3)
    n, days = 24, 14
    stamps = pd.date_range(START, periods=days * 24, freq="1h")
    hour = stamps.hour.to_numpy()[None, :]
    cycle = 40 + 25 * np.sin(2 * np.pi * (hour - np.arange(n)[:, None]) / 24)
    load = cycle + rng.normal(0, 2, cycle.shape)
    load += (rng.random(load.shape) < 0.08) * rng.uniform(40, 80, load.shape)
    frame = pd.DataFrame(
        {
            "series_id": np.repeat([f"vm-{i:03d}" for i in range(n)], len(stamps)),
            "timestamp": np.tile(stamps, n),
            "value": load.reshape(-1),
        }
    )
    fleet = to_fleet(frame, freq="1h")

    def noise_free(history, horizon):
        return cycle[:, history.n_steps : history.n_steps + horizon]

    result = decision_backtest(
        fleet,
        _task(n),
        horizon=24,
        windows=4,
        models=["seasonal_naive"],
        extra={"noise-free": noise_free},
    )
    overall = result.overall.set_index("plan")
    assert overall.at["harmonic", "captured"] == pytest.approx(
        overall.at["noise-free", "captured"], abs=0.01
    )
    # the bursts of the last week move the 7-day profile's quiet windows
    assert overall.at[PROFILE, "captured"] < overall.at["noise-free", "captured"] - 0.03


def test_decision_regret_is_zero_for_the_truth_and_grows_with_a_misleading_forecast():
    telemetry = _telemetry(1, 6, lambda v, dow: 3 + v)
    actual = telemetry.rename(columns={"value": "yhat"})
    vms = _vms(6)
    constraints = PlanConstraints(window="1h", max_per_host=1, max_per_cluster=None)
    assert decision_regret(actual, actual, vms, constraints) == pytest.approx(0.0)
    flat = actual.assign(yhat=50.0)  # no shape: the plan takes the earliest windows
    assert decision_regret(flat, telemetry, vms, constraints) > 20


def test_decision_backtest_needs_vms_of_the_fleet():
    fleet = to_fleet(_telemetry(4, 3, lambda v, dow: 3), freq="1h")
    task = DecisionTask(_vms(3).assign(vm_id=["x", "y", "z"]))
    with pytest.raises(DataError, match="VM table"):
        decision_backtest(fleet, task, horizon=24, windows=1, models=["seasonal_naive"])


def test_online_selection_by_decision_uses_only_earlier_origins():
    per_window = pd.DataFrame(
        {
            "plan": ["auto", "gbm", "seasonal_naive"] * 3,
            "window": [0, 0, 0, 1, 1, 1, 2, 2, 2],
            "captured": [0.5, 0.9, 0.2, 0.5, 0.1, 0.95, 0.5, 0.3, 0.4],
            "realised_load": range(9),
        }
    )
    online = select_online(per_window, ["gbm", "seasonal_naive"])
    # window 0: auto (no earlier origin); 1: gbm led window 0; 2: seasonal_naive leads 0-1
    assert online["chosen"].tolist() == ["auto", "gbm", "seasonal_naive"]
    assert online["realised_load"].tolist() == [0, 4, 8]
    assert (online["plan"] == BY_DECISION).all()
