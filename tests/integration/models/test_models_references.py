# ruff: noqa: F811  (the world fixture is imported from test_models_gate)
"""Registry references wherever a model is reused, on SQLite and PostgreSQL, through the
API, the SDK and the real runner: ``model_from NAME@ALIAS`` / ``NAME@VERSION`` on forecast,
backtest and cluster predict; the version is resolved when the job starts (a promotion
between submit and start is what the job uses) and recorded on the job, where no later
promotion moves it; a retry uses the recorded version; rollback then ``NAME@champion``
uses the previous champion; another tenant's reference is unknown."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from tests.integration.models.test_models_gate import (  # noqa: F401 (fixtures)
    clean_fleet,
    db_url,
    world,
)
from zhuge import errors


def test_a_promotion_between_submit_and_start_is_what_the_job_uses_and_records(world, monkeypatch):
    data = world.write("clean", clean_fleet(days=14, vms=12))
    first, second = world.train("fleet-cpu", data), world.train("fleet-cpu", data)
    acme = world.sdk["acme"]
    assert acme.model("fleet-cpu")["aliases"]["champion"] == 1  # the same data: not promoted

    queued = acme.submit("forecast", {"input": data, "model_from": "fleet-cpu@champion"})
    assert (queued.model_ref, queued.model_version) == (None, None)  # resolved at the start
    from zhuge.cli import app
    from zhuge.cli import jobs as cli_jobs
    from zhuge.cli import models as cli_models

    monkeypatch.setattr(cli_jobs, "client", lambda url, token: acme)
    monkeypatch.setattr(cli_models, "client", lambda url, token: acme)
    runner = CliRunner(env={"COLUMNS": "200"})
    waiting = runner.invoke(app, ["jobs", "show", str(queued.id)])
    assert "fleet-cpu@champion → resolved when the job starts" in waiting.stdout
    acme.promote_model("fleet-cpu", 2)
    (job,) = world.run_queued()
    assert job.state.value == "succeeded", job.error
    assert (job.model_ref, job.model_version) == ("fleet-cpu@champion", "fleet-cpu@2")
    assert job.result["model_from"] == second.id  # forecast with version 2's model

    # a later rollback changes nothing the job recorded; the next job uses version 1
    assert acme.rollback_model("fleet-cpu")["version"] == 1
    shown = acme.get(job.id)
    assert (shown.model_ref, shown.model_version) == ("fleet-cpu@champion", "fleet-cpu@2")
    after = world.run("forecast", {"input": data, "model_from": "fleet-cpu@champion"})
    assert after.model_version == "fleet-cpu@1" and after.result["model_from"] == first.id

    used = acme.model("fleet-cpu")["used_by"]
    assert [(u["job_id"], u["version"], u["model_version"]) for u in used] == [
        (job.id, 2, "fleet-cpu@2"),
        (after.id, 1, "fleet-cpu@1"),
    ]

    printed = runner.invoke(app, ["jobs", "show", str(job.id)])
    assert printed.exit_code == 0, printed.output
    assert "fleet-cpu@champion → fleet-cpu@2" in printed.stdout
    model = runner.invoke(app, ["models", "show", "fleet-cpu"])
    assert f"used by jobs: {job.id} (forecast, fleet-cpu@champion → version 2)" in model.stdout


def test_a_retried_attempt_uses_the_version_its_job_recorded(world):
    from zhuge.artifacts import ArtifactDir
    from zhuge.jobs.context import JobContext
    from zhuge.jobs.inputs import resolve_params
    from zhuge.jobs.kinds import get_kind

    data = world.write("clean", clean_fleet(days=14, vms=12))
    first, second = world.train("fleet-cpu", data), world.train("fleet-cpu", data)
    job = world.run("forecast", {"input": data, "model_from": "fleet-cpu@champion"})
    assert job.model_version == "fleet-cpu@1"
    world.sdk["acme"].promote_model("fleet-cpu", 2)
    root = ArtifactDir(world.settings.artifacts_root)
    ctx = JobContext(
        job_id=job.id,
        attempt=job.attempt + 1,
        tenant="acme",
        artifacts=root.child(f"jobs/{job.id}/attempt-{job.attempt + 1}"),
        artifacts_root=root,
        data_roots=(str(world.root),),
        db_url=world.settings.database_url,
    )
    kind = get_kind("forecast")
    resolved = resolve_params(kind.parse(job.params), ctx)
    assert resolved.model_from == first.id != second.id  # version 1, as recorded
    assert world.store.get(job.id).model_version == "fleet-cpu@1"
    # a job that never resolved one gets what the alias names now
    fresh = world.run("forecast", {"input": data, "model_from": "fleet-cpu@champion"})
    assert fresh.model_version == "fleet-cpu@2"


def test_backtest_scores_a_registered_version_frozen(world):
    from zhuge.jobs.registry.kinds import window_losses
    from zhuge.ml.forecast import load

    fleet = clean_fleet(days=16, vms=12)
    train = world.write("train", fleet[fleet["timestamp"] < "2024-01-14"])
    world.train("fleet-cpu", train)
    data = world.write("all", fleet)
    job = world.run(
        "backtest", {"input": data, "model_from": "fleet-cpu@1", "models": [], "windows": 2}
    )
    assert job.state.value == "succeeded", job.error
    assert (job.model_ref, job.model_version) == ("fleet-cpu@1", "fleet-cpu@1")
    overall = {row["model"]: row for row in job.result["overall"]}
    assert "fleet-cpu@1" in overall and "auto" not in overall  # nothing else trained
    assert {"seasonal_naive", "last_value"} <= set(overall)
    assert job.result["horizon_steps"] == 24 and job.result["frozen_model"] == "fleet-cpu@1"
    assert job.result["in_sample"] is None  # trained until 2024-01-10 23:00, scored after

    # the frozen model, loaded and asked directly for the same windows, scores the same
    version = world.sdk["acme"].model_version("fleet-cpu@1")
    model = load(f"{world.settings.artifacts_root}/{version['artifact']}")
    prepared = fleet.assign(timestamp=pd.to_datetime(fleet["timestamp"]))
    end = prepared["timestamp"].max()
    origins = [end - pd.Timedelta(hours=24 * k) for k in (2, 1)]
    losses, _ = window_losses(model, prepared, origins, freq="1h", steps=24, metric="mase")
    assert overall["fleet-cpu@1"]["mase"] == pytest.approx(
        float(np.nanmean(losses.to_numpy())), rel=1e-6
    )

    # seven windows reach back into its training data: said, not hidden
    deeper = world.run(
        "backtest", {"input": data, "model_from": "fleet-cpu@1", "models": [], "windows": 7}
    )
    assert deeper.state.value == "succeeded", deeper.error
    assert "trained on data up to 2024-01-10T23:00:00" in deeper.result["in_sample"]
    assert "in-sample" in deeper.result["in_sample"]

    # a version that is gone, or another tenant's model, is refused at submit
    with pytest.raises(errors.InvalidParams, match="model_from"):
        world.sdk["acme"].submit("backtest", {"input": data, "model_from": "fleet-cpu@9"})
    with pytest.raises(errors.InvalidParams, match="model_from"):
        world.sdk["other"].submit("backtest", {"input": data, "model_from": "fleet-cpu@1"})


def test_rollback_then_champion_backtests_the_previous_champion(world):
    data = world.write("clean", clean_fleet(days=14, vms=12))
    world.train("fleet-cpu", data), world.train("fleet-cpu", data)
    acme = world.sdk["acme"]
    acme.promote_model("fleet-cpu", 2)
    acme.rollback_model("fleet-cpu")
    job = world.run(
        "backtest", {"input": data, "model_from": "fleet-cpu@champion", "windows": 1, "models": []}
    )
    assert job.state.value == "succeeded", job.error
    assert job.model_version == "fleet-cpu@1"
    assert "fleet-cpu@1" in {row["model"] for row in job.result["overall"]}


def blobs(seed: int = 0, n: int = 90) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    centres = np.array([[0.0, 0.0], [10.0, 10.0], [0.0, 10.0]])
    points = np.concatenate([c + rng.normal(0, 0.5, (n // 3, 2)) for c in centres])
    return pd.DataFrame({"id": [f"r{i}" for i in range(len(points))], "x": points[:, 0],
                         "y": points[:, 1]})  # fmt: skip


def test_cluster_models_are_registered_and_predict_by_reference(world):
    table = world.write("blobs", blobs())
    params = {"input": table, "algorithm": "kmeans", "id_column": "id", "preprocess": "none"}
    three = world.run("cluster", {**params, "k": 3, "register_as": "segments"})
    assert three.state.value == "succeeded", three.error
    assert three.result["registered"]["ref"] == "segments@1"
    assert three.result["registered"]["aliases"] == ["champion"]
    two = world.run("cluster", {**params, "k": 2, "register_as": "segments"})
    registered = two.result["registered"]
    assert (registered["ref"], registered["aliases"]) == ("segments@2", [])
    assert registered["gate"]["decision"] == "registered"  # no gate: promoted by hand
    acme = world.sdk["acme"]
    shown = acme.model("segments")
    assert shown["task"] == "cluster" and shown["aliases"] == {"champion": 1}
    assert shown["versions"][0]["lineage"]["datasets"][0]["sha256"]
    assert shown["versions"][0]["metrics"]["n_clusters"] == 3
    assert shown["versions"][0]["metrics"]["algorithm"] == "kmeans"

    fresh = world.write("fresh", blobs(seed=1))
    by_alias = world.run("cluster-predict", {"model_from": "segments@champion", "input": fresh})
    assert by_alias.state.value == "succeeded", by_alias.error
    assert by_alias.model_version == "segments@1" and by_alias.result["n_clusters"] == 3
    assert len(by_alias.result["sizes"]) == 3
    by_number = world.run("cluster-predict", {"model_from": "segments@2", "input": fresh})
    assert by_number.model_version == "segments@2" and len(by_number.result["sizes"]) == 2
    acme.promote_model("segments", 2)
    promoted = world.run("cluster-predict", {"model_from": "segments@champion", "input": fresh})
    assert promoted.result["model_from"] == two.id and promoted.model_version == "segments@2"

    # a clustering model is no forecast model, and a forecast model takes no cluster version
    data = world.write("fleet", clean_fleet(days=14, vms=12))
    with pytest.raises(errors.InvalidParams, match="is a cluster model; forecast takes a fore"):
        acme.submit("forecast", {"input": data, "model_from": "segments@champion"})
    world.train("fleet-cpu", data)
    with pytest.raises(errors.InvalidParams, match="is a forecast model; cluster-predict takes"):
        acme.submit("cluster-predict", {"model_from": "fleet-cpu@1", "input": fresh})
    mixed = world.run(
        "model-train",
        {"input": data, "horizon": "24h", "model": "gbm", "register_as": "segments"},
    )
    assert mixed.state.value == "dead" and "holds cluster models" in mixed.error
    assert len(acme.model("segments")["versions"]) == 2

    with pytest.raises(errors.InvalidParams, match="model_from"):
        world.sdk["other"].submit(
            "cluster-predict", {"model_from": "segments@champion", "input": fresh}
        )


def test_model_score_takes_a_dataset_like_the_forecast_it_scores(world):
    """A pipeline step scores yesterday's forecast after the telemetry step: its actuals
    are a data reference like any job's (here an uploaded dataset)."""
    fleet = clean_fleet(days=15, vms=12)
    world.train("fleet-cpu", world.write("train", fleet[fleet["timestamp"] < "2024-01-14"]))
    known = world.write("known", fleet[fleet["timestamp"] < "2024-01-15"])
    world.run("forecast", {"input": known, "model_from": "fleet-cpu@champion"})
    acme = world.sdk["acme"]
    put = acme.put_dataset(world.write("revealed", fleet), name="telemetry")
    scored = world.run("model-score", {"model": "fleet-cpu", "input": "dataset://telemetry"})
    assert scored.state.value == "succeeded", scored.error
    (row,) = scored.result["scored"]
    assert row["series"] == 12 and np.isfinite(row["mase"])
    assert put["ref"].startswith("dataset://telemetry@sha256:")
    with pytest.raises(errors.InvalidParams, match="input"):
        world.sdk["other"].submit(
            "model-score", {"model": "fleet-cpu", "input": "dataset://telemetry"}
        )


def test_decision_regret_is_a_model_setting_the_gate_judges_by(world, monkeypatch):
    from zhuge.cli import app
    from zhuge.cli import models as cli_models

    data = world.write("clean", clean_fleet(days=14, vms=12))
    world.train("fleet-cpu", data, config={"gate_windows": 3, "min_series": 10})
    monkeypatch.setattr(cli_models, "client", lambda url, token: world.sdk["acme"])
    runner = CliRunner()
    changed = runner.invoke(
        app, ["models", "config", "fleet-cpu", "--metric", "decision_regret", "--json"]
    )
    assert changed.exit_code == 0, changed.output
    assert json.loads(changed.stdout)["metric"] == "decision_regret"
    nothing = runner.invoke(app, ["models", "config", "fleet-cpu"])
    assert nothing.exit_code == 1 and "give a setting to change" in nothing.stderr

    second = world.run(
        "model-train",
        {"input": data, "horizon": "24h", "model": "gbm", "register_as": "fleet-cpu"},
    )
    assert second.state.value == "succeeded", second.error
    evidence = second.result["gate"]
    assert evidence["metric"] == "decision_regret" and evidence["champion_version"] == 1
    assert evidence["champion_score"] >= 0 and evidence["challenger_score"] >= 0
    metrics = world.sdk["acme"].model_version("fleet-cpu@2")["metrics"]
    assert metrics["decision_regret"] >= 0 and metrics["mase"] > 0  # live scoring keeps MASE


def test_model_score_reads_an_upstream_jobs_output(world):
    """As the nightly pipeline's step after the telemetry step: ``input`` names that job's
    output (``job://ID/NAME``), like any job's data parameter."""
    fleet = clean_fleet(days=15, vms=12)
    world.train("fleet-cpu", world.write("train", fleet[fleet["timestamp"] < "2024-01-14"]))
    known = world.write("known", fleet[fleet["timestamp"] < "2024-01-15"])
    forecast = world.run("forecast", {"input": known, "model_from": "fleet-cpu@champion"})
    telemetry = world.run("prepare", {"input": world.write("revealed", fleet), "freq": "1h"})
    assert telemetry.state.value == "succeeded", telemetry.error
    step = {"model": "fleet-cpu", "input": f"job://{telemetry.id}/prepared.parquet"}
    scored = world.run("model-score", step)
    assert scored.state.value == "succeeded", scored.error
    (row,) = scored.result["scored"]
    assert row["job"] == forecast.id and row["version"] == 1 and row["series"] == 12
    with pytest.raises(errors.InvalidParams, match="input"):
        world.sdk["other"].submit("model-score", step)  # another tenant's job is unknown


def test_a_wrong_model_name_fails_its_job_at_once(world):
    data = world.write("clean", clean_fleet(days=14, vms=12))
    score = world.run("model-score", {"model": "nope", "input": data})
    assert (score.state.value, score.attempt) == ("dead", 1)
    assert "no registered model 'nope'" in score.error
    world.train("fleet-cpu", data)
    table = world.write("blobs", blobs())
    mixed = world.run("cluster", {"input": table, "k": 3, "register_as": "fleet-cpu"})
    assert (mixed.state.value, mixed.attempt) == ("dead", 1)
    assert "holds forecast models" in mixed.error
    assert len(world.sdk["acme"].model("fleet-cpu")["versions"]) == 1
