"""The forecast job kinds' own parts, run in-process (no platform, no Dask)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from zhuge.data import write_fleet
from zhuge.errors import DataError, InvalidParams, InvalidRequest
from zhuge.jobs.context import local_context
from zhuge.jobs.forecast import ForecastParams, horizon_steps, parse_horizon
from zhuge.jobs.kinds import get_kind
from zhuge.ml.forecast.chunked import Pipeline, sample_series


def run(kind: str, params: dict, root, job_id: int):
    spec = get_kind(kind)
    ctx = local_context(job_id, artifacts_url=root.as_uri())
    return spec.run(spec.parse(spec.normalise(params)), ctx)


@pytest.fixture(scope="module")
def fleet(tmp_path_factory) -> str:
    folder = tmp_path_factory.mktemp("fleet")
    return write_fleet(folder, 24, 5, "5min", seed=7).telemetry


def test_horizon_is_any_duration_rounded_up_to_steps():
    assert horizon_steps("24h", "1h") == 24
    assert horizon_steps("90min", "1h") == 2
    assert horizon_steps("1d", "5min") == 288
    for bad in ("tomorrow", "0h", "24"):
        with pytest.raises(InvalidRequest, match="horizon"):
            parse_horizon(bad)


PIPELINE = Pipeline(
    freq="5min", horizon="2h", horizon_steps=24, agg="max", level="host", sample_freq="1min",
    target="mean", buckets=[0.0, 50.0, 100.0], quantiles=[0.1, 0.9],
)  # fmt: skip


def test_forecast_params_come_from_the_reused_model_or_the_defaults():
    fresh = ForecastParams(input="x.parquet").resolved()
    assert (fresh.freq, fresh.horizon, fresh.level, fresh.quantiles) == ("1h", "24h", "vm", [])
    reused = ForecastParams(input="x.parquet", model_from=3, horizon="120min").resolved(PIPELINE)
    assert (reused.freq, reused.agg, reused.level, reused.quantiles) == (
        "5min", "max", "host", [0.1, 0.9]
    )  # fmt: skip
    with pytest.raises(DataError, match="job 3 was trained with level='host', not 'vm'"):
        ForecastParams(input="x.parquet", model_from=3, level="vm").resolved(PIPELINE)
    with pytest.raises(DataError, match="horizon"):
        ForecastParams(input="x.parquet", model_from=3, horizon="3h").resolved(PIPELINE)


def test_parameters_are_checked_with_the_field_named():
    with pytest.raises(InvalidParams) as err:
        get_kind("backtest").normalise({"input": "x", "models": ["auto", "prophet"]})
    assert err.value.details[0]["loc"] == ["models"]
    with pytest.raises(InvalidParams) as err:
        get_kind("prepare").normalise({"input": "x", "freq": "1h", "sample_freq": "7min"})
    assert "sample_freq 7min must divide freq 1h" in err.value.details[0]["msg"]


def test_sample_is_bounded_random_and_whole_series(tmp_path):
    parts, counts = [], []
    for p in range(3):
        frame = pd.DataFrame(
            {
                "series_id": np.repeat([f"s{p}-{i}" for i in range(7)], 4),
                "timestamp": np.tile(pd.date_range("2024-01-01", periods=4, freq="1h"), 7),
                "value": 1.0,
            }
        )
        path = tmp_path / f"part{p}.parquet"
        frame.to_parquet(path)
        parts.append(str(path))
        counts.append(7)
    sample = sample_series(parts, counts, 5, seed=1)
    assert sample["series_id"].nunique() == 5
    assert (sample.groupby("series_id").size() == 4).all()
    pd.testing.assert_frame_equal(sample, sample_series(parts, counts, 5, seed=1))
    assert sample_series(parts, counts, 100)["series_id"].nunique() == 21


def test_chunking_does_not_change_the_forecast(fleet, tmp_path):
    params = {"input": fleet, "horizon": "6h", "model": "gbm", "quantiles": [0.2, 0.8]}
    one = run("forecast", {**params, "chunk_series": 1000}, tmp_path / "a", 1)
    many = run("forecast", {**params, "chunk_series": 5}, tmp_path / "b", 2)
    assert many["prepare"]["chunks"] == 5 and one["prepare"]["chunks"] == 1
    a = pd.read_parquet(one["artifacts"]["forecast"].removeprefix("file://"))
    b = pd.read_parquet(many["artifacts"]["forecast"].removeprefix("file://"))
    pd.testing.assert_frame_equal(a, b)
    assert len(a) == 24 * 6 and set(a["model"]) <= {"gbm", "seasonal_naive", "last_value"}


def test_a_tampered_model_is_refused(fleet, tmp_path):
    run("train", {"input": fleet, "horizon": "3h", "model": "seasonal_naive"}, tmp_path, 5)
    model = tmp_path / "jobs/5/attempt-1/model"
    config = json.loads((model / "config.json").read_text())
    config["model_"] = "last_value"
    (model / "config.json").write_text(json.dumps(config))
    with pytest.raises(DataError, match="does not match its manifest hash"):
        run("forecast", {"input": fleet, "model_from": 5}, tmp_path, 6)
    with pytest.raises(DataError, match="job 9 saved no forecast model"):
        run("forecast", {"input": fleet, "model_from": 9}, tmp_path, 7)


def test_input_not_grouped_by_series_is_hash_partitioned(fleet, tmp_path):
    frame = pd.read_parquet(fleet).sample(frac=1.0, random_state=0)  # rows shuffled
    shuffled = tmp_path / "shuffled.parquet"
    frame.to_parquet(shuffled)
    result = run("prepare", {"input": str(shuffled), "chunk_series": 10}, tmp_path, 1)
    report = pd.read_parquet(result["artifacts"]["report"].removeprefix("file://"))
    assert sorted(report["series_id"]) == sorted(frame["series_id"].unique())
    assert report["rows_in"].sum() == len(frame)
    assert result["series"] == 24 and result["sample_freq"] == "5min"
