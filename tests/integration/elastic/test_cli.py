"""zhuge pools apply / ls, zhuge autoscaler log and zhuge costs, run in-process against an
API over a real SQLite store (no Dask: the store's calls stand in for the scheduler, and a
fake provider for workers, so nothing depends on timing)."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from tests.integration.elastic.conftest import T0, FakeClock
from tests.integration.elastic.test_autoscaler import POOLS, census, scaler_with_fake
from zhuge.api.app import create_app
from zhuge.cli import app as cli_app
from zhuge.cli import costs as cli_costs
from zhuge.cli import pools as cli_pools
from zhuge.client import Client
from zhuge.config import Settings
from zhuge.jobs.store import JobStore

PRICED = POOLS.replace("provider: local", "provider: local\n    price_per_hour: {on_demand: 3.6}")


@pytest.fixture
def store(tmp_path):
    s = JobStore.open(f"sqlite:///{tmp_path / 'zhuge.db'}", clock=FakeClock())
    yield s
    s.dispose()


@pytest.fixture
def settings(tmp_path, store):
    return Settings(home=tmp_path, db_url=str(store.engine.url), autoscale_seconds=1.0)


@pytest.fixture
def cli(store, settings, monkeypatch):
    admin = store.issue_token("default", "admin", role="admin")
    with TestClient(create_app(settings, store=store)) as http:

        def connect(url=None, token=None):
            return Client("http://testserver", token or admin, transport=http._transport)

        monkeypatch.setattr(cli_pools, "client", connect)
        monkeypatch.setattr(cli_costs, "client", connect)
        runner = CliRunner()

        def run(*args: str, token: str | None = None):
            with_token = [*args, "--token", token] if token else list(args)
            return runner.invoke(cli_app, with_token, env={"COLUMNS": "200"})

        yield run


def test_pools_apply_ls_log_and_costs(cli, store, settings, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(POOLS.replace("provider: local", "provider: k8s"))
    refused = cli("pools", "apply", str(bad))
    assert refused.exit_code == 1
    assert f"{bad}: pools.0.provider: 'k8s' is not a provider configured" in refused.output
    assert "Traceback" not in refused.output
    good = tmp_path / "pools.yaml"
    good.write_text(PRICED)
    applied = cli("pools", "apply", str(good))
    assert applied.exit_code == 0, applied.output
    assert "in force: burst" in applied.output
    # the autoscaler grows the pool for a job, which runs 100 s
    scaler, fake = scaler_with_fake(store, settings)
    job, _ = store.submit(tenant="ana", kind="sleep", params={}, resources={"CPU": 1, "burst": 1})
    scaler.tick()
    workers = census(store, fake)
    scaler.tick()  # its up-time starts once the census sees it
    (started,) = store.admit(owner="sched-a", workers=workers, lease_seconds=3600).started
    store.start_attempt(job.id, started.attempt, worker=fake.up[0], lease_seconds=3600)
    store.clock.now = T0 + 100
    store.complete(job.id, started.attempt, result={}, cpu_seconds=7.0)
    census(store, fake)
    listed = cli("pools", "ls", "--json")
    assert listed.exit_code == 0, listed.output
    (pool,) = json.loads(listed.output)["pools"]
    assert (pool["spec"]["name"], pool["workers"], pool["draining"]) == ("burst", 1, 0)
    assert pool["last_decision"]["to_size"] == 1
    table = cli("pools", "ls")
    assert "burst" in table.output and "0-2" in table.output and "3.6" in table.output
    log = cli("autoscaler", "log", "--pool", "burst", "--changes", "--json")
    assert [(d["from_size"], d["to_size"]) for d in json.loads(log.output)] == [(0, 1)]
    assert "0 → 1" in cli("autoscaler", "log").output
    costs = json.loads(cli("costs", "--by", "pool", "--json").output)
    (line,) = costs["lines"]
    # one whole burst worker for 100 s at 3.60 an hour
    assert (line["key"], line["attempts"]) == ("burst", 1)
    assert line["cost"] == pytest.approx(100 * 3.6 / 3600)
    assert line["cpu_seconds"] == 7.0
    assert "charged to jobs: 0.1000" in cli("costs").output
    member = store.issue_token("ana", "member")
    assert cli("pools", "ls", token=member).output.startswith("error: this needs an admin token")
    mine = cli("costs", token=member)
    assert mine.exit_code == 0 and "ana" in mine.output and "pools' bill" not in mine.output
    wrong = cli("costs", "--by", "colour")
    assert wrong.exit_code == 1 and "--by 'colour': choose one of" in wrong.output
    when = cli("costs", "--since", "last tuesday")
    assert when.exit_code == 1 and "--since 'last tuesday' is neither" in when.output
    # (the store's clock is of 2023: an ISO time, not a duration back from today)
    that_day = json.loads(cli("costs", "--since", "2023-11-14T00:00:00", "--json").output)
    assert [line["attempts"] for line in that_day["lines"]] == [1]
    later = json.loads(cli("costs", "--since", "2024-01-01T00:00:00+00:00", "--json").output)
    assert later["lines"] == [] and later["capacity_cost"] == 0
