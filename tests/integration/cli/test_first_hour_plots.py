"""Plots: the files are written, are PNGs and show something (not a blank canvas)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from zhuge.cli import app
from zhuge.cli.plot import draw_clusters, draw_forecast, draw_plan
from zhuge.errors import DataError

pytest.importorskip("matplotlib", reason="plots need the plot extra")


def _assert_picture(path, min_bytes: int = 10_000) -> None:
    from matplotlib.image import imread

    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(data) > min_bytes
    pixels = imread(path)[..., :3].reshape(-1, 3)
    colours = np.unique((pixels * 255).astype(np.uint8), axis=0)
    assert len(colours) > 20  # lines, bands, labels: far more than a blank canvas


def _forecast() -> tuple[pd.DataFrame, pd.DataFrame]:
    t = pd.date_range("2024-01-01", periods=24 * 7, freq="1h")
    history = pd.DataFrame(
        {"series_id": "vm-1", "timestamp": t, "value": 30 + 10 * np.sin(np.arange(len(t)) / 4)}
    )
    f = pd.date_range(t[-1] + pd.Timedelta("1h"), periods=24, freq="1h")
    yhat = 30 + 10 * np.sin(np.arange(24) / 4)
    forecast = pd.DataFrame(
        {
            "series_id": np.repeat(["vm-1", "vm-2"], 24),
            "timestamp": np.tile(f, 2),
            "yhat": np.tile(yhat, 2),
            "yhat_q10": np.tile(yhat - 5, 2),
            "yhat_q90": np.tile(yhat + 5, 2),
            "model": "gbm",
        }
    )
    return forecast, history


def test_forecast_plot_with_history_and_interval(tmp_path):
    forecast, history = _forecast()
    out = draw_forecast(forecast, tmp_path / "f.png", series="vm-1", history=history)
    _assert_picture(out)


def test_forecast_plot_names_an_unknown_series(tmp_path):
    forecast, _ = _forecast()
    with pytest.raises(DataError, match="--series vm-9: no such series"):
        draw_forecast(forecast, tmp_path / "f.png", series="vm-9")
    assert not (tmp_path / "f.png").exists()


def test_plan_plot_by_host(tmp_path):
    start = pd.Timestamp("2024-01-15") + pd.to_timedelta(np.arange(12), unit="h")
    plan = pd.DataFrame(
        {
            "vm_id": [f"vm-{i}" for i in range(12)],
            "start": start,
            "end": start + pd.Timedelta("40s"),
            "predicted_downtime_ms": np.linspace(50, 400, 12),
        }
    )
    vms = pd.DataFrame({"vm_id": plan["vm_id"], "host_id": [f"h{i % 3}" for i in range(12)]})
    _assert_picture(draw_plan(plan, tmp_path / "plan.png", vms=vms))


def test_clusters_plot_profile_and_projection(tmp_path):
    rng = np.random.default_rng(0)
    points = np.vstack([rng.normal(0, 1, (50, 3)), rng.normal(6, 1, (50, 3))])
    features = pd.DataFrame(points, columns=["a", "b", "c"]).assign(
        id=[f"r{i}" for i in range(100)]
    )
    labels = pd.DataFrame({"id": features["id"], "label": np.repeat([0, 1], 50)})
    _assert_picture(draw_clusters(labels, tmp_path / "c.png", features=features))
    _assert_picture(draw_clusters(labels, tmp_path / "sizes.png", features=None), 5_000)


@pytest.mark.slow
def test_forecast_plot_flag_and_plot_forecast_command(env, tmp_path):
    from zhuge.data.demo import write_fleet

    files = write_fleet(tmp_path / "fleet", 20, 7, "1h", 3)
    data = str(tmp_path / "fleet" / "telemetry.parquet")
    assert files.series == 20
    runner = CliRunner()
    plot = tmp_path / "forecast.png"
    result = runner.invoke(
        app,
        ["forecast", "--input", data, "--model", "seasonal_naive", "--plot", str(plot), "--json"],
        env=env,
    )
    assert result.exit_code == 0, result.output
    _assert_picture(plot)
    job_id = json.loads(result.stdout)["job_id"]
    other = tmp_path / "other.png"
    series = "vm-000003"
    result = runner.invoke(
        app, ["plot", "forecast", str(job_id), "--series", series, "--out", str(other)], env=env
    )
    assert result.exit_code == 0, result.output
    _assert_picture(other)
    assert other.read_bytes() != plot.read_bytes()
