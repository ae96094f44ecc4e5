"""``zhuge train --register NAME`` and ``zhuge forecast --model-from NAME@champion`` on an
embedded platform, as a user types them; a bad reference fails with one clear line."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from zhuge.cli import app
from zhuge.jobs.registry import Registry
from zhuge.jobs.store import JobStore
from zhuge.ml.forecast.synthetic import synthetic_fleet


def invoke(env, *args: str):
    return CliRunner().invoke(app, list(args), env=env)


def test_train_register_then_forecast_from_the_champion(env, tmp_path):
    data = tmp_path / "fleet.parquet"
    synthetic_fleet(vms=12, days=14, freq="1h", seed=4).to_parquet(data, index=False)
    train = ["train", "--input", str(data), "--horizon", "24h", "--model", "gbm"]
    first = invoke(env, *train, "--register", "fleet-cpu", "--json")
    assert first.exit_code == 0, first.output
    registered = json.loads(first.stdout)
    assert (registered["ref"], registered["aliases"]) == ("fleet-cpu@1", ["champion"])
    assert registered["gate"]["decision"] == "champion"

    forecast = invoke(
        env, "forecast", "--input", str(data), "--model-from", "fleet-cpu@champion", "--json"
    )
    assert forecast.exit_code == 0, forecast.output
    assert json.loads(forecast.stdout)["model_from"] == registered["job_id"]

    # the registry of the embedded platform's home (zhuge models talks to a server)
    store = JobStore.open(f"sqlite:///{env['ZHUGE_HOME']}/zhuge.db")
    shown = Registry(store.engine).show("default", "fleet-cpu")
    store.dispose()
    # the version, the champion alias it got as the first one, its use by the forecast
    assert [(e["action"], e["alias"]) for e in shown["events"]] == [
        ("register", None),
        ("register", "champion"),
        ("use", None),
    ]
    lineage = shown["versions"][0]["lineage"]
    assert lineage["datasets"][0]["param"] == "input" and lineage["zhuge"]

    missing = invoke(env, "forecast", "--input", str(data), "--model-from", "fleet-cpu@nope")
    assert missing.exit_code == 1
    assert "no registered model version" in missing.stderr and "Traceback" not in missing.output
