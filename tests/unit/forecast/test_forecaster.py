import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone

from tests.unit.forecast.conftest import FAST_GBM
from zhuge.errors import InvalidRequest
from zhuge.ml.forecast import Forecaster, backtest


def test_auto_records_its_choice_and_why(small_fleet):
    f = Forecaster(model="auto", freq="1h", horizon=24, gbm_params=FAST_GBM)
    assert f.fit(small_fleet) is f
    sel = f.selection_
    assert sel["strategy"] == "global" and sel["windows"] == 2
    assert set(sel["scores"]) == {
        "gbm",
        "last_value",
        "seasonal_naive",
        "window_median",
        "seasonal_median",
    }
    assert sel["chosen"] == min(sel["scores"], key=sel["scores"].get) == f.model_
    assert sel["chosen"] == "gbm"  # the fleet has structure a global model learns
    assert sel["chosen"] in sel["reason"]
    out = f.predict()
    assert list(out.columns) == ["series_id", "timestamp", "yhat", "yhat_q10", "yhat_q90", "model"]
    assert len(out) == 60 * 24 and out["yhat"].notna().all()
    assert (out["model"] == "gbm").all()


def test_per_series_selection_counts(small_fleet):
    f = Forecaster(
        model="auto", freq="1h", horizon=12, selection="per_series", gbm_params=FAST_GBM
    ).fit(small_fleet)
    assert sum(f.selection_["counts"].values()) == 60
    assert set(f.predict()["model"]) <= set(f.selection_["counts"])


def test_too_short_series_fall_back_with_a_note(small_fleet):
    stamps = pd.date_range("2024-01-21", periods=30, freq="h")
    short = pd.DataFrame({"series_id": "new-vm", "timestamp": stamps, "value": 5.0})
    tiny = pd.DataFrame({"series_id": "tiny-vm", "timestamp": stamps[-5:], "value": 1.0})
    frame = pd.concat([small_fleet, short, tiny])
    f = Forecaster(model="auto", freq="1h", horizon=24, gbm_params=FAST_GBM).fit(frame)
    assert any("shorter than 2 days" in note for note in f.notes_)
    models = f.predict().groupby("series_id")["model"].first()
    assert models["new-vm"] == "seasonal_naive" and models["tiny-vm"] == "last_value"
    assert models["vm-00000"] == "gbm"


def test_only_short_history_still_forecasts():
    stamps = pd.date_range("2024-01-01", periods=30, freq="h")
    frame = pd.DataFrame({"series_id": "a", "timestamp": stamps, "value": np.arange(30.0)})
    f = Forecaster(freq="1h", horizon=4).fit(frame)
    assert f.model_ == "seasonal_naive" and f.selection_["strategy"] == "none"
    assert len(f.predict()) == 4


def test_quantiles_are_monotone(small_fleet):
    levels = (0.05, 0.25, 0.5, 0.75, 0.95)
    f = Forecaster(model="gbm", freq="1h", horizon=24, quantiles=levels, gbm_params=FAST_GBM)
    out = f.fit(small_fleet).predict()
    cols = ["yhat_q5", "yhat_q25", "yhat_q50", "yhat_q75", "yhat_q95"]
    q = out[cols].to_numpy()
    assert (np.diff(q, axis=1) >= 0).all()
    assert (q[:, -1] > q[:, 0]).mean() > 0.99


def test_bucket_target_predicts_bands_and_backtest_reports_accuracy(small_fleet):
    f = Forecaster(model="seasonal_naive", freq="1h", horizon=24, target="bucket")
    out = f.fit(small_fleet).predict()
    assert set(out["bucket"].cat.categories) == {"0-25", "25-50", "50-75", "75-100"}
    # each band holds [low, high); the outer bands take what is below 0 or above 100
    yhat = out["yhat"].to_numpy()
    expected = np.select([yhat < 25, yhat < 50, yhat < 75], ["0-25", "25-50", "50-75"], "75-100")
    assert (out["bucket"].astype(str).to_numpy() == expected).all()
    assert out["bucket"].nunique() >= 2  # the comparison covers more than one band
    result = backtest(
        small_fleet,
        freq="1h",
        horizon=24,
        windows=1,
        models=("gbm",),
        buckets=(0, 25, 50, 75, 100),
        gbm_params=FAST_GBM,
    )
    acc = result.overall.set_index("model")["bucket_accuracy"]
    assert acc.between(0, 1).all() and acc["gbm"] > 0.7


def test_sklearn_contract_and_validation(small_fleet):
    f = Forecaster(model="seasonal_naive", horizon=6)
    assert clone(f).get_params() == f.get_params()
    with pytest.raises(TypeError):
        Forecaster("gbm")  # keyword-only
    with pytest.raises(InvalidRequest, match="unknown model"):
        Forecaster(model="prophet").fit(small_fleet)
    with pytest.raises(InvalidRequest, match="quantiles"):
        Forecaster(quantiles=(0.1, 1.5)).fit(small_fleet)


def test_predict_on_new_frame_uses_the_global_model(small_fleet):
    f = Forecaster(model="gbm", freq="1h", horizon=6, quantiles=(), gbm_params=FAST_GBM)
    f.fit(small_fleet[small_fleet["series_id"] < "vm-00030"])
    out = f.predict(small_fleet[small_fleet["series_id"] >= "vm-00030"])
    assert out["series_id"].nunique() == 30 and out["yhat"].notna().all()
    assert list(out.columns) == ["series_id", "timestamp", "yhat", "model"]


def test_five_minute_grid_uses_a_288_step_day():
    from zhuge.ml.forecast import synthetic_fleet

    frame = synthetic_fleet(vms=20, days=5, freq="5min", seed=2)
    f = Forecaster(model="auto", freq="5min", horizon=36, gbm_params=FAST_GBM).fit(frame)
    assert f.season_ == 288 and f.selection_["windows"] == 2
    out = f.predict()
    assert len(out) == 20 * 36 and out["yhat"].notna().all()
    steps = out.groupby("series_id")["timestamp"].diff().dropna()
    assert (steps == pd.Timedelta("5min")).all()
