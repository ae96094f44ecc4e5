"""zhuge queues apply / ls / status, zhuge jobs why and the admission options of zhuge
submit, run in-process against an API over a real SQLite store (no Dask, no scheduler: rows
stand in for what admission writes, so nothing depends on timing)."""

from __future__ import annotations

import json

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from tests.conftest import FakeClock
from zhuge.api.app import create_app
from zhuge.cli import app as cli_app
from zhuge.cli import jobs as cli_jobs
from zhuge.cli import queues as cli_queues
from zhuge.client import Client
from zhuge.config import Settings
from zhuge.jobs import schema
from zhuge.jobs.kinds import get_kind
from zhuge.jobs.model import Worker
from zhuge.jobs.store import JobStore

QUEUES = """\
resources: [CPU, GPU, memory_gb]
cohorts:
  research: {tenants: [forecasting, analytics]}
tenants:
  forecasting: {weight: 2, nominal: {CPU: 8, GPU: 1}, borrowing_limit: {CPU: 8}}
  analytics:   {weight: 1, nominal: {CPU: 4}, lending_limit: {CPU: 2}}
"""


@pytest.fixture
def store(tmp_path):
    s = JobStore.open(f"sqlite:///{tmp_path / 'zhuge.db'}", clock=FakeClock())
    yield s
    s.dispose()


@pytest.fixture
def cli(store, tmp_path, monkeypatch):
    """Run ``zhuge`` in-process against an API on ``store``: as its admin, or as
    ``token=``."""
    admin = store.issue_token("default", "admin", role="admin")
    settings = Settings(home=tmp_path, db_url=str(store.engine.url))
    with TestClient(create_app(settings, store=store)) as http:

        def connect(url=None, token=None):
            return Client("http://testserver", token or admin, transport=http._transport)

        monkeypatch.setattr(cli_queues, "client", connect)
        monkeypatch.setattr(cli_jobs, "client", connect)
        runner = CliRunner()

        def run(*args: str, token: str | None = None):
            with_token = [*args, "--token", token] if token else list(args)
            return runner.invoke(cli_app, with_token, env={"COLUMNS": "200"})

        yield run


def _member(store: JobStore, tenant: str) -> str:
    store.ensure_tenant(tenant)
    return store.issue_token(tenant, "member")


def _jobs(store: JobStore) -> list:
    return store.list(limit=1000)


def test_apply_ls_and_a_bad_file(cli, store, tmp_path):
    r = cli("queues", "ls")
    assert r.exit_code == 0, r.output
    assert "no queues file applied" in r.stdout

    path = tmp_path / "queues.yaml"
    path.write_text(QUEUES)
    r = cli("queues", "apply", str(path))
    assert r.exit_code == 0, r.output
    assert "2 tenant(s), 1 cohort(s), counting CPU, GPU, memory_gb" in r.stdout

    r = cli("queues", "ls")
    assert r.exit_code == 0, r.output
    lines = {line.split()[1]: line for line in r.stdout.splitlines() if "│" in line[:2]}
    assert "research" in lines["forecasting"] and "CPU=8, GPU=1" in lines["forecasting"]
    assert "CPU=2" in lines["analytics"]  # its lending limit
    assert "applied" in r.stdout
    assert cli("queues", "ls", "--document").stdout == QUEUES
    listed = json.loads(cli("queues", "ls", "--json").stdout)
    assert (
        listed["document"] == QUEUES and listed["config"]["tenants"]["forecasting"]["weight"] == 2
    )

    bad = tmp_path / "bad.yaml"
    bad.write_text("tenants:\n  a: {weight: 0, nominal: {TPU: 1}}\n  b: {wieght: 1}\n")
    r = cli("queues", "apply", str(bad))
    assert r.exit_code == 1
    assert "tenants.a.weight" in r.stderr and "tenants.b.wieght" in r.stderr
    assert "Traceback" not in r.output
    r = cli("queues", "apply", str(bad), "--json")
    assert r.exit_code == 1 and json.loads(r.stdout)["error"]["type"] == "InvalidRequest"
    r = cli("queues", "apply", str(tmp_path / "missing.yaml"))
    assert r.exit_code == 2 and "does not exist" in r.output
    assert store.queues.document().document == QUEUES  # unchanged

    member = _member(store, "analytics")
    r = cli("queues", "apply", str(path), token=member)
    assert r.exit_code == 1 and "needs an admin token" in r.stderr


def test_status_for_an_admin_and_a_member(cli, store):
    store.queues.apply(QUEUES)
    store.record_workers(
        "s", [Worker("tcp://w1", {"CPU": 8}, 0), Worker("tcp://w2", {"CPU": 8}, 0)]
    )
    store.submit(tenant="forecasting", kind="sleep", params={}, resources={"CPU": 6}, gang=2)
    with store._tx() as conn:
        conn.execute(schema.jobs.update().values(state="running", attempt=1))
    store.submit(tenant="analytics", kind="sleep", params={}, resources={"CPU": 1})

    r = cli("queues", "status")
    assert r.exit_code == 0, r.output
    rows = {line.split()[1]: line for line in r.stdout.splitlines() if "│" in line[:2]}
    assert "CPU 12/8 (+4)" in rows["forecasting"] and "75%" in rows["forecasting"]
    assert "67%" in rows["forecasting"]  # entitled by weight 2 of 3
    assert "analytics" in rows
    assert "cluster: 2 worker(s), CPU 12/16; 1 running, 1 queued" in r.stdout

    r = cli("queues", "status", "--json", token=_member(store, "analytics"))
    data = json.loads(r.stdout)
    assert [t["tenant"] for t in data["tenants"]] == ["analytics"]
    assert data["cluster"]["running"] == 1


def test_jobs_why_in_words(cli, store):
    store.queues.apply("aging: {every: 0}\n")
    for priority in (3, 0):
        store.submit(tenant="other", kind="sleep", params={}, priority=priority)
    store.submit(tenant="forecasting", kind="sleep", params={}, priority=1)
    mine, _ = store.submit(
        tenant="forecasting", kind="sleep", params={}, resources={"CPU": 2}, gang=4
    )
    reason = "waiting for quota: forecasting uses 8/8 CPU, cohort has 0 idle"
    with store._tx() as conn:
        conn.execute(
            schema.jobs.update().where(schema.jobs.c.id == mine.id).values(pending_reason=reason)
        )
    r = cli("jobs", "why", str(mine.id))
    assert r.exit_code == 0, r.output
    text = " ".join(r.stdout.split())
    assert f"job {mine.id} is 2nd in forecasting's queue and 4th in the cluster: {reason}" in text
    assert "asks CPU=2 on each of 4 workers (gang); priority 0" in text
    assert "with aging" not in text  # aging is off
    assert json.loads(cli("jobs", "why", str(mine.id), "--json").stdout)["position_in_tenant"] == 2

    with store._tx() as conn:
        conn.execute(
            schema.jobs.update()
            .where(schema.jobs.c.id == mine.id)
            .values(state="running", attempt=1, assigned_workers=["tcp://a", "tcp://b"])
        )
    r = cli("jobs", "why", str(mine.id))
    assert f"job {mine.id} is running on tcp://a, tcp://b" in r.stdout
    r = cli("jobs", "why", "9999")
    assert r.exit_code == 1 and "9999" in r.stderr


def test_submit_takes_resources_gang_timeout_and_placement(cli, store):
    r = cli("submit", "sleep", "-p", "seconds=0", "--cpu", "2", "--memory", "4",
            "--resource", "ssd=1", "--resource", "fpga=0.5", "--gang", "3",
            "--timeout", "30m", "--placement", "spread", "--json")  # fmt: skip
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    (job,) = _jobs(store)
    assert job.resources == {"CPU": 2.0, "memory_gb": 4.0, "ssd": 1.0, "fpga": 0.5}
    assert (job.gang, job.timeout_s, job.placement) == (3, 1800.0, "spread")
    assert (out["gang"], out["timeout_s"], out["placement"]) == (3, 1800.0, "spread")

    r = cli("submit", "sleep", "--timeout", "45", "--gpu", "0.5", "--json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["timeout_s"] == 45.0
    assert json.loads(r.stdout)["resources"] == {"GPU": 0.5}
    r = cli("submit", "sleep", "--json")  # no resource option: the kind's own
    plain = json.loads(r.stdout)
    assert plain["resources"] == get_kind("sleep").resources
    assert (plain["gang"], plain["timeout_s"], plain["placement"]) == (1, None, None)


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--gang", "0"], "--gang"),
        (["--gang", "two"], "--gang"),
        (["--placement", "pack"], "--placement"),
        (["--timeout", "soon"], "not a duration"),
        (["--timeout", "0"], "more than 0 seconds"),
        (["--cpu", "-1"], "--cpu"),
        (["--memory", "0"], "--memory"),
        (["--resource", "ssd"], "not name=amount"),
        (["--resource", "9x=1"], "not name=amount"),
        (["--resource", "ssd=lots"], "more than 0"),
        (["--resource", "ssd=1", "--resource", "ssd=2"], "given twice"),
        (["--resource", "CPU=1", "--cpu", "2"], "given twice"),
    ],
)
def test_bad_submit_options_are_refused_and_nothing_is_submitted(cli, store, args, says):
    r = cli("submit", "sleep", *args)
    assert r.exit_code == 2, r.output
    assert says in " ".join(r.output.split()) and "Traceback" not in r.output
    with store.engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(schema.jobs)).scalar() == 0


def test_queues_demand_as_a_table_and_as_json(cli, store):
    store.record_workers("s", [Worker("tcp://w1", {"CPU": 2}, 0)])
    busy, _ = store.submit(tenant="analytics", kind="sleep", params={}, resources={"CPU": 2})
    with store._tx() as conn:
        conn.execute(
            schema.jobs.update()
            .where(schema.jobs.c.id == busy.id)
            .values(state="running", attempt=1, assigned_workers=["tcp://w1"])
        )
    r = cli("queues", "demand")
    assert r.exit_code == 0, r.output
    assert "no demand" in r.stdout
    for _ in range(3):
        store.submit(tenant="analytics", kind="sleep", params={}, resources={"CPU": 2})
    r = cli("queues", "demand")
    assert r.exit_code == 0, r.output
    (row,) = [line for line in r.stdout.splitlines() if "CPU=2" in line]
    assert [cell.strip() for cell in row.split("│")[1:4]] == ["CPU=2", "1", "3"]
    r = cli("queues", "demand", "--json")
    assert json.loads(r.stdout) == [{"resources": {"CPU": 2.0}, "gang": 1, "count": 3}]
