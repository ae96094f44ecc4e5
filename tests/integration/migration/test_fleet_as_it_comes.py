"""``plan-migrations --input`` on demo-data telemetry as a new user has it: a VM created after
the history ends is listed unplaced with the reason (not an error), and ``--evaluate-with``
takes the next day's raw telemetry (duplicates, off-grid timestamps, VMs with no rows)."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from typer.testing import CliRunner

from zhuge.cli import app
from zhuge.data import write_fleet

pytestmark = pytest.mark.slow


def test_input_plans_or_lists_every_vm_and_evaluates_on_raw_telemetry(env, tmp_path):
    files = write_fleet(tmp_path / "fleet", 30, 4, "5min", seed=3)
    telemetry = pd.read_parquet(files.telemetry)
    vms = pd.read_parquet(files.vms)
    cut = telemetry["timestamp"].min().floor("1D") + pd.Timedelta("3D")
    history = telemetry.loc[telemetry["timestamp"] < cut]
    late = sorted(set(vms["vm_id"]) - set(history["series_id"].astype(str)))
    newcomer = vms.iloc[[0]].assign(vm_id="vm-new")  # in the table, never in the telemetry
    pd.concat([vms, newcomer], ignore_index=True).to_parquet(tmp_path / "vms.parquet")
    history.to_parquet(tmp_path / "history.parquet")
    nxt = telemetry.loc[telemetry["timestamp"] >= cut]
    pd.concat([nxt, nxt.iloc[::5]]).to_parquet(tmp_path / "next.parquet")  # duplicate rows

    out = tmp_path / "plan.parquet"
    args = ["plan-migrations", "--input", str(tmp_path / "history.parquet"),
            "--vms", str(tmp_path / "vms.parquet"), "--window", "30min", "--deadline", "24h",
            "--max-per-host", "2", "--max-per-cluster", "20",
            "--evaluate-with", str(tmp_path / "next.parquet"), "--out", str(out), "--json"]  # fmt: skip
    result = CliRunner().invoke(app, args, env=env)
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    plan = pd.read_parquet(out).set_index("vm_id")
    assert sorted(plan.index) == sorted([*vms["vm_id"], "vm-new"])
    for vm in ["vm-new", *late]:
        assert pd.isna(plan.at[vm, "start"])
        assert plan.at[vm, "reason"].startswith("no forecast")
    assert report["summary"]["unplaced_by_reason"]["no-forecast"] >= 1
    evaluation = report["evaluation"]
    # scored on the VMs the raw next day covers; vm-new, with no forecast, is not among them
    assert 0 < evaluation["evaluated_vms"] <= len(vms) - len(late)
    assert evaluation["evaluated_vms"] + evaluation["left_out"]["vms"] == len(vms) - len(late)
    table = {row["plan"]: row for row in evaluation["table"]}
    assert table["plan"]["mean_load"] < table["earliest"]["mean_load"]
    assert report["forecast_job"]["model"]  # chosen by the decision (docs/migration.md)
