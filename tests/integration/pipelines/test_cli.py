"""zhuge pipeline run|show|ls|cancel and zhuge submit --after, in-process against an API
over a real SQLite store (no Dask: the commands only read and write rows)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from zhuge.api.app import create_app
from zhuge.cli import app as cli_app
from zhuge.cli import jobs as cli_jobs
from zhuge.cli import pipelines as cli_pipelines
from zhuge.client import Client
from zhuge.config import Settings
from zhuge.jobs.store import JobStore

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "pipelines" / "forecast-and-plan.yaml"

DIAMOND = """\
name: diamond
params: {seconds: 1}
steps:
  a: {kind: sleep, params: {seconds: "{{ seconds }}"}}
  b: {kind: sleep, after: [a]}
  c: {kind: echo, params: {text: "step://a/out.json"}}
  d: {kind: sleep, after: [b, c]}
"""


@pytest.fixture
def store(tmp_path):
    s = JobStore.open(f"sqlite:///{tmp_path / 'zhuge.db'}")
    yield s
    s.dispose()


@pytest.fixture
def cli(store, tmp_path, monkeypatch):
    token = store.issue_token("acme")
    settings = Settings(home=tmp_path, db_url=str(store.engine.url), data_roots=(tmp_path,))
    with TestClient(create_app(settings, store=store)) as http:

        def connect(url=None, token_=None):
            return Client("http://testserver", token, transport=http._transport)

        monkeypatch.setattr(cli_pipelines, "client", connect)
        monkeypatch.setattr(cli_jobs, "client", connect)
        runner = CliRunner()
        yield lambda *args: runner.invoke(cli_app, list(args), env={"COLUMNS": "200"})


def write(tmp_path, text: str, name: str = "p.yaml") -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def run_pipeline(cli, tmp_path) -> dict:
    r = cli("pipeline", "run", write(tmp_path, DIAMOND), "--param", "seconds=2", "--json")
    assert r.exit_code == 0, r.output
    return json.loads(r.stdout)


def test_run_answers_the_pipeline_and_show_draws_its_graph(cli, store, tmp_path):
    pipeline = run_pipeline(cli, tmp_path)
    steps = {s["name"]: s for s in pipeline["steps"]}
    assert store.get(steps["a"]["job_id"]).params["seconds"] == 2
    r = cli("pipeline", "show", str(pipeline["id"]))
    assert r.exit_code == 0, r.output
    lines = r.stdout.splitlines()
    assert f"pipeline {pipeline['id']} diamond waiting" in lines[0]
    # each step under the one it waits for, with its state and job id
    a = next(i for i, line in enumerate(lines) if f"a queued job {steps['a']['job_id']}" in line)
    b = next(i for i, line in enumerate(lines) if f"b blocked job {steps['b']['job_id']}" in line)
    d = next(i for i, line in enumerate(lines) if "after b, c" in line)
    assert a < b < d
    assert lines[b].index("b blocked") > lines[a].index("a queued")  # nested deeper
    assert "params: seconds=2" in r.stdout

    r = cli("pipeline", "ls")
    assert r.exit_code == 0
    assert "diamond" in r.stdout and "0/4 succeeded" in r.stdout


def test_cancel_cancels_every_step(cli, store, tmp_path):
    pipeline = run_pipeline(cli, tmp_path)
    r = cli("pipeline", "cancel", str(pipeline["id"]), "--json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["state"] == "cancelled"
    assert {j.state.value for j in store.list()} == {"cancelled"}


@pytest.mark.parametrize(
    ("text", "args", "message"),
    [
        (DIAMOND.replace("after: [a]", "after: [d]"), [], "the steps form a cycle"),
        (DIAMOND.replace("after: [a]", "after: [x]"), [], "steps.b.after.0: no step named 'x'"),
        (DIAMOND.replace("kind: echo", "kind: ech"), [], "steps.c.kind: unknown job kind 'ech'"),
        (DIAMOND.replace("step://a/", "step://z/"), [], "steps.c.params.text: no step named 'z'"),
        (DIAMOND, ["--param", "colour=red"], "params.colour: not a parameter"),
        (DIAMOND, ["--param", "seconds"], "--param 'seconds' is not NAME=VALUE"),
        ("name: [unclosed", [], "is not a YAML file"),
        ("- a list", [], "must hold a mapping"),
    ],
)
def test_run_refuses_a_bad_file_in_one_line_with_nothing_stored(cli, store, tmp_path, text, args, message):  # fmt: skip
    r = cli("pipeline", "run", write(tmp_path, text), *args)
    assert r.exit_code == 1
    assert message in " ".join(r.output.split())
    assert "Traceback" not in r.output
    assert store.list() == []


def test_run_a_missing_file_and_show_an_unknown_pipeline(cli, tmp_path):
    r = cli("pipeline", "run", str(tmp_path / "nope.yaml"))
    assert r.exit_code == 1 and "cannot read" in r.output
    r = cli("pipeline", "show", "99", "--json")
    assert r.exit_code == 1
    assert json.loads(r.stdout)["error"]["type"] == "PipelineNotFound"


def test_the_example_file_is_a_valid_pipeline(cli, store, tmp_path):
    # the server checks its data references: give it files under the allowed roots
    (tmp_path / "fleet.csv").write_text("series_id,timestamp,value\nvm-1,2024-03-01,1\n")
    (tmp_path / "vms.parquet").write_bytes(b"")
    assert yaml.safe_load(EXAMPLE.read_text())["name"] == "forecast-and-plan"
    r = cli(
        "pipeline", "run", str(EXAMPLE), "--json",
        "--param", f"telemetry={tmp_path / 'fleet.csv'}",
        "--param", f"vms={tmp_path / 'vms.parquet'}",
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    forecast, plan = json.loads(r.stdout)["steps"]
    assert plan["after"] == ["forecast"]
    assert store.get(plan["job_id"]).params["forecast"] == (
        f"job://{forecast['job_id']}/forecast.parquet"
    )


def test_submit_after(cli, store):
    r = cli("submit", "sleep", "--json")
    first = json.loads(r.stdout)["id"]
    r = cli("submit", "sleep", "--after", f"{first}, {first}", "--json")
    assert r.exit_code == 0, r.output
    job = json.loads(r.stdout)
    assert job["state"] == "blocked"
    assert store.upstream([job["id"]]) == {job["id"]: [first]}
    r = cli("jobs", "show", str(job["id"]))
    assert f"job {first}" in r.stdout and "blocked" in r.stdout
    r = cli("jobs", "why", str(job["id"]))
    assert f"waits for job {first} (queued)" in " ".join(r.stdout.split())

    r = cli("submit", "sleep", "--after", "12,x")
    assert r.exit_code == 2 and "'x' is not a job id" in " ".join(r.output.split())
    r = cli("submit", "sleep", "--after", "999")
    assert r.exit_code == 1 and "after: job 999 does not exist" in r.output
    assert len(store.list()) == 2
