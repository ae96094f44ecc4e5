"""zhuge schedules add / ls / show / pause / resume / rm / run-now and zhuge pipeline run
--template, in-process against an API over a real SQLite store with a fake clock; bad input
is one line and stores nothing; another tenant sees none of it."""

from __future__ import annotations

import json

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from tests.integration.schedules.conftest import ECHO_PIPELINE, FakeClock, utc
from zhuge.api.app import create_app
from zhuge.cli import app as cli_app
from zhuge.cli import pipelines as cli_pipelines
from zhuge.cli import schedules as cli_schedules
from zhuge.client import Client
from zhuge.config import Settings
from zhuge.jobs import schema
from zhuge.jobs.store import JobStore


@pytest.fixture
def store(tmp_path):
    s = JobStore.open(f"sqlite:///{tmp_path / 'zhuge.db'}", clock=FakeClock(utc(2026, 3, 5)))
    yield s
    s.dispose()


@pytest.fixture
def cli(store, tmp_path, monkeypatch):
    """Run ``zhuge`` in-process against an API on ``store``, as a member of ``acme`` (or
    as ``token=``)."""
    tokens = {who: store.issue_token(who) for who in ("acme", "other")}
    settings = Settings(home=tmp_path, db_url=str(store.engine.url), data_roots=(tmp_path,))
    with TestClient(create_app(settings, store=store)) as http:

        def connect(url=None, token=None):
            return Client("http://testserver", token or tokens["acme"], transport=http._transport)

        monkeypatch.setattr(cli_schedules, "client", connect)
        monkeypatch.setattr(cli_pipelines, "client", connect)

        def run(*args: str, token: str | None = None):
            extra = ["--token", tokens[token]] if token else []
            return CliRunner().invoke(cli_app, [*args, *extra], env={"COLUMNS": "200"})

        yield run


@pytest.fixture
def pipeline_file(tmp_path):
    path = tmp_path / "tiny.yaml"
    path.write_text(ECHO_PIPELINE)
    return path


def stored(store: JobStore, table: sa.Table) -> int:
    with store.engine.connect() as conn:
        return conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one()


def test_add_show_pause_resume_run_now_rm(cli, store, pipeline_file):
    added = cli("schedules", "add", "nightly", "--cron", "30 2 * * *", "--timezone",
                "America/New_York", "--pipeline", str(pipeline_file), "--param", "who=zhuge",
                "--json")  # fmt: skip
    assert added.exit_code == 0, added.output
    body = json.loads(added.stdout)
    assert (body["cron"], body["timezone"], body["params"]) == (
        "30 2 * * *", "America/New_York", {"who": "zhuge"}
    )  # fmt: skip
    shown = json.loads(cli("schedules", "show", "nightly", "--json").stdout)
    # the store's clock is 2026-03-05 00:00 UTC: the 8th is the spring-forward day in New York
    assert [s["local"] for s in shown["next_slots"]][2:4] == [
        "2026-03-07T02:30:00-05:00",
        "2026-03-08T03:00:00-04:00",
    ]
    assert shown["next_slots"][3]["utc"] == "2026-03-08T07:00:00+00:00"
    text = cli("schedules", "show", "nightly")
    assert text.exit_code == 0 and "2026-03-08T03:00:00-04:00" in text.stdout
    listed = cli("schedules", "ls")
    assert "nightly" in listed.stdout and "active" in listed.stdout

    paused = cli("schedules", "pause", "nightly", "--reason", "maintenance", "--json")
    assert json.loads(paused.stdout)["paused_reason"] == "maintenance"
    assert "maintenance" in cli("schedules", "ls").stdout
    assert json.loads(cli("schedules", "resume", "nightly", "--json").stdout)["paused"] is False

    ran = cli("schedules", "run-now", "nightly", "--json")
    assert ran.exit_code == 0, ran.output
    run = json.loads(ran.stdout)
    assert (run["trigger"], run["outcome"]) == ("manual", "fired")
    pipeline = store.list(tenant="acme", limit=10)
    assert {j.params.get("greeting") for j in pipeline} == {"hello zhuge", None}
    runs = json.loads(cli("schedules", "show", "nightly", "--json").stdout)["runs"]
    assert [(r["pipeline_id"], r["pipeline_state"]) for r in runs] == [
        (run["pipeline_id"], "waiting")
    ]

    assert cli("schedules", "rm", "nightly").exit_code == 0
    assert stored(store, schema.schedules) == 0 and stored(store, schema.schedule_runs) == 0
    assert stored(store, schema.pipelines) == 1  # the pipeline it ran stays


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--cron", "0 2 * *"], "five fields"),
        (["--cron", "0 2 * * *", "--timezone", "Mars/Olympus"], "IANA"),
        (["--cron", "0 2 * * *", "--overlap", "sometimes"], "overlap must be skip or queue"),
        (["--cron", "0 2 * * *", "--catch-up", "all"], "catch-up must be latest or none"),
        (["--cron", "0 2 * * *", "--template", "fleet-nightly"], "one of them"),
        (["--cron", "0 2 * * *", "--param", "nope=1"], "not a parameter of this pipeline"),
    ],
)
def test_bad_input_is_one_line_and_stores_nothing(cli, store, pipeline_file, args, words):
    result = cli("schedules", "add", "x", "--pipeline", str(pipeline_file), *args)
    assert result.exit_code == 1
    assert words in result.stderr and "Traceback" not in result.output
    assert len(result.stderr.strip().splitlines()) <= 2
    assert stored(store, schema.schedules) == 0


def test_an_unknown_kind_or_template_is_refused(cli, store, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: bad\nsteps:\n  a: {kind: nope}\n")
    result = cli("schedules", "add", "x", "--cron", "0 2 * * *", "--pipeline", str(bad))
    assert result.exit_code == 1 and "steps.a.kind" in result.stderr
    result = cli("schedules", "add", "x", "--cron", "0 2 * * *", "--template", "nightly-x")
    assert result.exit_code == 1 and "fleet-nightly" in result.stderr
    assert stored(store, schema.schedules) == 0


def test_a_name_is_unique_in_a_tenant_and_other_tenants_see_nothing(cli, store, pipeline_file):
    add = ["schedules", "add", "nightly", "--cron", "0 2 * * *", "--pipeline", str(pipeline_file)]
    assert cli(*add).exit_code == 0
    again = cli(*add)
    assert again.exit_code == 1 and "exists" in again.stderr
    assert cli(*add, token="other").exit_code == 0  # the same name in another tenant
    for command in (["show", "nightly"], ["pause", "nightly"], ["run-now", "nightly"]):
        assert cli("schedules", *command, "--json").exit_code == 0
    listed = json.loads(cli("schedules", "ls", "--json", token="other").stdout)
    assert [s["paused"] for s in listed] == [False]  # its own, not acme's paused one
    assert cli("schedules", "rm", "nightly", token="other").exit_code == 0
    missing = cli("schedules", "show", "nightly", token="other")
    assert missing.exit_code == 1 and "does not exist" in missing.stderr
    assert stored(store, schema.schedules) == 1


def test_pipeline_run_template_fleet_nightly(cli, tmp_path):
    result = cli("pipeline", "run", "--template", "fleet-nightly", "--source",
                 str(tmp_path / "t.parquet"), "--vms", str(tmp_path / "vms.parquet"),
                 "--param", "algorithm=gbm", "--json")  # fmt: skip
    assert result.exit_code == 0, result.output
    pipeline = json.loads(result.stdout)
    steps = {s["name"]: s for s in pipeline["steps"]}
    assert list(steps) == ["prepare", "train", "forecast", "score", "plan"]
    assert set(steps["forecast"]["after"]) == {"prepare", "train"}
    assert steps["plan"]["after"] == ["forecast"]
    missing = cli("pipeline", "run", "--template", "fleet-nightly")
    assert missing.exit_code == 1 and "source" in missing.stderr


def test_a_step_parameter_is_named_as_the_file_names_it_not_as_another_commands_option(cli):
    result = cli("schedules", "add", "x", "--cron", "0 2 * * *", "--template", "fleet-nightly",
                 "--source", "/elsewhere/t.parquet", "--vms", "/elsewhere/v.parquet")  # fmt: skip
    assert result.exit_code == 1
    assert "steps.prepare.params.input" in result.stderr and "outside your allowed roots" in (
        result.stderr
    )
    assert "--input" not in result.stderr  # schedules add has no such option
