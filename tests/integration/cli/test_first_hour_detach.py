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

    def run_pipeline(self, document, params=None):
        self.submitted.append(("pipeline", document))
        steps = [{"name": name, "job_id": 6 + i} for i, name in enumerate(document["steps"])]
        return {"id": 2, "state": "waiting", "steps": steps}


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


GERMAN = "vm;Zeitstempel;Auslastung\nvm-1;2024-03-01T00:00:00;12,5\nvm-1;2024-03-01T00:05:00;13\n"


def test_sep_reads_the_csv_here_and_sends_what_it_read(server, tmp_path, env):
    import pandas as pd

    path = tmp_path / "de.csv"
    path.write_text(GERMAN)
    argv = ["--detach", "forecast", "--input", str(path), "--sep", ";"]
    argv += ["--columns", "series_id=vm,timestamp=Zeitstempel,value=Auslastung"]
    result = CliRunner().invoke(app, argv, env={**env, "ZHUGE_EMBEDDED": None})
    assert result.exit_code == 0, result.output
    ((_, params),) = server
    assert "sep" not in params  # no job parameter: the server reads what was sent
    sent = pd.read_parquet(params["input"])
    assert sent["Auslastung"].tolist() == [12.5, 13.0]


def test_a_wrong_sep_names_the_file_and_the_separator_it_looks_like(server, tmp_path, env):
    path = tmp_path / "de.csv"
    path.write_text(GERMAN)
    argv = ["forecast", "--input", str(path), "--sep", ","]
    result = CliRunner().invoke(app, argv, env={**env, "ZHUGE_EMBEDDED": None})
    text = " ".join(result.output.split())
    assert result.exit_code == 1
    assert f"--input {path} (read with --sep ',')" in text
    assert "looks ';'-separated: pass --sep ';'" in text
    assert server == []


def test_sep_needs_a_local_csv(server, tmp_path, env):
    argv = ["forecast", "--sql", "select 1", "--connection", "db", "--sep", ";"]
    result = CliRunner().invoke(app, argv, env={**env, "ZHUGE_EMBEDDED": None})
    assert result.exit_code == 1
    assert "--sep applies to a local CSV" in " ".join(result.output.split())


def test_detach_submits_the_two_step_plan_from_telemetry_as_a_pipeline(server, tmp_path, env):
    import pandas as pd

    vms = tmp_path / "vms.parquet"
    pd.DataFrame(
        {"vm_id": ["vm-1"], "host_id": ["h1"], "cluster_id": ["c1"], "memory_gb": [8.0]}
    ).to_parquet(vms)
    argv = ["--detach", "plan-migrations", "--input", _fleet(tmp_path), "--deadline", "24h"]
    argv += ["--vms", str(vms), "--json"]
    result = CliRunner().invoke(app, argv, env={**env, "ZHUGE_EMBEDDED": None})
    assert result.exit_code == 0, result.output
    ((what, document),) = server  # one pipeline, no job submitted on its own, none waited on
    assert what == "pipeline" and list(document["steps"]) == ["forecast", "plan"]
    assert document["steps"]["plan"]["params"]["forecast"] == "step://forecast/forecast.parquet"
    answer = json.loads(result.stdout)
    assert (answer["pipeline_id"], answer["forecast_job_id"], answer["job_id"]) == (2, 6, 7)
    assert "zhuge pipeline cancel 2" in answer["follow"]
