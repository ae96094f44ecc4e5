"""Pipelines end to end on an embedded platform (real Dask workers, the API, the SDK): a
step reads its upstream step's output by ``step://`` (``job://ID/NAME`` on the job), and the
refusals of ``job://`` references."""

from __future__ import annotations

import pandas as pd
import pytest

from tests.conftest import wait_for
from zhuge.api.private_server import serve_privately
from zhuge.client import Client
from zhuge.config import Settings
from zhuge.errors import InvalidParams, InvalidPipeline, InvalidRequest
from zhuge.platform import Platform

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    folder = tmp_path_factory.mktemp("data")
    stamps = pd.date_range("2024-03-01", periods=48, freq="1h")
    rows = [
        {"series_id": f"vm-{i}", "timestamp": t, "value": float(10 * i + n % 7)}
        for i in range(3)
        for n, t in enumerate(stamps)
    ]
    pd.DataFrame(rows).to_csv(folder / "fleet.csv", index=False)
    return folder


@pytest.fixture(scope="module")
def platform(tmp_path_factory, data):
    settings = Settings(
        home=tmp_path_factory.mktemp("home"),
        workers=1,
        data_roots=(data,),
        retry_base_seconds=0.05,
        retry_max_seconds=0.2,
        poll_seconds=0.1,
    )
    with Platform(settings) as p:
        yield p


@pytest.fixture(scope="module")
def sdk(platform):
    with (
        serve_privately(platform.app()) as api,
        Client(api.url, platform.token, transport=api.transport) as client,
    ):
        client.other = Client(  # a member of another tenant
            api.url, platform.store.issue_token("other"), transport=api.transport
        )
        yield client
        client.other.close()


def finished(sdk: Client, pipeline_id: int) -> dict:
    return wait_for(
        lambda: sdk.pipeline(pipeline_id),
        what=f"pipeline {pipeline_id} to finish",
        until=lambda p: p["state"] in ("succeeded", "failed", "cancelled"),
    )


def prepare_twice(data, second_input: str) -> dict:
    return {
        "name": "prepare-twice",
        "params": {"fleet": str(data / "fleet.csv")},
        "steps": {
            "first": {"kind": "prepare", "params": {"input": "{{ fleet }}"}},
            "again": {"kind": "prepare", "params": {"input": second_input}},
        },
    }


def test_a_step_reads_its_upstream_steps_output(sdk, data):
    pipeline = sdk.run_pipeline(prepare_twice(data, "step://first/prepared.parquet"))
    done = finished(sdk, pipeline["id"])
    assert done["state"] == "succeeded", done
    first, again = (sdk.get(s["job_id"]) for s in done["steps"])
    assert again.raw["params"]["input"] == f"job://{first.id}/prepared.parquet"
    assert again.raw["after"] == [first.id]
    assert (first.result["series"], again.result["series"]) == (3, 3)
    assert again.result["rows"] == first.result["rows"]


def test_a_missing_artifact_fails_the_step_naming_what_the_job_has(sdk, data):
    pipeline = sdk.run_pipeline(prepare_twice(data, "step://first/nothing.parquet"))
    done = finished(sdk, pipeline["id"])
    first, again = done["steps"]
    assert (done["state"], first["state"], again["state"]) == ("failed", "succeeded", "dead")
    error = sdk.get(again["job_id"]).error
    assert f"names no artifact of job {first['job_id']}" in error
    assert "prepared.parquet" in error  # what it has


def test_a_job_reference_to_a_job_that_did_not_succeed_fails_the_reader(sdk, data):
    failing = sdk.submit("sleep", {"seconds": 0, "bad_input": True}, max_attempts=1)
    assert sdk.wait(failing.id).state == "dead"
    # submitted without after: it starts at once and finds the job dead
    reader = sdk.submit("prepare", {"input": f"job://{failing.id}/prepared.parquet"})
    ended = sdk.wait(reader.id)
    assert ended.state == "dead"
    assert f"job {failing.id}, which is dead, not succeeded" in ended.error


def test_job_references_are_refused_across_tenants_with_nothing_stored(sdk, data):
    pipeline = sdk.run_pipeline(prepare_twice(data, "step://first/prepared.parquet"))
    first = finished(sdk, pipeline["id"])["steps"][0]["job_id"]
    before = len(sdk.other.list())
    with pytest.raises(InvalidParams, match="is no such job in your tenant"):
        sdk.other.submit("prepare", {"input": f"job://{first}/prepared.parquet"})
    with pytest.raises(InvalidPipeline, match=r"steps\.first\.params\.input"):
        sdk.other.run_pipeline(prepare_twice(data, "step://first/prepared.parquet") | {
            "steps": {"first": {"kind": "prepare", "params": {"input": f"job://{first}/x"}}}
        })  # fmt: skip
    with pytest.raises(InvalidRequest, match=f"job {first} does not exist"):
        sdk.other.submit("sleep", {}, after=[first])
    assert len(sdk.other.list()) == before == 0
    assert sdk.other.pipelines() == []


def test_malformed_job_references_are_refused_at_submit(sdk):
    for ref, why in [
        ("job://x/prepared.parquet", "is not job://ID/NAME"),
        ("job://1/", "is not job://ID/NAME"),
        ("job://1/../../etc/passwd", "names no file of a job's outputs"),
    ]:
        with pytest.raises(InvalidParams, match=why):
            sdk.submit("prepare", {"input": ref})


def test_pipeline_run_wait_follows_every_step_to_the_end(sdk, data, tmp_path, monkeypatch):
    import json

    import yaml
    from typer.testing import CliRunner

    from zhuge.cli import app
    from zhuge.cli import pipelines as cli_pipelines

    monkeypatch.setattr(cli_pipelines, "client", lambda url=None, token=None: sdk)
    good = tmp_path / "good.yaml"
    good.write_text(yaml.safe_dump(prepare_twice(data, "step://first/prepared.parquet")))
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(prepare_twice(data, "step://first/missing.parquet")))

    done = CliRunner().invoke(app, ["pipeline", "run", str(good), "--wait", "--json"])
    assert done.exit_code == 0, done.output
    assert json.loads(done.stdout)["state"] == "succeeded"
    failed = CliRunner().invoke(app, ["pipeline", "run", str(bad), "--wait"])
    assert failed.exit_code == 1
    assert "failed" in failed.stdout and "names no artifact" in " ".join(failed.stdout.split())
