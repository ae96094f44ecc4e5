"""--detach: a convenience command submits, says how to follow the job, and returns; jobs
download fetches the output later."""

from __future__ import annotations

import json
from types import SimpleNamespace
from typing import ClassVar

import pytest
from typer.testing import CliRunner

from zhuge.cli import app, hoist_global_options, run
from zhuge.cli import jobs as jobs_cli


class _Server:
    """A server that answers, takes jobs, and must never be waited on."""

    submitted: ClassVar[list] = []

    def __init__(self, *_a, **_k) -> None:
        pass

    def health(self) -> bool:
        return True

    def __enter__(self):
        return self

    def __exit__(self, *_):
        return None

    def close(self) -> None:
        pass

    def data_roots(self) -> list[str]:
        return ["/"]

    def submit(self, kind, params, **_):
        self.submitted.append((kind, params))
        return SimpleNamespace(id=5, kind=kind, state="queued")

    def get(self, job_id):
        raise AssertionError("a detached command does not wait")


@pytest.fixture
def server(monkeypatch) -> list:
    _Server.submitted = []
    monkeypatch.setattr(run, "Client", _Server)
    return _Server.submitted


def _fleet(tmp_path) -> str:
    path = tmp_path / "fleet.csv"
    path.write_text("series_id,timestamp,value\nvm-1,2024-03-01T00:00:00,1\n")
    return str(path)


@pytest.mark.parametrize("args", [["--detach", "forecast"], ["forecast"]])
def test_detach_prints_the_job_and_how_to_follow_it(server, tmp_path, env, args):
    argv = [*args, "--input", _fleet(tmp_path), "--out", str(tmp_path / "f.parquet")]
    if "--detach" not in argv:
        argv = hoist_global_options([*argv, "--detach"])
    result = CliRunner().invoke(app, argv, env={**env, "ZHUGE_EMBEDDED": None})
    assert result.exit_code == 0, result.output
    assert [kind for kind, _ in server] == ["forecast"]
    assert "job 5 (forecast) submitted" in result.output
    for line in ("zhuge jobs wait 5", "zhuge jobs cancel 5", "zhuge jobs download 5 --out"):
        assert line in result.output
    assert not (tmp_path / "f.parquet").exists()


def test_detach_json(server, tmp_path, env):
    result = CliRunner().invoke(
        app,
        ["--detach", "forecast", "--input", _fleet(tmp_path), "--json"],
        env={**env, "ZHUGE_EMBEDDED": None},
    )
    assert result.exit_code == 0, result.output
    answer = json.loads(result.stdout)
    assert answer["job_id"] == 5 and "zhuge jobs wait 5" in answer["follow"]


def test_detach_without_a_server_is_refused_before_anything_starts(tmp_path, env):
    result = CliRunner().invoke(app, ["--detach", "forecast", "--input", _fleet(tmp_path)], env=env)
    assert result.exit_code == 1
    assert "--detach needs a zhuge server" in " ".join(result.output.split())
    assert not (tmp_path / "home").exists()  # no embedded platform was started


def test_the_flag_is_reset_between_runs(server, tmp_path, env):
    CliRunner().invoke(app, ["--detach", "kinds", "--url", "http://127.0.0.1:9"], env=env)
    assert run.detach.on
    CliRunner().invoke(app, ["kinds", "--url", "http://127.0.0.1:9"], env=env)
    assert not run.detach.on


def test_jobs_download_writes_the_output_or_says_why_not(monkeypatch, tmp_path):
    jobs = {
        1: SimpleNamespace(state="succeeded", done=True, result={"output": "forecast.parquet"}),
        2: SimpleNamespace(state="running", done=False, result=None),
    }
    fetched = []

    def download_artifact(job_id, name, dest):
        fetched.append((job_id, name))
        dest.write_bytes(b"PAR1")
        return dest

    fake = SimpleNamespace(get=jobs.__getitem__, download_artifact=download_artifact)
    monkeypatch.setattr(jobs_cli, "client", lambda *a, **k: fake)
    out = tmp_path / "f.parquet"
    ok = CliRunner().invoke(app, ["jobs", "download", "1", "--out", str(out)])
    assert ok.exit_code == 0, ok.output
    assert fetched == [(1, "forecast.parquet")] and out.read_bytes() == b"PAR1"
    waiting = CliRunner().invoke(app, ["jobs", "download", "2", "--out", str(out)])
    assert waiting.exit_code == 1
    text = " ".join(waiting.output.split())
    assert "job 2 is running" in text and "zhuge jobs wait 2" in text
