"""Convenience commands run their job on a server if one answers, else in-process."""

from __future__ import annotations

import pytest

from tests.conftest import free_port
from zhuge.cli.run import local_path, run_job
from zhuge.errors import ZhugeError

pytestmark = pytest.mark.slow


@pytest.fixture
def no_server(monkeypatch, tmp_path):
    monkeypatch.setenv("ZHUGE_URL", f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv("ZHUGE_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("ZHUGE_TOKEN", raising=False)
    monkeypatch.setenv("ZHUGE_RETRY_BASE_SECONDS", "0.05")
    return tmp_path


def test_embedded_platform_runs_the_job_when_no_server_answers(no_server):
    job = run_job("echo", {"fleet": "demo"}, title="echo", json_output=True)
    assert job["state"] == "succeeded" and job["result"] == {"fleet": "demo"}
    assert (no_server / "home" / "zhuge.db").exists()  # it really ran on a platform


def test_a_failed_job_raises_with_its_error(no_server):
    with pytest.raises(ZhugeError, match="sleep failed: SleepFailure"):
        run_job("sleep", {"seconds": 0, "fail_times": 5}, title="sleep", json_output=True)


def test_local_paths_become_absolute_and_urls_pass(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert local_path("fleet.parquet") == str(tmp_path / "fleet.parquet")
    assert local_path("s3://bucket/fleet.parquet") == "s3://bucket/fleet.parquet"
