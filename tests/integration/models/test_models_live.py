# ruff: noqa: F811  (the world fixture is imported from test_models_gate)
"""Live scoring replayed day by day on three NAB CPU series: each day the champion forecasts
the next 24 h, then the day is revealed (a newer version of the dataset) and scored. The live
record's MASE equals a direct computation on the prepared actuals; a planted drift (the load
turned into an hourly square wave) triggers the configured action, a retrain, exactly once."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest

from tests.integration.models.test_models_gate import db_url, world  # noqa: F401 (fixtures)
from zhuge.jobs.datasets import Datasets
from zhuge.ml.forecast.chunked import read_parquet_url

SERIES = 3
START = pd.Timestamp("2014-02-21")  # the champion is trained on what comes before
DAYS = 5  # replayed normally
CONFIG = {"min_series": 2, "drift_factor": 3.0, "drift_scorings": 2, "drift_action": "retrain"}


@pytest.fixture
def nab(shared_data) -> pd.DataFrame:
    files = sorted((shared_data / "nab" / "realAWSCloudwatch").glob("ec2_cpu_utilization_*"))
    frames = [
        pd.read_csv(f, parse_dates=["timestamp"]).assign(series_id=f.stem[-6:])
        for f in files[:SERIES]
    ]
    return pd.concat(frames, ignore_index=True)[["series_id", "timestamp", "value"]]


def put(world, frame: pd.DataFrame) -> str:
    buf = io.BytesIO()
    frame.to_csv(buf, index=False)
    datasets = Datasets(world.store.engine, world.settings.artifacts_root)
    version, _ = datasets.put("acme", "nab", [buf.getvalue()], created_by=None, max_bytes=2**30)
    return version.ref


def square_wave(frame: pd.DataFrame, since: pd.Timestamp) -> pd.DataFrame:
    """From ``since`` on, every series alternates 0 and 100 hour by hour."""
    out = frame.copy()
    late = out["timestamp"] >= since
    odd = (out["timestamp"].dt.floor("h") - since) // pd.Timedelta("1h") % 2 == 1
    out.loc[late, "value"] = np.where(odd[late], 100.0, 0.0)
    return out


def direct_mase(world, forecast_job, revealed: str) -> float:
    """MASE computed here: the actuals as ``prepare`` makes them, each series' MAE over the
    forecast's slots / its in-sample seasonal-naive (24 h) MAE before them, mean over series."""
    prepared = world.run("prepare", {"input": revealed, "freq": "1h"})
    actual = read_parquet_url(prepared.result["artifacts"]["prepared"])
    forecast = read_parquet_url(
        world.settings.artifacts_root
        + f"/{forecast_job.artifact_prefix()}/{forecast_job.result['output']}"
    )
    start = forecast["timestamp"].min()
    values = []
    for sid, fc in forecast.groupby("series_id"):
        mine = actual[actual["series_id"] == sid].set_index("timestamp")["value"].sort_index()
        history = mine[mine.index < start].to_numpy()
        scale = np.nanmean(np.abs(history[24:] - history[:-24]))
        got = mine.reindex(fc["timestamp"]).to_numpy()
        keep = ~np.isnan(got)
        values.append(np.mean(np.abs(got[keep] - fc["yhat"].to_numpy()[keep])) / scale)
    return float(np.mean(values))


@pytest.mark.data
def test_live_scoring_replayed_day_by_day_and_drift_acts_once(world, nab):
    world.train("nab-cpu", put(world, nab[nab["timestamp"] < START]), config=CONFIG)
    drifted = square_wave(nab, START + pd.Timedelta(days=DAYS))
    end = drifted["timestamp"].max()
    day, scorings = 0, 0
    while START + pd.Timedelta(days=day) < end:
        cut = START + pd.Timedelta(days=day)
        known = world.write(f"known-{day}", drifted[drifted["timestamp"] < cut])
        forecast = world.run(
            "forecast", {"input": known, "model_from": "nab-cpu@champion", "horizon": "24h"}
        )
        assert forecast.state.value == "succeeded", forecast.error
        revealed = drifted[drifted["timestamp"] < cut + pd.Timedelta(days=1)]
        ref = put(world, revealed)
        world.sdk["acme"].submit("model-score", {"model": "nab-cpu", "input": ref})
        done = world.run_queued()
        assert [j.state.value for j in done] == ["succeeded"], [j.error for j in done]
        (row,) = done[0].result["scored"]
        scorings += 1
        assert row["job"] == forecast.id and row["version"] == 1
        if day < DAYS:  # a normal day: the live record says what a direct computation says
            path = world.write(f"revealed-{day}", revealed)
            assert row["mase"] == pytest.approx(direct_mase(world, forecast, path), rel=1e-9)
            assert not row["drifted"], row
            assert 0.0 <= row["coverage"] <= 1.0
        else:
            assert row["drifted"], row
        retrains = [
            j for j in world.store.list(tenant="acme", limit=500) if j.kind == "model-train"
        ][:-1]  # the champion's own training is the oldest
        if day == DAYS:  # one drifted scoring: not yet
            assert "action" not in row and retrains == []
        if day == DAYS + 1:  # the second in a row: retrain, once
            assert row["action"]["action"] == "retrain" and len(retrains) == 1
            assert retrains[0].params["input"] == "dataset://nab"  # the newest version
            world.store.cancel(retrains[0].id)
        if day > DAYS + 1:  # the streak starts again after the action
            assert "action" not in row and len(retrains) == 1
        day += 1
    assert day == DAYS + 3 and scorings == day
    shown = world.sdk["acme"].model("nab-cpu")
    assert len(shown["live"]) == scorings
    drift = [e for e in shown["events"] if e["action"] == "drift"]
    assert len(drift) == 1 and "retraining on dataset://nab" in drift[0]["reason"]
    from zhuge.cli.common import console
    from zhuge.cli.models import print_model

    with console.capture() as printed:
        print_model(shown)
    assert "drift version 1: live MASE above 3.0 x the gate's" in printed.get()
    assert "live record" in printed.get()
    audit = world.store.tenancy.audit(tenant="acme")
    assert [a.action for a in audit].count("model.drift") == 1
