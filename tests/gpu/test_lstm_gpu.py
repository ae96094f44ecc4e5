"""The LSTM forecaster on CUDA: trains and forecasts there, matches CPU quality, and a model
trained on the GPU forecasts on a CPU-only machine. Skipped where no NVIDIA GPU is visible."""

from __future__ import annotations

import numpy as np
import pytest

from zhuge.hardware import gpu_count
from zhuge.ml.forecast import Forecaster, load, mase_matrix, save, synthetic_fleet, to_fleet
from zhuge.ml.forecast.torch_lstm import LSTMModel, require_torch

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(gpu_count() == 0, reason="no NVIDIA GPU visible"),
]

HORIZON = 24
OPTIONS = {"hidden": 32, "max_epochs": 10, "max_windows": 8000, "random_state": 0}
# Relative MASE tolerance between a GPU (bf16 autocast, cuDNN) and a CPU (fp32) fit of the
# same data and seed. The two take different optimisation paths (bf16 rounding, cuDNN's
# non-deterministic kernels), so the gap is a seed-to-seed gap: on CPU, seeds 0..3 of this
# exact setup gave mean MASE 0.823..0.833, a 1.2% spread (benchmarks/README_gpu.md);
# 6% is five times that: room for the GPU path, not for a broken one (>= 10% worse).
MASE_TOLERANCE = 0.06


@pytest.fixture(scope="module")
def torch():
    torch = require_torch()
    assert torch.cuda.is_available(), f"a GPU is visible but torch {torch.__version__} has no CUDA"
    return torch


@pytest.fixture(scope="module")
def split():
    fleet = to_fleet(synthetic_fleet(vms=300, days=14, freq="1h", seed=5), freq="1h")
    history = fleet.head(fleet.n_steps - HORIZON)
    return history, fleet.values[:, -HORIZON:]


def _mase(model: LSTMModel, history, actual) -> float:
    forecast = model.predict(history, HORIZON)
    return float(np.nanmean(mase_matrix(actual, forecast, history.values, history.season)))


@pytest.fixture(scope="module")
def gpu_model(torch, split):
    history, _ = split
    return LSTMModel(**OPTIONS, device="cuda", precision="bf16").fit(history, HORIZON)


def test_trains_and_forecasts_on_cuda_in_bf16(torch, gpu_model, split):
    history, _ = split
    assert gpu_model.device_.startswith("cuda")
    assert gpu_model.precision_ == "bf16"
    assert all(p.device.type == "cuda" for p in gpu_model.net_.parameters())
    assert all(p.dtype == torch.float32 for p in gpu_model.net_.parameters())  # master weights
    forecast = gpu_model.predict(history, HORIZON)
    assert forecast.shape == (history.n_series, HORIZON) and np.isfinite(forecast).all()
    assert gpu_model.best_epoch_ >= 1  # it learnt something beyond its seasonal-mean start


def test_gpu_quality_is_close_to_cpu(gpu_model, split):
    history, actual = split
    cpu_model = LSTMModel(**OPTIONS, device="cpu").fit(history, HORIZON)
    gpu, cpu = _mase(gpu_model, history, actual), _mase(cpu_model, history, actual)
    assert abs(gpu - cpu) <= MASE_TOLERANCE * cpu, (gpu, cpu)


def test_gpu_trained_model_forecasts_on_cpu(torch, gpu_model, split):
    history, _ = split
    on_cpu = LSTMModel.from_bytes(gpu_model.to_bytes(), device="cpu")
    assert all(p.device.type == "cpu" for p in on_cpu.net_.parameters())
    cpu_forecast = on_cpu.predict(history, HORIZON)
    gpu_forecast = gpu_model.predict(history, HORIZON)
    # the same weights; only bf16 autocast on the GPU differs (about 3 significant digits)
    scale = np.abs(gpu_forecast).mean()
    assert np.abs(cpu_forecast - gpu_forecast).mean() < 0.01 * scale


def test_forecaster_saved_on_gpu_loads_where_no_gpu_is_visible(torch, tmp_path, monkeypatch):
    frame = synthetic_fleet(vms=50, days=10, freq="1h", seed=2)
    params = {**OPTIONS, "max_epochs": 3, "max_windows": 2000, "device": "cuda"}
    f = Forecaster(
        model="lstm", freq="1h", horizon=HORIZON, quantiles=(0.1, 0.9), lstm_params=params
    )
    expected = f.fit(frame).predict()
    save(f, tmp_path.as_uri())
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # a CPU-only machine
    loaded = load(tmp_path.as_uri())
    assert loaded.models_["lstm"].net_.head.weight.device.type == "cpu"
    got = loaded.predict()
    assert np.isfinite(got["yhat"]).all()
    np.testing.assert_allclose(got["yhat"], expected["yhat"], rtol=0.02, atol=0.05)
