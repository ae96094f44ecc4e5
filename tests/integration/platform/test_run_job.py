"""Convenience commands run their job on a server if one answers, else in-process."""

from __future__ import annotations

import pytest
import typer

from tests.conftest import free_port
from zhuge.cli import run
from zhuge.cli.run import connect, local_path, run_job
from zhuge.errors import ZhugeError

pytestmark = pytest.mark.slow


@pytest.fixture
def no_server(monkeypatch, tmp_path):
    monkeypatch.setenv("ZHUGE_URL", f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv("ZHUGE_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("ZHUGE_TOKEN", raising=False)
    monkeypatch.setenv("ZHUGE_RETRY_BASE_SECONDS", "0.05")
    return tmp_path


def test_embedded_platform_runs_the_job_through_its_api_when_no_server_answers(no_server):
    with connect(json_output=True) as client:
        assert client.url == "http://zhuge.embedded"  # its API, served to this process only
        job = run_job(client, "echo", {"fleet": "demo"}, title="echo", json_output=True)
        assert job["state"] == "succeeded" and job["result"] == {"fleet": "demo"}
        assert job["tenant"] == "default"  # the admin of its own home
        with pytest.raises(ZhugeError, match="sleep failed: SleepFailure"):
            run_job(
                client, "sleep", {"seconds": 0, "fail_times": 5}, title="sleep", json_output=True
            )
    assert (no_server / "home" / "zhuge.db").exists()  # it really ran on a platform


def test_ctrl_c_cancels_the_job(no_server, monkeypatch):
    def interrupted(get, title, json_output):
        assert get()["state"] in ("queued", "running")
        raise KeyboardInterrupt

    monkeypatch.setattr(run, "_follow", interrupted)
    with connect(json_output=True) as client:
        with pytest.raises(typer.Exit) as stopped:
            run_job(client, "sleep", {"seconds": 60}, title="sleep", json_output=True)
        assert stopped.value.exit_code == 130
        (job,) = client.list()
        assert job.state == "cancelled"


def test_local_paths_become_absolute_and_urls_pass(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert local_path("fleet.parquet") == str(tmp_path / "fleet.parquet")
    assert local_path("s3://bucket/fleet.parquet") == "s3://bucket/fleet.parquet"
