"""``zhuge forecast`` / ``backtest`` / ``prepare`` / ``train`` / ``demo-data`` end to end.

Successful commands run their job on an embedded platform (a local Dask cluster, seconds to
start), so each test runs few of them on a small fleet; bad input fails in the command's own
checks, before any platform starts, and must leave nothing behind.
"""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from zhuge.cli import app
from zhuge.jobs.connections import Connections
from zhuge.jobs.store import JobStore

pytestmark = pytest.mark.slow

BASELINES = {"last_value", "seasonal_naive", "window_median", "seasonal_median"}


def invoke(env, *args: str):
    return CliRunner().invoke(app, list(args), env=env)


def ok_json(env, *args: str) -> dict:
    result = invoke(env, *args, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> dict:
    """A messy demo fleet written by the command itself: 40 VMs, 9 days at 5 minutes."""
    folder = tmp_path_factory.mktemp("demo")
    env = {"COLUMNS": "140"}
    result = invoke(env, "demo-data", "fleet", "--vms", "40", "--days", "9", "--seed", "3",
                    "--out", str(folder), "--json")  # fmt: skip
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    telemetry = pd.read_parquet(summary["telemetry"])
    vms = pd.read_parquet(summary["vms"])
    assert summary["series"] == 40 == telemetry["series_id"].nunique() == len(vms)
    assert {"host_id", "cluster_id", "memory_gb", "vcpus"} <= set(vms.columns)
    return {"folder": folder, "telemetry": summary["telemetry"], "vms": summary["vms"]}


@pytest.fixture
def demo_env(env, demo) -> dict[str, str]:
    """``env`` whose jobs may also read the demo fleet (written once, outside ``tmp_path``)."""
    roots = os.pathsep.join([env["ZHUGE_DATA_ROOTS"], str(demo["folder"])])
    return {**env, "ZHUGE_DATA_ROOTS": roots}


def test_train_bucket_target_then_forecast_with_its_model(demo, demo_env, tmp_path):
    trained = ok_json(demo_env, "train", "--input", demo["telemetry"], "--freq", "1h",
                      "--horizon", "24h", "--quantiles", "0.1,0.9", "--target", "bucket")  # fmt: skip
    model = trained["model"]
    assert model["requested"] == "auto" and model["metric"] == "bucket_error"
    assert BASELINES | {"gbm"} <= set(model["scores"])
    assert model["scores"][model["chosen"]] == min(model["scores"].values())
    assert 0 < model["bucket_accuracy"] <= 1
    assert model["bucket_accuracy"] == pytest.approx(1 - model["scores"][model["chosen"]])
    assert trained["pipeline"]["target"] == "bucket" and trained["trained_on_series"] == 40
    # the model is an artifact with a manifest of hashes and the preparation it was trained on
    model_dir = Path(trained["artifacts"]["model"].removeprefix("file://"))
    manifest = json.loads((model_dir / "manifest.json").read_text())
    assert {"config.json", "history.parquet", "pipeline.json"} <= set(manifest["files"])
    assert all(len(h) == 64 for h in manifest["files"].values())

    out = tmp_path / "forecast.parquet"
    report = ok_json(demo_env, "forecast", "--input", demo["telemetry"],
                     "--model-from", str(trained["job_id"]), "--out", str(out))  # fmt: skip
    assert report["model_from"] == trained["job_id"] and report["trained_on_series"] is None
    assert report["freq"] == "1h" and report["horizon_steps"] == 24
    forecast = pd.read_parquet(out)
    assert list(forecast.columns) == [
        "series_id", "timestamp", "yhat", "yhat_q10", "yhat_q90", "model", "bucket"
    ]  # fmt: skip
    assert report["columns"] == list(forecast.columns)
    assert forecast["series_id"].nunique() == 40 and len(forecast) == 40 * 24 == report["rows"]
    assert (forecast.groupby("series_id")["timestamp"].diff().dropna() == pd.Timedelta("1h")).all()
    assert (forecast["yhat_q10"] <= forecast["yhat"] + 1e-9).all()
    assert (forecast["yhat"] <= forecast["yhat_q90"] + 1e-9).all()
    assert forecast["yhat"].between(0, 100).all()
    band = np.clip(np.digitize(forecast["yhat"], [25, 50, 75]), 0, 3)
    assert (forecast["bucket"].cat.codes.to_numpy() == band).all()
    assert sum(report["models_used"].values()) == 40

    # a reused model forecasts as it was trained: a different grid is refused, nothing written
    clash = tmp_path / "clash.parquet"
    result = invoke(demo_env, "forecast", "--input", demo["telemetry"], "--freq", "5min",
                    "--model-from", str(trained["job_id"]), "--out", str(clash))  # fmt: skip
    assert result.exit_code == 1
    assert "trained with freq='1h', not '5min'" in result.output
    assert not clash.exists()


def test_backtest_scores_models_next_to_every_baseline(demo, demo_env):
    report = ok_json(demo_env, "backtest", "--input", demo["telemetry"], "--freq", "1h",
                     "--horizon", "24h", "--windows", "2", "--model", "gbm")  # fmt: skip
    rows = {row["model"]: row for row in report["overall"]}
    assert set(rows) == {"gbm"} | BASELINES
    for row in rows.values():
        assert row["n_series"] == 40
        assert row["mase"] > 0 and 0 <= row["smape"] <= 200 and row["mae"] > 0
        assert 0 <= row["coverage"] <= 1
    mases = [row["mase"] for row in report["overall"]]
    assert mases == sorted(mases)
    # the global model learns the daily cycle the last-value baselines cannot see
    assert rows["gbm"]["mase"] < min(rows["last_value"]["mase"], rows["window_median"]["mase"])
    per_series = pd.read_parquet(report["artifacts"]["per_series"].removeprefix("file://"))
    assert len(per_series) == 5 * 2 * 40  # models x windows x series
    assert per_series.groupby("model")["mase"].mean().to_dict() == pytest.approx(
        {m: r["mase"] for m, r in rows.items()}
    )


def test_host_level_and_bucket_target(demo, demo_env, tmp_path):
    out = tmp_path / "hosts.parquet"
    result = invoke(demo_env, "forecast", "--input", demo["telemetry"], "--vms", demo["vms"],
                    "--level", "host", "--freq", "1h", "--horizon", "12h", "--model", "seasonal_naive",
                    "--target", "bucket", "--buckets", "0,20,40,100", "--out", str(out))  # fmt: skip
    assert result.exit_code == 0, result.output
    forecast = pd.read_parquet(out)
    hosts = pd.read_parquet(demo["vms"])["host_id"]
    assert set(forecast["series_id"]) == set(hosts)
    assert len(forecast) == hosts.nunique() * 12
    text = result.stdout  # the printed summary
    assert "What cleaning did" in text and "hosts forecast" in text
    assert f"{hosts.nunique()} host series x 12 steps of 1h" in text
    assert "model: seasonal_naive (asked: seasonal_naive" in text
    assert list(forecast["bucket"].cat.categories) == ["0-20", "20-40", "40-100"]
    band = np.digitize(forecast["yhat"], [20, 40])
    assert (forecast["bucket"].cat.codes.to_numpy() == band).all()
    assert set(forecast["model"]) == {"seasonal_naive"}


def _nab_long_csv(shared_data, path) -> pd.DataFrame:
    """NAB's AWS CPU series in one long CSV, with columns named as someone else names them."""
    frames = []
    for csv in sorted((shared_data / "nab" / "realAWSCloudwatch").glob("*_cpu_utilization_*.csv")):
        one = pd.read_csv(csv)
        frames.append(pd.DataFrame({"host": csv.stem, "ts": one["timestamp"], "cpu": one["value"]}))
    frame = pd.concat(frames, ignore_index=True)
    frame.to_csv(path, index=False)
    return frame


def test_nab_backtest_with_mapped_columns(shared_data, env, tmp_path):
    raw = _nab_long_csv(shared_data, tmp_path / "nab.csv")
    columns = "series_id=host,timestamp=ts,value=cpu"
    report = ok_json(env, "backtest", "--input", str(tmp_path / "nab.csv"), "--columns", columns,
                     "--freq", "1h", "--horizon", "24h", "--windows", "2")  # fmt: skip
    prep = report["prepare"]
    assert prep["timestamp_unit"] == "iso" and prep["sample_freq"] == "5min"
    assert prep["cleaning"]["snapped"] > 0  # NAB samples at 14:27, 14:32 ...
    rows = {row["model"]: row for row in report["overall"]}
    assert set(rows) == {"auto"} | BASELINES and rows["auto"]["n_series"] == len(set(raw["host"]))
    best_baseline = min(rows[b]["mase"] for b in BASELINES)
    # measured: auto 1.27 vs window median 1.39 on these 2 windows (3 windows, in the
    # engine's benchmark: 1.07 vs last value 1.17); 2 keep the test's time down
    assert rows["auto"]["mase"] <= best_baseline


def _messy_csv(path) -> None:
    """Series with each kind of mess, epoch-millisecond timestamps."""
    start = pd.Timestamp("2024-03-01").value // 10**6
    step = 300_000  # 5 minutes in ms
    rows = []
    n = 4 * 288  # four days
    t = np.arange(n)
    daily = 30 + 20 * np.sin(2 * np.pi * t / 288)
    for i in range(n):
        rows.append(("good", start + i * step + 60_000, daily[i]))  # one minute off the grid
        rows.append(("flat", start + i * step, 5.0))
        if not 100 <= i < 200:  # a 100-sample outage
            rows.append(("gappy", start + i * step, daily[i] + 150 * (i == 300)))
    for i in range(n - 40, n):  # a VM created 40 samples before the end
        rows.append(("new", start + i * step, 50.0 + (i % 3)))
    rows.append(rows[0])  # an exporter that retried
    pd.DataFrame(rows, columns=["vm", "epoch_ms", "cpu"]).to_csv(path, index=False)


def test_prepare_reports_every_rule_and_short_series_fall_back(env, tmp_path):
    _messy_csv(tmp_path / "messy.csv")
    cols = ["--columns", "series_id=vm,timestamp=epoch_ms,value=cpu"]
    out = tmp_path / "prepared.parquet"
    report = ok_json(env, "prepare", "--input", str(tmp_path / "messy.csv"), *cols,
                     "--freq", "1h", "--out", str(out))  # fmt: skip
    assert report["timestamp_unit"] == "ms"
    cleaning = report["cleaning"]
    assert cleaning["series"] == 4 and cleaning["rows_dropped_duplicates"] == 1
    assert cleaning["flat"] == 1 and cleaning["too_short"] == 1 and cleaning["clipped"] == 1
    assert cleaning["long_gaps"] == 1 and cleaning["long_gap_steps"] == 100
    assert cleaning["snapped"] == 4 * 288 + 1  # every sample of "good" (and its duplicate)
    per_series = pd.read_parquet(report["artifacts"]["report"].removeprefix("file://"))
    notes = dict(zip(per_series["series_id"], per_series["notes"], strict=True))
    assert "too short" in notes["new"] and "flat" in notes["flat"]
    assert "clipped" in notes["gappy"] and "left empty" in notes["gappy"]
    prepared = pd.read_parquet(out)
    assert prepared["value"].max() <= 100
    assert (prepared.groupby("series_id")["timestamp"].diff().dropna() == pd.Timedelta("1h")).all()

    forecast = ok_json(env, "forecast", "--input", str(tmp_path / "messy.csv"), *cols,
                       "--freq", "1h", "--horizon", "6h", "--model", "gbm")  # fmt: skip
    assert forecast["models_used"]["last_value"] == 1  # "new" has under a day: a baseline
    assert any("too short" in n or "shorter than" in n for n in forecast["model"]["notes"])


def test_sql_source(env, tmp_path):
    db = tmp_path / "metrics.db"
    rng = np.random.default_rng(0)
    times = pd.date_range("2024-01-01", periods=3 * 24, freq="1h")
    frame = pd.DataFrame(
        {
            "vm": np.repeat(["a", "b"], len(times)),
            "ts": np.tile(times.astype("int64") // 10**9, 2),
            "cpu": rng.uniform(10, 20, 2 * len(times)),
        }
    )
    with sqlite3.connect(db) as conn:
        frame.to_sql("cpu", conn, index=False)
    home = Path(env["ZHUGE_HOME"])
    home.mkdir(parents=True, exist_ok=True)
    store = JobStore.open(f"sqlite:///{home / 'zhuge.db'}")  # the embedded platform's
    Connections(store.engine).add(
        "metrics", f"sqlite:///{db}", tenant=None, created_by=None,
        platform_db_url=str(store.engine.url),
    )  # fmt: skip
    store.dispose()
    report = ok_json(env, "forecast", "--sql", "select vm, ts, cpu from cpu where vm = 'b'",
                     "--connection", "metrics", "--columns", "series_id=vm,timestamp=ts,value=cpu",
                     "--freq", "1h", "--horizon", "3h", "--model", "seasonal_naive")  # fmt: skip
    assert report["series"] == 1 and report["rows"] == 3
    assert report["prepare"]["timestamp_unit"] == "s" and report["prepare"]["sample_freq"] == "1h"
    forecast = pd.read_parquet(report["artifacts"]["forecast"].removeprefix("file://"))
    expected = frame.loc[frame["vm"] == "b", "cpu"].to_numpy()[-24:-21]
    np.testing.assert_allclose(forecast["yhat"].to_numpy(), expected)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--input", "{missing}"], "does not exist"),
        (["--input", "{csv}", "--columns", "serie_id=vm"], "unknown column(s) ['serie_id']"),
        (
            ["--input", "{csv}", "--columns", "series_id=machine"],
            "series_id (as 'machine') not found",
        ),
        (["--input", "{csv}", "--horizon", "tomorrow"], "horizon"),
        (["--input", "{csv}", "--model", "prophet"], "unknown model 'prophet'"),
        (["--input", "{csv}", "--quantiles", "0.1,1.5"], "between 0 and 1"),
        (["--input", "{csv}", "--freq", "15min"], "freq"),
        (["--input", "{csv}", "--level", "host"], "level host needs each VM's host_id"),
        (["--input", "{csv}", "--out", "{nofolder}"], "does not exist"),
        (["--input", "{text}"], "non-numeric"),
        (["--sql", "select 1"], "sql needs connection"),
        ([], "give exactly one of input"),
    ],
)
def test_bad_input_fails_clearly_and_writes_nothing(args, message, env, tmp_path):
    csv = tmp_path / "ok.csv"
    pd.DataFrame({"series_id": ["a"], "timestamp": ["2024-01-01 00:00"], "value": [1.0]}).to_csv(
        csv, index=False
    )
    text = tmp_path / "text.csv"
    pd.DataFrame({"series_id": ["a"], "timestamp": ["2024-01-01"], "value": ["high"]}).to_csv(
        text, index=False
    )
    paths = {
        "missing": str(tmp_path / "nope.parquet"),
        "csv": str(csv),
        "text": str(text),
        "nofolder": str(tmp_path / "no" / "forecast.parquet"),
    }
    filled = [a.format(**paths) for a in args]
    before = sorted(p.name for p in tmp_path.iterdir())
    result = (
        invoke(env, "forecast", *filled, "--out", str(tmp_path / "f.parquet"))
        if ("--out" not in filled)
        else invoke(env, "forecast", *filled)
    )
    assert result.exit_code == 1, result.output
    assert message in result.output
    assert "Traceback" not in result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # no output, no ZHUGE_HOME


def test_bad_input_as_json(env, tmp_path):
    result = invoke(env, "backtest", "--input", str(tmp_path / "nope.csv"), "--json")
    assert result.exit_code == 1
    error = json.loads(result.stdout)["error"]
    assert error["type"] == "DataError" and "does not exist" in error["message"]


def test_demo_data_refuses_bad_sizes(env, tmp_path):
    result = invoke(env, "demo-data", "fleet", "--vms", "0", "--out", str(tmp_path / "d"))
    assert result.exit_code == 1 and "--vms must be at least 1" in result.output
    assert not (tmp_path / "d").exists()
