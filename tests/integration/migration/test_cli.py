"""``zhuge plan-migrations`` / ``calibrate-migrations`` end to end on an embedded platform.

Each successful command starts a local Dask cluster (seconds), so there are few of them; the
bad-input cases fail in the command's own checks, before any platform starts.
"""

from __future__ import annotations

import json

import pandas as pd
import pytest
from typer.testing import CliRunner

from zhuge.cli import app
from zhuge.data import write_fleet
from zhuge.migration import MigrationModel, synthetic_fleet, synthetic_history

pytestmark = pytest.mark.slow


@pytest.fixture
def fleet_files(tmp_path):
    fleet = synthetic_fleet(60, seed=5, hours=24, vms_per_host=5, hosts_per_cluster=3)
    fleet.vms.to_parquet(tmp_path / "vms.parquet")
    fleet.forecast.to_parquet(tmp_path / "forecast.parquet")
    fleet.actual.to_parquet(tmp_path / "actual.parquet")
    return tmp_path


def _plan_args(folder, *extra: str) -> list[str]:
    return [
        "plan-migrations",
        "--forecast", str(folder / "forecast.parquet"),
        "--vms", str(folder / "vms.parquet"),
        "--window", "30min",
        "--deadline", "24h",
        "--max-per-host", "2",
        "--max-per-cluster", "4",
        "--blackout", "08:00-10:00",
        "--out", str(folder / "plan.parquet"),
        *extra,
    ]  # fmt: skip


def test_plan_with_evaluation_as_json(fleet_files, env):
    result = CliRunner().invoke(
        app, _plan_args(fleet_files, "--evaluate-with", str(fleet_files / "actual.parquet"), "--json"),
        env=env,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    plan = pd.read_parquet(fleet_files / "plan.parquet")
    assert len(plan) == 60 and report["out"] == str(fleet_files / "plan.parquet")
    summary = report["summary"]
    assert summary["placed"] == plan["start"].notna().sum()
    assert summary["peak_concurrent_per_host"] <= 2
    assert summary["peak_concurrent_per_cluster"] <= 4
    assert summary["violations"] == []
    assert report["evaluation"]["ratios"]["mean_load plan/earliest"] < 1
    assert report["artifacts"]["plan"].endswith("plan.parquet")


def test_calibrate_then_plan_with_it(fleet_files, env):
    history = fleet_files / "past_migrations.csv"
    synthetic_history(200, MigrationModel(dirty_rate_coeff=20.0), n_vms=30, seed=2).to_csv(
        history, index=False
    )
    out = fleet_files / "calibration.json"
    runner = CliRunner()
    result = runner.invoke(
        app, ["calibrate-migrations", "--history", str(history), "--out", str(out)], env=env
    )
    assert result.exit_code == 0, result.output
    assert "Fit error over 200 migrations" in result.stdout
    assert json.loads(out.read_text())["source"] == "fit"

    planned = runner.invoke(
        app, _plan_args(fleet_files, "--calibration", str(out), "--json"), env=env
    )
    assert planned.exit_code == 0, planned.output
    summary = json.loads(planned.stdout)["summary"]
    assert summary["calibration"] == "fit"  # the plan used the fitted model, not the defaults
    assert summary["violations"] == []


def test_vms_missing_from_the_forecast_exit_1_and_write_nothing(fleet_files, env):
    forecast = pd.read_parquet(fleet_files / "forecast.parquet")
    forecast[forecast["series_id"] != "vm000007"].to_parquet(fleet_files / "forecast.parquet")
    result = CliRunner().invoke(app, _plan_args(fleet_files), env=env)
    assert result.exit_code == 1
    assert "VM(s) 'vm000007' have no rows in the forecast" in result.stderr
    assert not (fleet_files / "plan.parquet").exists()
    assert not (fleet_files / "home").exists()  # refused before any job was submitted


def test_a_deadline_shorter_than_a_window_exits_1_and_writes_nothing(fleet_files, env):
    args = _plan_args(fleet_files)
    args[args.index("--deadline") + 1] = "20min"
    result = CliRunner().invoke(app, args, env=env)
    assert result.exit_code == 1
    assert "less than one window" in result.stderr
    assert not (fleet_files / "plan.parquet").exists()


def test_one_shot_input_forecasts_then_plans(env, tmp_path):
    files = write_fleet(tmp_path / "fleet", 24, 3, "5min", seed=4)
    out = tmp_path / "plan.parquet"
    args = ["plan-migrations", "--input", files.telemetry, "--vms", files.vms,
            "--window", "30min", "--deadline", "12h", "--max-per-host", "2",
            "--out", str(out), "--json"]  # fmt: skip
    result = CliRunner().invoke(app, args, env=env)
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    made = report["forecast_job"]
    assert made["series"] == 24 and made["job_id"] != report["job_id"]
    forecast = pd.read_parquet(made["forecast"].removeprefix("file://"))
    # forecast as far as the deadline: 12 hourly steps per VM, from the end of its telemetry
    assert (forecast.groupby("series_id").size() == 12).all()
    plan = pd.read_parquet(out)
    assert sorted(plan["vm_id"]) == sorted(forecast["series_id"].unique())
    placed = plan.dropna(subset=["start"])
    assert len(placed) == report["summary"]["placed"] > 0
    assert (placed["end"] <= pd.Timestamp(report["summary"]["deadline"])).all()
    assert report["summary"]["violations"] == []
    assert report["summary"]["peak_concurrent_per_host"] <= 2


def test_one_shot_input_checks_the_plan_inputs_before_forecasting(env, tmp_path):
    files = write_fleet(tmp_path / "fleet", 4, 1, "5min", seed=4)
    vms = pd.read_parquet(files.vms).rename(columns={"memory_gb": "memory_gib"})
    vms.to_parquet(tmp_path / "bad_vms.parquet")
    args = ["plan-migrations", "--input", files.telemetry, "--vms", str(tmp_path / "bad_vms.parquet"),
            "--out", str(tmp_path / "plan.parquet")]  # fmt: skip
    result = CliRunner().invoke(app, args, env=env)
    assert result.exit_code == 1
    assert "memory_gib" in result.stderr and "memory_gb" in result.stderr
    assert not (tmp_path / "plan.parquet").exists()
    assert not (tmp_path / "home").exists()  # no forecast job was submitted either
