import numpy as np

from tests.unit.forecast.conftest import FAST_GBM
from zhuge.ml.forecast import GBMOptions, GlobalGBM, mase_matrix, seasonal_naive, to_fleet


def test_gbm_beats_seasonal_naive_on_known_structure(small_fleet):
    fleet = to_fleet(small_fleet, freq="1h")
    h = 24
    history, actual = fleet.head(fleet.n_steps - h), fleet.values[:, -h:]
    model = GlobalGBM(GBMOptions(**FAST_GBM)).fit(
        history.values,
        history.steps_since_monday(),
        season=24,
        freq_ns=fleet.freq.value,
        horizon=h,
    )
    gbm = model.predict(history.values, history.steps_since_monday(), h)
    naive = seasonal_naive(history.values, h, 24)
    gbm_mase = np.mean(mase_matrix(actual, gbm, history.values, 24))
    naive_mase = np.mean(mase_matrix(actual, naive, history.values, 24))
    assert gbm.shape == (fleet.n_series, h)
    assert gbm_mase < 0.9 * naive_mase


def test_gbm_text_state_round_trip(small_fleet):
    fleet = to_fleet(small_fleet, freq="1h")
    model = GlobalGBM(GBMOptions(**FAST_GBM)).fit(
        fleet.values, fleet.steps_since_monday(), season=24, freq_ns=fleet.freq.value, horizon=6
    )
    meta, text = model.to_state()
    again = GlobalGBM.from_state(meta, text)
    np.testing.assert_allclose(
        again.predict(fleet.values, fleet.steps_since_monday(), 6),
        model.predict(fleet.values, fleet.steps_since_monday(), 6),
    )


def test_gbm_tolerates_nan_and_predicts_long_horizons(small_fleet):
    fleet = to_fleet(small_fleet, freq="1h")
    values = fleet.values.copy()
    rng = np.random.default_rng(0)
    values[rng.random(values.shape) < 0.05] = np.nan
    model = GlobalGBM(GBMOptions(**FAST_GBM)).fit(
        values, fleet.steps_since_monday(), season=24, freq_ns=fleet.freq.value, horizon=60
    )
    out = model.predict(values, fleet.steps_since_monday(), 60)
    assert out.shape == (fleet.n_series, 60) and np.isfinite(out).all()
