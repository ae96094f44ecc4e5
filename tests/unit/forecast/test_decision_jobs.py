"""``backtest`` with ``decision="migration"``, run in-process: each model judged by the plans its
forecasts induce, beside the perfect-forecast, 7-day-profile and earliest plans."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from zhuge.data import write_fleet
from zhuge.errors import DataError, InvalidParams
from zhuge.jobs.context import local_context
from zhuge.jobs.forecast import BacktestParams, check_request
from zhuge.jobs.kinds import get_kind


def run(kind: str, params: dict, root, job_id: int):
    spec = get_kind(kind)
    ctx = local_context(job_id, artifacts_url=root.as_uri())
    return spec.run(spec.parse(spec.normalise(params)), ctx), ctx


@pytest.fixture(scope="module")
def fleet(tmp_path_factory):
    return write_fleet(tmp_path_factory.mktemp("fleet"), 30, 9, "5min", seed=11)


def test_backtest_scores_plans_beside_the_perfect_forecast_and_the_naive_plan(fleet, tmp_path):
    params = {
        "input": fleet.telemetry,
        "vms": fleet.vms,
        "models": ["seasonal_naive"],
        "windows": 2,
        "decision": "migration",
        "window": "30min",
        "max_per_host": 2,
        "max_per_cluster": 10,
    }
    result, ctx = run("backtest", params, tmp_path, 3)
    decision = result["decision"]
    overall = pd.DataFrame(decision["overall"]).set_index("plan")
    assert {"perfect_forecast", "earliest", "profile_7d", "seasonal_naive"} <= set(overall.index)
    assert overall.at["perfect_forecast", "captured"] == pytest.approx(1.0)
    assert overall.at["earliest", "captured"] == pytest.approx(0.0)
    assert overall["realised_load"].min() == overall.at["perfect_forecast", "realised_load"]
    assert decision["constraints"]["max_per_cluster"] == 10
    per_window = ctx.artifacts.read_parquet("decision.parquet")
    assert sorted(per_window["window"].unique()) == [0, 1]
    assert (per_window["vms"] + per_window["vms_left_out"] <= 30).all()


def test_decision_needs_a_vm_table_with_memory(fleet, tmp_path):
    with pytest.raises(InvalidParams) as refused:
        get_kind("backtest").parse({"input": fleet.telemetry, "decision": "migration"})
    assert "give --vms" in refused.value.details[0]["msg"]
    bare = tmp_path / "vms.parquet"
    pd.read_parquet(fleet.vms).drop(columns=["memory_gb"]).to_parquet(bare)
    params = BacktestParams(input=fleet.telemetry, vms=str(bare), decision="migration")
    with pytest.raises(DataError, match="memory_gb"):
        check_request(params)


def test_train_selects_by_decision_and_keeps_the_plan_limits_with_the_model(fleet, tmp_path):
    params = {
        "input": fleet.telemetry,
        "vms": fleet.vms,
        "select_by": "decision",
        "selection_windows": 2,
        "window": "1h",
        "max_per_host": 2,
        "max_per_cluster": 0,
    }
    result, _ = run("train", params, tmp_path, 4)
    model = result["model"]
    assert model["strategy"] == "decision" and model["metric"] == "captured"
    best = max(model["scores"], key=model["scores"].get)
    assert model["chosen"] == best
    assert model["scores"]["last_value"] < model["scores"][best]  # a flat forecast finds no quiet
    model_dir = result["artifacts"]["model"].removeprefix("file://")
    saved = json.loads((Path(model_dir) / "manifest.json").read_text())
    limits = saved["metadata"]["selection"]["decision"]
    assert limits == {
        "window": "1h",
        "max_per_host": 2,
        "max_per_cluster": None,
        "bandwidth_gbps": 100.0,
        "blackouts": [],
    }


def test_forecast_on_a_30_minute_grid(fleet, tmp_path):
    params = {"input": fleet.telemetry, "freq": "30min", "model": "gbm", "horizon": "24h"}
    result, ctx = run("forecast", params, tmp_path, 5)
    assert (result["freq"], result["horizon_steps"]) == ("30min", 48)
    forecast = ctx.artifacts.read_parquet("forecast.parquet")
    steps = forecast.groupby("series_id")["timestamp"].diff().dropna().unique()
    assert list(steps) == [pd.Timedelta("30min")]
    assert forecast.groupby("series_id").size().eq(48).all()
