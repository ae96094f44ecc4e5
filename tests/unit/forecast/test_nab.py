"""Real data: NAB AWS CloudWatch CPU series (5 min, off-grid), resampled to hourly means."""

import pandas as pd
import pytest

from zhuge.ml.forecast import BASELINES, backtest


def nab_cpu(shared_data) -> pd.DataFrame:
    frames = []
    for path in sorted((shared_data / "nab" / "realAWSCloudwatch").glob("*_cpu_utilization_*.csv")):
        raw = pd.read_csv(path, parse_dates=["timestamp"])
        hourly = raw.set_index("timestamp")["value"].resample("1h").mean().reset_index()
        frames.append(hourly.assign(series_id=path.stem))
    return pd.concat(frames, ignore_index=True)


@pytest.mark.data
def test_auto_is_no_worse_than_the_best_baseline_on_nab_cpu(shared_data):
    frame = nab_cpu(shared_data)
    assert frame["series_id"].nunique() >= 8
    result = backtest(
        frame,
        freq="1h",
        horizon=24,
        windows=3,
        models=("auto",),
        gbm_params={"num_boost_round": 100, "n_jobs": 1},
    )
    mase = result.overall.set_index("model")["mase"]
    best_baseline = mase[list(BASELINES)].min()
    assert mase["auto"] <= best_baseline + 1e-9, result.overall
    assert "autoets" in result.selections["auto"][0]["scores"]  # small fleet: ETS tried too
