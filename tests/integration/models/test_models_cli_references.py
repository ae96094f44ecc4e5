"""Registry references typed on the command line of an embedded platform (SQLite):
``plan-migrations --input ... --model-from NAME@champion``, ``backtest --model-from NAME@N``,
``cluster --register NAME`` then ``cluster predict --model-from NAME@champion``; each job
records the version it resolved to, and a bad reference fails with one clear line."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
from typer.testing import CliRunner

from zhuge.cli import app
from zhuge.data import write_fleet
from zhuge.jobs.store import JobStore


def invoke(env, *args: str):
    return CliRunner().invoke(app, list(args), env=env)


def recorded(env) -> dict[int, tuple[str, str | None, str | None]]:
    """Every job of the embedded home: (kind, model_ref, model_version)."""
    store = JobStore.open(f"sqlite:///{env['ZHUGE_HOME']}/zhuge.db")
    try:
        return {j.id: (j.kind, j.model_ref, j.model_version) for j in store.list(limit=100)}
    finally:
        store.dispose()


def test_plan_migrations_and_backtest_take_a_registered_model(env, tmp_path):
    files = write_fleet(tmp_path / "fleet", 12, 8, "1h", seed=4)
    train = ["train", "--input", files.telemetry, "--horizon", "24h", "--model", "gbm"]
    first = invoke(env, *train, "--register", "fleet-cpu", "--json")
    assert first.exit_code == 0, first.output
    trained = json.loads(first.stdout)["job_id"]

    args = ["plan-migrations", "--input", files.telemetry, "--vms", files.vms, "--window", "1h",
            "--deadline", "24h", "--model-from", "fleet-cpu@champion", "--json"]  # fmt: skip
    planned = invoke(env, *args)
    assert planned.exit_code == 0, planned.output
    assert json.loads(planned.stdout)["summary"]["placed"] > 0
    forecasts = [v for v in recorded(env).values() if v[0] == "forecast"]
    assert forecasts == [("forecast", "fleet-cpu@champion", "fleet-cpu@1")]

    backtest = invoke(
        env, "backtest", "--input", files.telemetry, "--model-from", "fleet-cpu@1",
        "--windows", "1", "--json",
    )  # fmt: skip
    assert backtest.exit_code == 0, backtest.output
    result = json.loads(backtest.stdout)
    models = [row["model"] for row in result["overall"]]
    assert "fleet-cpu@1" in models and "auto" not in models
    assert result["model_from"] == trained

    forecast = invoke(env, "forecast", "--input", files.telemetry, "--model-from", "fleet-cpu@1")
    assert forecast.exit_code == 0, forecast.output
    assert f"model fleet-cpu@1 (fleet-cpu@1 as the job started; trained by job {trained})" in (
        forecast.stdout
    )

    missing = invoke(env, *args[:-3], "--model-from", "fleet-cpu@nope")
    assert missing.exit_code == 1
    assert "no registered model version" in missing.stderr and "Traceback" not in missing.output


def test_cluster_register_then_predict_by_reference(env, tmp_path):
    rng = np.random.default_rng(0)
    centres = np.array([[0.0, 0.0], [10.0, 10.0], [0.0, 10.0]])
    points = np.concatenate([c + rng.normal(0, 0.5, (40, 2)) for c in centres])
    table = tmp_path / "rows.parquet"
    pd.DataFrame({"x": points[:, 0], "y": points[:, 1]}).to_parquet(table)
    fitted = invoke(
        env, "cluster", "--input", str(table), "--algorithm", "kmeans", "--k", "3",
        "--register", "segments",
    )  # fmt: skip
    assert fitted.exit_code == 0, fitted.output
    assert "segments@1 registered" in fitted.stdout and "aliases: champion" in fitted.stdout
    labelled = invoke(
        env, "cluster", "predict", "--model-from", "segments@champion", "--input", str(table),
        "--json",
    )  # fmt: skip
    assert labelled.exit_code == 0, labelled.output
    result = json.loads(labelled.stdout)
    assert result["model_version"] == "segments@1" and len(result["sizes"]) == 3
    predicts = [v for v in recorded(env).values() if v[0] == "cluster-predict"]
    assert predicts == [("cluster-predict", "segments@champion", "segments@1")]
