"""The gate's ``decision_regret`` metric on a generated fleet: a model that ranks the quiet
windows right but is biased (higher MASE) wins under decision_regret and loses under MASE,
through the gate's own code (held-out windows, per-series losses, the paired test)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from zhuge.jobs.registry.kinds import window_losses
from zhuge.jobs.registry.metrics import decision_regret
from zhuge.ml import gate
from zhuge.ml.forecast.synthetic import synthetic_fleet

STEPS = 24


class Peeking:
    """A stand-in forecaster that knows the fleet's future and bends it: deterministic
    forecasts with exactly the properties the test needs."""

    def __init__(self, fleet: pd.DataFrame, bend) -> None:
        self.table = fleet.pivot_table(index="series_id", columns="timestamp", values="value")
        self.bend = bend

    def predict(self, history: pd.DataFrame) -> pd.DataFrame:
        start = history["timestamp"].max() + pd.Timedelta("1h")
        grid = pd.date_range(start, periods=STEPS, freq="1h")
        future = self.table.reindex(columns=grid).to_numpy()
        yhat = self.bend(future)
        return pd.DataFrame(
            {
                "series_id": np.repeat(self.table.index.to_numpy(), STEPS),
                "timestamp": np.tile(grid.to_numpy(), len(self.table)),
                "yhat": yhat.reshape(-1),
            }
        )


def biased_but_ranked(future: np.ndarray) -> np.ndarray:
    """Half the load plus 30 points: every hour wrong, the order of the hours right."""
    return 0.5 * future + 30.0


def close_but_wrong_trough(future: np.ndarray) -> np.ndarray:
    """The load itself, except the quietest hour of each day forecast 25 points louder."""
    out = future.copy()
    rows = np.arange(len(out))
    out[rows, np.argmin(future, axis=1)] += 25.0
    return out


@pytest.fixture(scope="module")
def fleet() -> pd.DataFrame:
    frame = synthetic_fleet(vms=20, days=10, freq="1h", seed=7)
    frame["timestamp"] = pd.to_datetime(frame["timestamp"])
    return frame.dropna(subset=["value"])


def gate_on(fleet: pd.DataFrame, metric: str) -> gate.GateDecision:
    end = fleet["timestamp"].max()
    origins = [end - pd.Timedelta(hours=STEPS * k) for k in (3, 2, 1)]
    champion = Peeking(fleet, close_but_wrong_trough)
    challenger = Peeking(fleet, biased_but_ranked)
    theirs, _ = window_losses(champion, fleet, origins, freq="1h", steps=STEPS, metric=metric)
    mine, _ = window_losses(challenger, fleet, origins, freq="1h", steps=STEPS, metric=metric)
    return gate.decide(theirs.mean(axis=1).to_numpy(), mine.mean(axis=1).to_numpy())


def test_ranking_the_quiet_windows_wins_on_regret_and_loses_on_mase(fleet):
    by_mase = gate_on(fleet, "mase")
    assert not by_mase.promote and by_mase.challenger_score > by_mase.champion_score
    by_regret = gate_on(fleet, "decision_regret")
    assert by_regret.promote, by_regret.reason
    assert by_regret.challenger_score == 0.0 < by_regret.champion_score
    assert by_regret.n_series == 20 and by_regret.p_value < 0.05


def test_the_regret_is_the_load_of_the_chosen_window_minus_the_quietest():
    actual = np.array([[50.0, 20.0, 30.0, 60.0], [10.0, 40.0, 5.0, 70.0]])
    forecast = np.array([[40.0, 35.0, 30.0, 90.0], [1.0, 2.0, 3.0, 4.0]])
    # season 24: one-hour slots, 30-minute windows -> one slot per window
    assert decision_regret(actual, forecast, actual, 24).tolist() == [10.0, 5.0]
    # 5-minute slots: six per 30-minute window; a window's load is its mean
    fine = np.repeat(actual, 6, axis=1)
    assert decision_regret(fine, np.repeat(forecast, 6, axis=1), fine, 288).tolist() == [
        10.0,
        5.0,
    ]
    gaps = forecast.copy()
    gaps[0, 2] = np.nan
    assert np.isnan(decision_regret(actual, gaps, actual, 24)[0])
    assert "decision_regret" in gate.known_metrics()
