"""The release gate on generated fleets, through the API, the SDK and the real runner, on
SQLite and PostgreSQL: corrupted telemetry is not promoted over a clean champion, more and
cleaner data is; a tampered artifact is refused; rollback restores the previous champion and
``model_from NAME@champion`` then forecasts with it; an aliased version cannot be removed; and
another tenant can neither see, use nor promote the model."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from tests.conftest import empty_store
from zhuge import errors
from zhuge.api.app import create_app
from zhuge.client import Client
from zhuge.config import Settings
from zhuge.jobs.inputs import private_paths
from zhuge.jobs.runner import AttemptSpec, run_attempt
from zhuge.jobs.store import JobStore
from zhuge.ml.forecast.synthetic import synthetic_fleet

GATE = {"gate_windows": 3, "min_series": 10}


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request, tmp_path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'zhuge.db'}"
    return empty_store(request.getfixturevalue("postgres_url"))


@dataclass
class World:
    store: JobStore
    settings: Settings
    root: Path
    sdk: dict[str, Client]

    def run_queued(self) -> list:
        done = []
        for job in self.store.claim(limit=50, owner="test", lease_seconds=600):
            run_attempt(
                AttemptSpec(
                    db_url=self.settings.database_url,
                    artifacts_url=self.settings.artifacts_root,
                    job_id=job.id,
                    attempt=job.attempt,
                    lease_seconds=600,
                    heartbeat_seconds=10,
                    data_roots=(str(self.root),),
                    private_paths=private_paths(self.settings),
                )
            )
            done.append(self.store.get(job.id))
        return done

    def run(self, kind: str, params: dict, who: str = "acme"):
        self.sdk[who].submit(kind, params)
        (job,) = self.run_queued()
        return job

    def train_with_sdk(self, name: str, data: str, **params):
        self.sdk["acme"].train_model(name, {"input": data, "model": "gbm", **params})
        (job,) = self.run_queued()
        return job

    def write(self, name: str, frame: pd.DataFrame) -> str:
        path = self.root / f"{name}.parquet"
        frame.to_parquet(path, index=False)
        return str(path)

    def train(self, name: str, data: str, **params):
        job = self.run(
            "model-train",
            {
                "input": data,
                "freq": "1h",
                "horizon": "24h",
                "model": "gbm",
                "quantiles": [0.1, 0.9],
                "register_as": name,
                "config": GATE,
                **params,
            },
        )
        assert job.state.value == "succeeded", job.error
        return job


@pytest.fixture
def world(db_url, tmp_path):
    root = tmp_path / "root"
    home = root / ".zhuge"
    home.mkdir(parents=True)
    settings = Settings(home=home, db_url=db_url, data_roots=(root,))
    store = JobStore.open(db_url)
    tokens = {who: store.issue_token(who) for who in ("acme", "other")}
    with TestClient(create_app(settings, store=store)) as http:
        sdk = {
            who: Client("http://testserver", token, transport=http._transport)
            for who, token in tokens.items()
        }
        yield World(store=store, settings=settings, root=root, sdk=sdk)
    store.dispose()


def clean_fleet(days: int = 21, vms: int = 30, seed: int = 1) -> pd.DataFrame:
    return synthetic_fleet(vms=vms, days=days, freq="1h", seed=seed)


def corrupted(frame: pd.DataFrame, seed: int = 2) -> pd.DataFrame:
    """Timestamps shifted per series (by 1 to 11 hours), and a third of the series stuck at
    their first value."""
    rng = np.random.default_rng(seed)
    ids = frame["series_id"].unique()
    shift = dict(zip(ids, rng.integers(1, 12, len(ids)), strict=True))
    out = frame.copy()
    out["timestamp"] = out["timestamp"] + pd.to_timedelta(out["series_id"].map(shift), "h")
    stuck = set(ids[: len(ids) // 3])
    first = out.groupby("series_id")["value"].transform("first")
    out["value"] = np.where(out["series_id"].isin(stuck), first, out["value"])
    return out


def noisy_and_short(frame: pd.DataFrame, days: int, seed: int = 3) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    start = frame["timestamp"].max() - pd.Timedelta(days=days)
    out = frame[frame["timestamp"] > start].copy()
    out["value"] = (out["value"] + rng.normal(0, 15, len(out))).clip(0, 100)
    return out


def test_corrupted_telemetry_is_not_promoted_over_a_clean_champion(world):
    clean = world.write("clean", clean_fleet())
    first = world.train("fleet-cpu", clean).result
    assert (first["version"], first["aliases"], first["gate"]["decision"]) == (
        1,
        ["champion"],
        "champion",
    )
    bad = world.write("bad", corrupted(clean_fleet(seed=1)))
    second_job = world.train("fleet-cpu", bad)
    second = second_job.result
    assert second["gate"]["decision"] == "challenger", second["gate"]
    assert second["aliases"] == ["challenger"]
    shown = world.sdk["acme"].model("fleet-cpu")
    assert shown["aliases"] == {"champion": 1, "challenger": 2}
    evidence = shown["versions"][1]["gate"]
    assert evidence["champion_version"] == 1 and evidence["series"] == 30
    assert len(evidence["windows"]) == 3 and evidence["test"] == "dm"
    assert set(evidence["champion_per_window"]) == set(evidence["windows"])
    lineage = shown["versions"][1]["lineage"]
    assert lineage["datasets"][0]["ref"] == bad and len(lineage["datasets"][0]["sha256"]) == 64
    assert lineage["job_id"] == second_job.id and lineage["params"]["model"] == "gbm"
    assert lineage["holdout"]["windows"] == evidence["windows"]


def test_more_and_cleaner_data_is_promoted_then_rolled_back(world):
    fleet = clean_fleet(days=28)
    weak = world.write("weak", noisy_and_short(fleet, days=9))
    world.train("fleet-cpu", weak)
    strong = world.write("strong", fleet)
    promoted = world.train("fleet-cpu", strong).result
    assert promoted["gate"]["decision"] == "promoted", promoted["gate"]
    assert promoted["gate"]["p_value"] < 0.05 and promoted["gate"]["improvement"] >= 0.02
    assert world.sdk["acme"].model("fleet-cpu")["aliases"] == {"champion": 2}

    back = world.sdk["acme"].rollback_model("fleet-cpu")
    assert back["version"] == 1
    job = world.run(
        "forecast", {"input": strong, "model_from": "fleet-cpu@champion", "horizon": "24h"}
    )
    assert job.state.value == "succeeded", job.error
    v1 = world.sdk["acme"].model_version("fleet-cpu@1")
    assert job.result["model_from"] == v1["job_id"]  # resolved to version 1's job
    history = world.sdk["acme"].model("fleet-cpu")["events"]
    used = [e for e in history if e["action"] == "use"]
    assert [(e["version"], e["job_id"]) for e in used] == [(1, job.id)]


def test_a_tampered_artifact_is_refused_on_load(world):
    clean = world.write("clean", clean_fleet(days=14, vms=12))
    world.train("fleet-cpu", clean)
    version = world.sdk["acme"].model_version("fleet-cpu@champion")
    folder = Path(world.settings.artifacts_root.removeprefix("file://")) / version["artifact"]
    config = folder / "config.json"
    config.write_text(config.read_text().replace('"model_": "gbm"', '"model_": "last_value"'))
    job = world.run(
        "forecast", {"input": clean, "model_from": "fleet-cpu@champion", "horizon": "24h"}
    )
    assert job.state.value == "dead"
    assert "does not match its manifest hash" in job.error, job.error
    assert "Traceback" not in job.error


def test_aliased_versions_stay_and_other_tenants_see_nothing(world):
    clean = world.write("clean", clean_fleet(days=14, vms=12))
    first = world.train_with_sdk("fleet-cpu", clean, quantiles=[0.1, 0.9])
    assert first.result["ref"] == "fleet-cpu@1", first.error
    acme, other = world.sdk["acme"], world.sdk["other"]
    with pytest.raises(errors.Conflict, match="is champion"):
        acme.remove_model_version("fleet-cpu", 1)
    assert other.models() == []
    for attempt in (
        lambda: other.model("fleet-cpu"),
        lambda: other.promote_model("fleet-cpu", 1),
        lambda: other.rollback_model("fleet-cpu"),
        lambda: other.remove_model_version("fleet-cpu", 1),
    ):
        with pytest.raises(errors.NotFound):
            attempt()
    with pytest.raises(errors.InvalidParams, match="model_from"):
        other.submit("forecast", {"input": clean, "model_from": "fleet-cpu@champion"})
    assert acme.model("fleet-cpu")["aliases"] == {"champion": 1}
    # every attempt is in the audit log, under the route's name, refused ones with their error
    refused = [(e.action, e.outcome) for e in world.store.tenancy.audit(tenant="other")]
    assert ("model.promote", "ModelNotFound") in refused
    assert ("model.remove", "ModelNotFound") in refused
    assert ("model.remove", "Conflict") in [
        (e.action, e.outcome) for e in world.store.tenancy.audit(tenant="acme")
    ]


def test_cli_shows_promotes_and_refuses_with_a_clear_line(world, monkeypatch):
    from zhuge.cli import app
    from zhuge.cli import models as cli_models

    clean = world.write("clean", clean_fleet(days=14, vms=12))
    world.train("fleet-cpu", clean)
    world.train("fleet-cpu", clean)
    monkeypatch.setattr(cli_models, "client", lambda url, token: world.sdk["acme"])
    runner = CliRunner()
    shown = runner.invoke(app, ["models", "show", "fleet-cpu", "--json"])
    assert shown.exit_code == 0, shown.output
    assert json.loads(shown.stdout)["aliases"]["champion"] == 1
    assert runner.invoke(app, ["models", "promote", "fleet-cpu", "2"]).exit_code == 0
    table = runner.invoke(app, ["models", "show", "fleet-cpu"])
    assert "challenger→2, champion→2" in table.stdout and "alias history" in table.stdout
    history = json.loads(runner.invoke(app, ["models", "show", "fleet-cpu", "--json"]).stdout)
    assert history["alias_history"][-1]["reason"] == "promoted by hand"
    refused = runner.invoke(app, ["models", "rm", "fleet-cpu", "2"])
    assert refused.exit_code == 1 and "is challenger, champion" in refused.stderr
    assert "Traceback" not in refused.output
    listed = runner.invoke(app, ["models", "ls", "--json"])
    # the same data twice: the same model, not better, so version 2 was a challenger
    assert json.loads(listed.stdout)[0]["aliases"] == {"champion": 2, "challenger": 2}


def test_drift_rolls_back_only_to_a_better_previous_champion(world):
    fleet = clean_fleet(days=28)
    world.train("fleet-cpu", world.write("strong", fleet[fleet["timestamp"] < "2024-01-25"]))
    weak = world.write("weak", noisy_and_short(fleet[fleet["timestamp"] < "2024-01-25"], 9))
    world.train("fleet-cpu", weak)
    acme = world.sdk["acme"]
    acme.promote_model("fleet-cpu", 2)  # the weak one, by hand
    with pytest.raises(errors.InvalidParams, match="drift_factor"):
        acme.configure_model("fleet-cpu", drift_factor=0.5)
    acme.configure_model("fleet-cpu", drift_factor=1.01, drift_scorings=1, drift_action="rollback")
    known = world.write("known", fleet[fleet["timestamp"] < "2024-01-26"])
    job = world.run("forecast", {"input": known, "model_from": "fleet-cpu@champion"})
    assert job.state.value == "succeeded", job.error
    acme.score_model("fleet-cpu", world.write("all", fleet))
    (scored,) = world.run_queued()
    assert scored.state.value == "succeeded", scored.error
    (row,) = scored.result["scored"]
    assert row["version"] == 2 and row["drifted"], row
    action = row["action"]
    assert action["action"] == "rollback" and action["previous"] == 1
    assert action["previous_mase"] < action["champion_mase"], action
    assert action["outcome"] == "rolled back to version 1"
    shown = acme.model("fleet-cpu")
    assert shown["aliases"]["champion"] == 1
    assert shown["alias_history"][-1]["reason"].startswith("drift: version 1 scored")
    # scored once: a second scoring finds nothing new
    again = world.run("model-score", {"model": "fleet-cpu", "input": world.write("all", fleet)})
    assert again.result["scored"] == [] and len(acme.model("fleet-cpu")["live"]) == 1


def test_another_metric_and_a_retried_job_registers_once(world):
    from zhuge.artifacts import ArtifactDir
    from zhuge.jobs.context import JobContext
    from zhuge.jobs.inputs import resolve_params
    from zhuge.jobs.kinds import get_kind

    clean = world.write("clean", clean_fleet(days=14, vms=12))
    job = world.train("fleet-cpu", clean, config={**GATE, "metric": "mae"})
    version = world.sdk["acme"].model_version("fleet-cpu@1")
    assert version["gate"]["metric"] == "mae"
    assert set(version["metrics"]) >= {"mae", "mase"}  # live scoring compares MASE
    assert version["metrics"]["selection"]["chosen"] == "gbm"
    # the same job's code run again, as a retried attempt would: no second version
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
    kind = get_kind("model-train")
    again = kind.run(resolve_params(kind.parse(job.params), ctx), ctx)
    assert (again["version"], again["gate"]["decision"]) == (1, "unchanged")
    assert not ctx.artifacts.exists("model/manifest.json")  # nothing trained or saved again
    assert again["artifacts"]["model"].endswith(version["artifact"])
    assert [v["version"] for v in world.sdk["acme"].model("fleet-cpu")["versions"]] == [1]


def test_live_scores_per_level_with_the_vm_table(world):
    fleet = clean_fleet(days=15, vms=12)
    vms = pd.DataFrame(
        {
            "vm_id": sorted(fleet["series_id"].unique()),
            "host_id": [f"h{i // 3}" for i in range(12)],
            "cluster_id": [f"c{i // 6}" for i in range(12)],
            "vcpus": [2] * 12,
        }
    )
    table = world.write("vms", vms)
    world.train("fleet-cpu", world.write("train", fleet[fleet["timestamp"] < "2024-01-14"]))
    known = world.write("known", fleet[fleet["timestamp"] < "2024-01-15"])
    assert world.run("forecast", {"input": known, "model_from": "fleet-cpu@1"}).result
    scored = world.run(
        "model-score", {"model": "fleet-cpu", "input": world.write("all", fleet), "vms": table}
    )
    assert scored.state.value == "succeeded", scored.error
    levels = scored.result["scored"][0]["levels"]
    assert {k: v["series"] for k, v in levels.items()} == {"vm": 12, "host": 4, "cluster": 2}
    assert all(np.isfinite(v["mase"]) and v["mase"] > 0 for v in levels.values())


def test_an_unknown_gate_metric_fails_the_job_at_once_with_its_name(world):
    clean = world.write("clean", clean_fleet(days=14, vms=12))
    world.sdk["acme"].train_model("fleet-cpu", {"input": clean, "config": {"metric": "nope"}})
    (job,) = world.run_queued()
    assert job.state.value == "dead" and job.attempt == 1
    assert "gate metric 'nope'" in job.error and "known: decision_regret, mae, mase" in job.error
    assert world.sdk["acme"].models() == []  # nothing registered
