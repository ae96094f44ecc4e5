"""``zhuge simulate`` end to end through Typer, on the files in examples/ and bad ones."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from zhuge.cli import app

EXAMPLES = Path(__file__).resolve().parents[3] / "examples"
ARGS = [
    "simulate",
    "--trace",
    str(EXAMPLES / "jobs.csv"),
    "--queues",
    str(EXAMPLES / "queues.yaml"),
    "--pools",
    str(EXAMPLES / "pools.yaml"),
]


def test_simulate_prints_a_table_per_tenant() -> None:
    result = CliRunner().invoke(app, ARGS)
    assert result.exit_code == 0, result.output
    for tenant in ("forecasting", "analytics", "training"):
        assert tenant in result.output
    assert "Jain's fairness index" in result.output
    assert "utilisation: CPU" in result.output


def test_simulate_json_is_one_object() -> None:
    result = CliRunner().invoke(app, [*ARGS, "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    tenants = {t["tenant"]: t for t in report["tenants"]}
    assert set(tenants) == {"forecasting", "analytics", "training"}
    assert sum(t["jobs"] for t in tenants.values()) == report["jobs"] == 154
    assert all(t["finished"] == t["jobs"] for t in tenants.values())
    assert 0 < report["jain_index"] <= 1
    assert set(report["utilisation"]) == {"CPU", "GPU", "memory_gb"}
    assert abs(sum(t["share"] for t in tenants.values()) - 1) < 1e-9
    assert tenants["forecasting"]["wait_p95_s"] >= tenants["forecasting"]["wait_p50_s"]


def _with(tmp_path: Path, name: str, text: str) -> list[str]:
    path = tmp_path / name
    path.write_text(text)
    option = {"jobs.csv": "--trace", "queues.yaml": "--queues", "pools.yaml": "--pools"}[name]
    args = list(ARGS)
    args[args.index(option) + 1] = str(path)
    return args


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("jobs.csv", "submit_time,tenant,CPU,GPU,memory_gb,priority\n0,a,1,0,1,0\n", "duration_s"),
        (
            "jobs.csv",
            "submit_time,tenant,CPU,GPU,memory_gb,duration_s,priority\n0,a,1,0,1,-5,0\n",
            "line 2: duration_s",
        ),
        (
            "jobs.csv",
            "submit_time,tenant,CPU,GPU,memory_gb,duration_s,priority\n0,a,lots,0,1,5,0\n",
            "line 2: CPU",
        ),
        ("pools.yaml", "pools:\n  - {name: cpu, count: 0, resources: {CPU: 8}}\n", "pools.0.count"),
        ("pools.yaml", "workers: []\n", "pools"),
        ("queues.yaml", "tenants:\n  a: {weight: -1}\n", "tenants.a.weight"),
    ],
)
def test_bad_input_is_a_message_not_a_traceback(tmp_path, name, text, message) -> None:
    result = CliRunner().invoke(app, _with(tmp_path, name, text))
    assert result.exit_code == 1
    assert message in result.output
    assert "Traceback" not in result.output
    assert not isinstance(result.exception, Exception) or isinstance(result.exception, SystemExit)


def test_a_missing_file_is_named(tmp_path) -> None:
    args = list(ARGS)
    args[args.index("--trace") + 1] = str(tmp_path / "nope.csv")
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 1
    assert "trace file not found" in result.output and "nope.csv" in result.output
    json_result = CliRunner().invoke(app, [*args, "--json"])
    assert json.loads(json_result.output)["error"]["type"] == "InvalidRequest"
