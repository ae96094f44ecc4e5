import json

import numpy as np
import pytest

from tests.unit.forecast.conftest import FAST_GBM
from zhuge.artifacts import ArtifactDir
from zhuge.errors import DataError, ModelNotFound
from zhuge.ml.forecast import BASELINES, Forecaster, backtest, load, save


def test_backtest_always_includes_baselines(small_fleet):
    result = backtest(
        small_fleet, freq="1h", horizon=12, windows=2, models=("gbm",), gbm_params=FAST_GBM
    )
    assert set(result.overall["model"]) == {"gbm", *BASELINES}
    assert len(result.per_series) == (1 + len(BASELINES)) * 2 * 60
    assert result.per_series["mase"].notna().all()
    assert result.overall["coverage"].between(0, 1).all()
    with pytest.raises(DataError, match="backtest windows"):
        backtest(small_fleet, freq="1h", horizon=200, windows=3)


def test_save_load_round_trip_and_tamper(tmp_path, small_fleet):
    f = Forecaster(model="auto", freq="1h", horizon=12, gbm_params=FAST_GBM).fit(small_fleet)
    target = ArtifactDir(tmp_path.as_uri())
    manifest = save(f, target)
    assert manifest["kind"] == "zhuge.forecast.forecaster"
    assert "gbm.txt" in manifest["files"] and "lightgbm" in manifest["libraries"]
    assert not any(name.endswith((".pkl", ".joblib")) for name in manifest["files"])
    again = load(target)
    assert again.selection_ == json.loads(json.dumps(f.selection_))
    before, after = f.predict(), again.predict()
    np.testing.assert_allclose(after["yhat"], before["yhat"])
    np.testing.assert_allclose(after["yhat_q90"], before["yhat_q90"])
    assert (after["timestamp"] == before["timestamp"]).all()

    model_file = tmp_path / "gbm.txt"
    model_file.write_text(model_file.read_text().replace("num_leaves", "num_leavez", 1))
    with pytest.raises(ModelNotFound, match="manifest hash"):
        load(target)


def test_load_refuses_other_kinds(tmp_path):
    target = ArtifactDir(tmp_path.as_uri())
    target.save({"x.json": b"{}"}, kind="something.else")
    with pytest.raises(ModelNotFound, match="not a"):
        load(target)
