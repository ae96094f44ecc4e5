"""``zhuge plan-migrations --input`` runs as a two-step pipeline on the server (forecast,
then plan reading the forecast step's output), on the embedded platform."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from zhuge.cli import app
from zhuge.cli.migration import forecast_then_plan_pipeline
from zhuge.data import write_fleet
from zhuge.jobs.pipelines import PipelineSpec, list_pipelines
from zhuge.jobs.store import JobStore

pytestmark = pytest.mark.slow


def test_the_pipeline_document_is_forecast_then_plan():
    spec = PipelineSpec.parse(
        forecast_then_plan_pipeline(
            {"input": "dataset://fleet", "horizon": "12h"},
            {"forecast": "placeholder", "vms": "dataset://vms", "deadline": "12h"},
        )
    )
    forecast, plan = spec.steps
    assert (forecast.kind, plan.kind, plan.after) == ("forecast", "plan-migration", ("forecast",))
    assert plan.params["forecast"] == "step://forecast/forecast.parquet"


def test_input_forecasts_then_plans_as_one_pipeline(env, tmp_path):
    files = write_fleet(tmp_path / "fleet", 6, 2, "5min", seed=4)
    args = ["plan-migrations", "--input", files.telemetry, "--vms", files.vms,
            "--window", "30min", "--deadline", "12h", "--json"]  # fmt: skip
    result = CliRunner().invoke(app, args, env=env)
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)

    store = JobStore.open(f"sqlite:///{Path(env['ZHUGE_HOME']) / 'zhuge.db'}")
    try:
        (pipeline,) = list_pipelines(store)
        assert (pipeline.name, pipeline.state) == ("plan-migrations", "succeeded")
        steps = {s.name: s.job_id for s in pipeline.steps}
        assert steps == {"forecast": report["forecast_job"]["job_id"], "plan": report["job_id"]}
        plan = store.get(report["job_id"])
        assert plan.params["forecast"] == f"job://{steps['forecast']}/forecast.parquet"
        assert store.upstream([plan.id]) == {plan.id: [steps["forecast"]]}
    finally:
        store.dispose()
    assert report["summary"]["placed"] > 0
