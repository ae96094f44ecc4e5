import importlib.util

import numpy as np
import pytest

from zhuge.errors import MissingDependency
from zhuge.ml.forecast import Forecaster, statsforecast_predict, synthetic_fleet, to_fleet

TORCH = importlib.util.find_spec("torch") is not None


def test_statsforecast_autoets_matches_shape_and_handles_gaps():
    fleet = to_fleet(synthetic_fleet(vms=3, days=5, freq="1h", seed=1), freq="1h")
    values = fleet.values.copy()
    values[0, 50:53] = np.nan
    values[2, :] = np.nan  # empty: last value (NaN), not a crash
    out = statsforecast_predict(values, 6, 24, model="autoets")
    assert out.shape == (3, 6)
    assert np.isfinite(out[:2]).all() and np.isnan(out[2]).all()


@pytest.mark.skipif(TORCH, reason="checks the message shown when torch is absent")
def test_lstm_without_torch_names_the_extra():
    frame = synthetic_fleet(vms=3, days=5, freq="1h", seed=1)
    with pytest.raises(MissingDependency, match=r"pip install zhuge\[torch\]"):
        Forecaster(model="lstm", freq="1h", horizon=6, quantiles=()).fit(frame)


@pytest.mark.skipif(not TORCH, reason="torch is not installed (pip install zhuge[torch])")
def test_lstm_fits_and_forecasts(tmp_path):
    from zhuge.ml.forecast import load, save

    frame = synthetic_fleet(vms=20, days=10, freq="1h", seed=1)
    f = Forecaster(
        model="lstm",
        freq="1h",
        horizon=6,
        quantiles=(),
        lstm_params={"epochs": 2, "max_windows": 2000},
    )
    out = f.fit(frame).predict()
    assert out["yhat"].notna().all()
    save(f, tmp_path.as_uri())
    np.testing.assert_allclose(load(tmp_path.as_uri()).predict()["yhat"], out["yhat"], rtol=1e-5)
