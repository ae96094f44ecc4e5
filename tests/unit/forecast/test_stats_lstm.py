import sys

import numpy as np
import pytest

from zhuge.errors import MissingDependency
from zhuge.ml.forecast import Forecaster, statsforecast_predict, synthetic_fleet, to_fleet


def test_statsforecast_autoets_matches_shape_and_handles_gaps():
    fleet = to_fleet(synthetic_fleet(vms=3, days=5, freq="1h", seed=1), freq="1h")
    values = fleet.values.copy()
    values[0, 50:53] = np.nan
    values[2, :] = np.nan  # empty: last value (NaN), not a crash
    out = statsforecast_predict(values, 6, 24, model="autoets")
    assert out.shape == (3, 6)
    assert np.isfinite(out[:2]).all() and np.isnan(out[2]).all()


def test_lstm_without_torch_names_the_extra(monkeypatch):
    # CI has torch: simulate its absence (a None entry makes ``import torch`` fail)
    monkeypatch.setitem(sys.modules, "torch", None)
    frame = synthetic_fleet(vms=3, days=5, freq="1h", seed=1)
    with pytest.raises(MissingDependency, match=r"pip install zhuge\[torch\]") as caught:
        Forecaster(model="lstm", freq="1h", horizon=6, quantiles=()).fit(frame)
    assert isinstance(caught.value.__cause__, ImportError)
