"""The fleet-nightly template end to end on a small generated fleet: added as a schedule
through the SDK, fired for two nights by the schedules' firing, every step run by the real
runner. Night one trains the first version (champion), forecasts and plans; night two, with
one more day of telemetry, trains again behind the gate and scores night one's forecast."""

from __future__ import annotations

import pandas as pd
import pytest
from fastapi.testclient import TestClient

from zhuge.api.app import create_app
from zhuge.client import Client
from zhuge.config import Settings
from zhuge.data.demo import write_fleet
from zhuge.jobs.inputs import private_paths
from zhuge.jobs.pipelines import get_pipeline
from zhuge.jobs.registry import Registry
from zhuge.jobs.runner import AttemptSpec, run_attempt
from zhuge.jobs.schedules import Schedules
from zhuge.jobs.slots import next_slots
from zhuge.jobs.store import JobStore

pytestmark = pytest.mark.slow

VMS, DAYS = 10, 9


def run_pipeline(store: JobStore, settings: Settings, pipeline_id: int):
    """Run the pipeline's jobs in this process, as workers would, until none is left."""
    while True:
        claimed = store.claim(limit=10, owner="test", lease_seconds=600)
        if not claimed:
            return get_pipeline(store, pipeline_id)
        for job in claimed:
            run_attempt(
                AttemptSpec(
                    db_url=settings.database_url,
                    artifacts_url=settings.artifacts_root,
                    job_id=job.id,
                    attempt=job.attempt,
                    lease_seconds=600,
                    heartbeat_seconds=10,
                    data_roots=tuple(str(r) for r in settings.data_roots),
                    private_paths=private_paths(settings),
                )
            )


def test_the_nightly_template_runs_two_nights_on_a_demo_fleet(tmp_path):
    root = tmp_path / "root"
    files = write_fleet(root / "fleet", VMS, DAYS, "1h", seed=4)
    telemetry = pd.read_parquet(files.telemetry)
    last_day = telemetry["timestamp"].max().floor("D")
    source = root / "telemetry.parquet"  # what the source holds each night
    telemetry[telemetry["timestamp"] < last_day].to_parquet(source, index=False)

    home = tmp_path / "home"
    home.mkdir()
    db_url = f"sqlite:///{home / 'zhuge.db'}"
    settings = Settings(home=home, db_url=db_url, data_roots=(root,))
    store = JobStore.open(db_url)
    token = store.issue_token("acme")
    try:
        with TestClient(create_app(settings, store=store)) as http:
            sdk = Client("http://testserver", token, transport=http._transport)
            added = sdk.add_schedule(
                "nightly",
                "0 2 * * *",
                template="fleet-nightly",
                timezone="Asia/Shanghai",
                params={"source": str(source), "vms": files.vms, "algorithm": "gbm"},
            )
            assert added["template"] == "fleet-nightly" and added["timezone"] == "Asia/Shanghai"
            schedule = Schedules(store, settings).get("acme", "nightly")
            first, second = next_slots(schedule.cron, schedule.zone, schedule.created_at, 2)

            (night1,) = Schedules(store, settings).fire_due(now=first + 1)
            one = run_pipeline(store, settings, night1.pipeline_id)
            assert one.state == "succeeded", [(s.name, s.state, s.error) for s in one.steps]
            steps = {s.name: store.get(s.job_id) for s in one.steps}
            assert set(steps) == {"prepare", "train", "forecast", "score", "plan"}
            assert steps["train"].result["version"] == 1
            assert steps["score"].result["scored"] == []  # nothing forecast before tonight
            plan = steps["plan"].result["summary"]
            assert plan["vms"] == VMS and plan["placed"] == VMS and not plan["violations"]

            # the next night the source holds one more day: what night one forecast
            telemetry.to_parquet(source, index=False)
            (night2,) = Schedules(store, settings).fire_due(now=second + 1)
            two = run_pipeline(store, settings, night2.pipeline_id)
            assert two.state == "succeeded", [(s.name, s.state, s.error) for s in two.steps]
            steps2 = {s.name: store.get(s.job_id) for s in two.steps}
            assert steps2["train"].result["version"] == 2
            (scored,) = steps2["score"].result["scored"]
            assert scored["job"] == steps["forecast"].id and scored["version"] == 1

            registry = Registry(store.engine)
            assert registry.resolve("acme", "fleet-cpu@champion").version in (1, 2)
            shown = sdk.schedule("nightly")
            assert [(r["outcome"], r["pipeline_state"]) for r in shown["runs"]] == [
                ("fired", "succeeded"),
                ("fired", "succeeded"),
            ]
            assert [r["pipeline_id"] for r in shown["runs"]] == [two.id, one.id]
    finally:
        store.dispose()
