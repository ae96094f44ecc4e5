"""The PyTorch LSTM forecaster on CPU: small fleets and tiny networks (CI has 2 cores).

``make test`` installs the CPU build of torch, so these run in CI; ``tests/gpu`` repeats the
quality and portability checks on CUDA.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from zhuge.errors import DataError, InvalidRequest
from zhuge.ml.forecast import Forecaster, backtest, load, save, seasonal_naive, to_fleet
from zhuge.ml.forecast.torch_lstm import LSTMModel, LSTMOptions, placement

# without torch, skip the module saying why (not an error at collection); what a user without
# it sees is tested in test_stats_lstm.py
torch = pytest.importorskip(
    "torch", reason="the LSTM forecaster needs torch: pip install 'zhuge[torch]'"
)

# small enough for ~1 s a fit on 2 CPU cores, big enough to learn a daily profile
FAST_LSTM = {
    "hidden": 16,
    "lookback_days": 2,
    "max_epochs": 5,
    "patience": 3,
    "max_windows": 1500,
    "batch_size": 128,
    "learning_rate": 1e-2,
    "device": "cpu",
}


def sine_fleet(*, vms: int = 24, days: int = 8, noise: float = 3.0, seed: int = 0) -> pd.DataFrame:
    """Hourly daily sines (own level, amplitude, phase) plus white noise: a day's profile is
    learnable, and averaging over days beats the seasonal naive, which repeats one noisy day."""
    rng = np.random.default_rng(seed)
    steps = days * 24
    t = np.arange(steps)
    level = rng.uniform(30, 70, vms)[:, None]
    amp = rng.uniform(10, 25, vms)[:, None]
    phase = rng.uniform(0, 24, vms)[:, None]
    values = level + amp * np.sin(2 * np.pi * (t[None, :] - phase) / 24)
    values = values + noise * rng.standard_normal((vms, steps))
    stamps = pd.date_range("2024-01-01", periods=steps, freq="1h").to_numpy()
    return pd.DataFrame(
        {
            "series_id": np.repeat([f"s{i:03d}" for i in range(vms)], steps),
            "timestamp": np.tile(stamps, vms),
            "value": values.reshape(-1),
        }
    )


@pytest.fixture(scope="module")
def sine() -> pd.DataFrame:
    return sine_fleet()


def test_beats_seasonal_naive_on_noisy_daily_sine_via_forecaster_and_backtest(sine):
    result = backtest(
        sine,
        freq="1h",
        horizon=24,
        windows=1,
        models=("lstm",),
        quantiles=(0.1, 0.9),
        lstm_params=FAST_LSTM,
    )
    mase = result.overall.set_index("model")["mase"]
    # white noise of sd 3 on amplitudes 10..25: the naive's error is sqrt(2) noise sds, a
    # learnt profile's about one, so the margin is wide; 0.9 of the naive is conservative
    assert mase["lstm"] < 0.9 * mase["seasonal_naive"]
    coverage = result.per_series.query("model == 'lstm'")["coverage"].mean()
    assert 0.5 <= coverage <= 1.0  # an 80% conformal interval, calibrated on one window


def test_untrained_network_is_exactly_the_seasonal_mean():
    fleet = to_fleet(sine_fleet(vms=6, days=5), freq="1h")
    model = LSTMModel(**{**FAST_LSTM, "max_epochs": 0}).fit(fleet, 30)
    last_two_days = fleet.values[:, -48:].reshape(6, 2, 24).mean(axis=1)
    expected = last_two_days[:, np.arange(30) % 24]
    np.testing.assert_allclose(model.predict(fleet, 30), expected, rtol=1e-5)
    assert model.best_epoch_ == 0 and model.epochs_ == 0
    one_day = LSTMModel(**{**FAST_LSTM, "max_epochs": 0, "lookback_days": 1}).fit(fleet, 30)
    np.testing.assert_allclose(
        one_day.predict(fleet, 30), seasonal_naive(fleet.values, 30, 24), rtol=1e-5
    )


def test_cpu_training_is_deterministic_and_seeded(sine):
    fleet = to_fleet(sine, freq="1h")
    first = LSTMModel(**FAST_LSTM, random_state=7).fit(fleet, 12)
    again = LSTMModel(**FAST_LSTM, random_state=7).fit(fleet, 12)
    other = LSTMModel(**FAST_LSTM, random_state=8).fit(fleet, 12)
    weights = first.net_.state_dict()
    for name, tensor in again.net_.state_dict().items():
        assert torch.equal(tensor, weights[name]), name
    assert not torch.equal(other.net_.lstm.weight_ih_l0, first.net_.lstm.weight_ih_l0)
    np.testing.assert_array_equal(first.predict(fleet, 12), again.predict(fleet, 12))
    assert 0 <= first.best_epoch_ <= first.epochs_ <= FAST_LSTM["max_epochs"]
    assert np.isfinite(first.validation_loss_)
    assert first.device_ == "cpu" and first.precision_ == "fp32"


def test_save_load_round_trip_gives_identical_forecasts(tmp_path, sine):
    f = Forecaster(
        model="lstm", freq="1h", horizon=24, quantiles=(0.1, 0.5, 0.9), lstm_params=FAST_LSTM
    )
    out = f.fit(sine).predict()
    manifest = save(f, tmp_path.as_uri())
    assert "torch" in manifest["libraries"]
    again = load(tmp_path.as_uri()).predict()
    pd.testing.assert_frame_equal(again, out)
    # the contract's interval columns: ordered by level, non-negative input stays >= 0
    assert (out["yhat_q10"] <= out["yhat_q50"]).all()
    assert (out["yhat_q50"] <= out["yhat_q90"]).all()
    assert (out["yhat_q10"] < out["yhat_q90"]).mean() > 0.99
    assert out["yhat"].notna().all() and set(out["model"]) == {"lstm"}


def test_weights_are_plain_arrays_and_json(sine):
    fleet = to_fleet(sine, freq="1h")
    model = LSTMModel(**FAST_LSTM).fit(fleet, 6)
    data = model.to_bytes()
    import io

    arrays = np.load(io.BytesIO(data), allow_pickle=False)  # fails on any pickled entry
    meta = json.loads(str(arrays["__meta__"]))
    assert meta["options"]["hidden"] == 16 and meta["horizon"] == 6
    assert all(arrays[k].dtype == np.float32 for k in arrays.files if k != "__meta__")
    loaded = LSTMModel.from_bytes(data, device="cpu")
    np.testing.assert_array_equal(loaded.predict(fleet, 6), model.predict(fleet, 6))
    with pytest.raises(DataError, match="horizon 6"):
        loaded.predict(fleet, 7)


def test_gaps_short_and_empty_series():
    fleet = to_fleet(sine_fleet(vms=8, days=6), freq="1h")
    values = fleet.values.copy()
    values[0, -30:-20] = np.nan  # a gap inside the lookback
    values[1, :-30] = np.nan  # shorter than the lookback (forecast only)
    values[2, :] = np.nan  # empty
    model = LSTMModel(**FAST_LSTM).fit(fleet, 12)
    out = model.predict(type(fleet)(fleet.series_ids, values, fleet.end, fleet.freq), 12)
    assert np.isfinite(out[[0, 1, 3]]).all() and np.isnan(out[2]).all()
    assert model.predict(fleet.tail(10), 12).shape == (8, 12)  # history shorter than lookback


def test_history_too_short_to_train():
    fleet = to_fleet(sine_fleet(vms=3, days=1), freq="1h")
    with pytest.raises(DataError, match="a day and a horizon"):
        LSTMModel(**FAST_LSTM).fit(fleet, 6)


def test_options_and_device_choice(monkeypatch):
    with pytest.raises(InvalidRequest, match="unknown LSTM option"):
        LSTMModel(epochz=3)
    with pytest.raises(InvalidRequest, match="precision"):
        placement(torch, "cpu", "fp8")
    with pytest.raises(InvalidRequest, match="unknown device"):
        placement(torch, "tpu-ish")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    auto = placement(torch)
    assert auto.device.type == "cpu" and auto.precision == "fp32"
    with pytest.raises(InvalidRequest, match="sees no CUDA GPU"):
        placement(torch, "cuda")
    assert placement(torch, "cpu", "bf16").precision == "bf16"  # asked for explicitly
    assert LSTMOptions().device == "auto"


def test_forecaster_random_state_reaches_the_lstm(sine):
    def fit(seed: int, **extra) -> Forecaster:
        params = {**FAST_LSTM, **extra}
        return Forecaster(
            model="lstm", freq="1h", horizon=12, lstm_params=params, random_state=seed
        ).fit(sine)

    assert fit(5).models_["lstm"].options.random_state == 5  # determinism: tested above
    assert fit(5, random_state=9).models_["lstm"].options.random_state == 9  # lstm_params wins
