"""The plan-migration and calibrate-migration kinds, run in-process with ``local_context``."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from zhuge.errors import DataError, InvalidParams
from zhuge.jobs.context import local_context
from zhuge.jobs.kinds import get_kind
from zhuge.jobs.migration import (
    CalibrateMigrationParams,
    PlanMigrationParams,
    run_calibrate_migration,
    run_plan_migration,
)
from zhuge.migration import MigrationModel, check_plan, synthetic_fleet, synthetic_history


@pytest.fixture(scope="module")
def fleet():
    # 4 clusters of 2 hosts x 5 VMs: small, and enough clusters to partition
    return synthetic_fleet(40, seed=3, hours=24, vms_per_host=5, hosts_per_cluster=2)


@pytest.fixture
def files(tmp_path, fleet) -> dict[str, Path]:
    paths = {
        "vms": tmp_path / "vms.parquet",
        "forecast": tmp_path / "forecast.parquet",
        "actual": tmp_path / "actual.parquet",
    }
    fleet.vms.to_parquet(paths["vms"])
    fleet.forecast.to_parquet(paths["forecast"])
    fleet.actual.to_parquet(paths["actual"])
    return paths


@pytest.fixture
def ctx(tmp_path):
    return local_context(7, artifacts_url=(tmp_path / "artifacts").as_uri())


def _params(files: dict[str, Path], **changes) -> PlanMigrationParams:
    base = {
        "forecast": str(files["forecast"]),
        "vms": str(files["vms"]),
        "window": "1h",
        "deadline": "20h",
        "max_per_host": 1,
        "max_per_cluster": 2,
        "bandwidth_gbps": 60.0,
        "blackouts": ["08:00-10:00"],
    }
    return PlanMigrationParams(**{**base, **changes})


def test_plan_is_written_with_a_summary_that_matches_it(files, ctx, fleet):
    params = _params(files, actual=str(files["actual"]))
    result = run_plan_migration(params, ctx)

    assert result["output"] == "plan.parquet"  # what `zhuge plan-migrations --out` downloads
    plan = ctx.artifacts.read_parquet("plan.parquet")
    assert ctx.artifacts.read_json("summary.json") == result["summary"]
    assert list(plan.columns[:7]) == [
        "vm_id", "start", "end", "predicted_load", "predicted_downtime_ms",
        "predicted_total_s", "reason",
    ]  # fmt: skip
    assert sorted(plan["vm_id"]) == sorted(fleet.vms["vm_id"])

    summary = result["summary"]
    placed = plan["start"].notna()
    assert summary["placed"] == placed.sum() and summary["placed"] + summary["unplaced"] == 40
    assert summary["total_predicted_downtime_ms"] == pytest.approx(
        plan["predicted_downtime_ms"].sum()
    )
    assert summary["peak_concurrent_per_host"] <= 1
    assert summary["peak_concurrent_per_cluster"] <= 2
    assert summary["violations"] == []
    assert summary["calibration"] == "defaults"
    assert plan.loc[placed, "end"].max() <= pd.Timestamp("2024-01-01 20:00")
    assert (plan.loc[~placed, "reason"].str.len() > 0).all()

    ratios = result["evaluation"]["ratios"]
    assert set(ratios) >= {"mean_load plan/oracle", "total_downtime_ms plan/earliest"}
    assert ratios["mean_load plan/earliest"] < 1
    assert ctx.artifacts.read_json("evaluation.json") == result["evaluation"]


def test_partitions_by_cluster_match_one_plan_when_bandwidth_cannot_bind(files, ctx, fleet):
    run_plan_migration(_params(files, bandwidth_gbps=None), ctx)
    ctx2 = local_context(8, artifacts_url=ctx.artifacts_root.url)
    split = run_plan_migration(_params(files, bandwidth_gbps=None, partition_vms=10), ctx2)

    assert split["summary"]["partitions"]["count"] == 4
    assert split["summary"]["partitions"]["bandwidth_split"] == "not binding"
    a = ctx.artifacts.read_parquet("plan.parquet")
    b = ctx2.artifacts.read_parquet("plan.parquet")
    pd.testing.assert_frame_equal(a, b)


def test_a_budget_too_tight_to_split_is_planned_as_one_and_respected(files, ctx, fleet):
    # 4 partitions of one cluster (2 concurrent each); 30 Gbit/s is 3 slots at 10 Gbit/s:
    # one partition would get none, so the fleet is planned whole under the whole budget
    params = _params(files, bandwidth_gbps=30.0, partition_vms=10)
    result = run_plan_migration(params, ctx)
    assert result["summary"]["partitions"] == {
        "count": 1,
        "bandwidth_split": "one plan (bandwidth too tight)",
    }
    plan = ctx.artifacts.read_parquet("plan.parquet")
    constraints = _constraints(params, pd.Timestamp("2024-01-01 20:00"))
    assert check_plan(plan, fleet.vms, constraints) == []
    assert result["summary"]["peak_bandwidth_gbps"] <= 30.0


def test_two_partitions_share_a_binding_budget_in_proportion(files, ctx, fleet):
    # 40 Gbit/s = 4 slots over partitions of 2 clusters each (concurrency 4 + 4): 2 + 2
    params = _params(files, bandwidth_gbps=40.0, partition_vms=20)
    result = run_plan_migration(params, ctx)
    parts = result["summary"]["partitions"]
    assert parts["count"] == 2 and parts["bandwidth_gbps"] == [20.0, 20.0]
    assert parts["bandwidth_split"] == "proportional to each partition's concurrency limit"
    plan = ctx.artifacts.read_parquet("plan.parquet")
    constraints = _constraints(params, pd.Timestamp("2024-01-01 20:00"))
    assert check_plan(plan, fleet.vms, constraints) == []  # the whole plan keeps the budget
    assert result["summary"]["peak_bandwidth_gbps"] <= 40.0
    assert result["summary"]["violations"] == []


def _constraints(params: PlanMigrationParams, deadline: pd.Timestamp):
    from zhuge.migration import PlanConstraints

    return PlanConstraints(
        window=params.window,
        max_per_host=params.max_per_host,
        max_per_cluster=params.max_per_cluster,
        bandwidth_gbps=params.bandwidth_gbps,
        blackouts=tuple(params.blackouts),
        deadline=deadline,
    )


def test_calibration_is_saved_and_used_by_job_id_or_file(tmp_path, files, ctx):
    truth = MigrationModel(base_dirty_mbps=20.0, dirty_rate_coeff=25.0)
    history = tmp_path / "past_migrations.csv"
    synthetic_history(300, truth, n_vms=20, seed=1).to_csv(history, index=False)
    calibrated = run_calibrate_migration(CalibrateMigrationParams(history=str(history)), ctx)
    assert calibrated["source"] == "fit"
    assert calibrated["vms_with_own_coeff"] == 20  # every VM has >= 3 past migrations
    assert set(calibrated["metrics"]["total_s"]) == {"mape_pct", "r2"}
    # the output `zhuge calibrate-migrations --out FILE` downloads, as a file of the caller's
    out = tmp_path / "calibration.json"
    out.write_bytes(ctx.artifacts.read_bytes(calibrated["output"]))

    summaries = []
    for ref in ("7", str(out)):
        plan_ctx = local_context(9, artifacts_url=ctx.artifacts_root.url)
        result = run_plan_migration(_params(files, calibration=ref), plan_ctx)
        assert result["summary"]["calibration"] == "fit"
        summaries.append(result["summary"]["total_predicted_downtime_ms"])
    default = run_plan_migration(
        _params(files), local_context(10, artifacts_url=ctx.artifacts_root.url)
    )
    assert summaries[0] == summaries[1] != default["summary"]["total_predicted_downtime_ms"]

    with pytest.raises(DataError, match="job 123 saved no migration calibration"):
        run_plan_migration(_params(files, calibration="123"), ctx)


def test_calibration_without_history_reports_the_defaults(ctx):
    result = run_calibrate_migration(CalibrateMigrationParams(), ctx)
    assert result["source"] == "defaults"
    assert result["model"] == result["defaults"]
    assert "defaults" in result["metrics"]["note"]


def test_actual_load_may_come_as_telemetry_with_a_value_column(files, ctx, fleet, tmp_path):
    actual = tmp_path / "telemetry.parquet"
    fleet.actual.rename(columns={"yhat": "value"}).to_parquet(actual)
    result = run_plan_migration(_params(files, actual=str(actual)), ctx)
    assert result["evaluation"]["ratios"]["mean_load plan/earliest"] < 1


def _break(kind: str, tmp_path: Path, files: dict[str, Path], fleet) -> dict:
    """Parameter changes that make the input bad in one way."""
    if kind == "missing forecast":
        path = tmp_path / "short.parquet"
        fleet.forecast[fleet.forecast["series_id"] != "vm000003"].to_parquet(path)
        return {"forecast": str(path)}
    if kind == "unknown host":
        path = tmp_path / "hosts.parquet"
        pd.DataFrame({"host_id": ["h0", "h1"], "cluster_id": ["c0", "c0"]}).to_parquet(path)
        return {"hosts": str(path)}
    if kind == "short deadline":
        return {"deadline": "30min"}
    if kind == "negative memory":
        path = tmp_path / "bad_vms.parquet"
        fleet.vms.assign(
            memory_gb=fleet.vms["memory_gb"].where(fleet.vms.index != 4, -8.0)
        ).to_parquet(path)
        return {"vms": str(path)}
    if kind == "no such file":
        return {"vms": str(tmp_path / "nope.parquet")}
    if kind == "not parquet":
        path = tmp_path / "garbage.parquet"
        path.write_text("vm_id,host_id\nvm1,h1\n")
        return {"forecast": str(path)}
    if kind == "misspelt column":
        path = tmp_path / "typo.parquet"
        fleet.vms.assign(dirty_rate_coef=1.0).to_parquet(path)
        return {"vms": str(path)}
    if kind == "missing column":
        path = tmp_path / "no_memory.parquet"
        fleet.vms.drop(columns=["memory_gb"]).to_parquet(path)
        return {"vms": str(path)}
    if kind == "unknown vm in list":
        path = tmp_path / "ids.txt"
        path.write_text("vm000001\nvm999999\n")
        return {"vm_list": str(path)}
    if kind == "actual without load":
        path = tmp_path / "actual_no_load.parquet"
        fleet.actual.rename(columns={"yhat": "cpu"}).to_parquet(path)
        return {"actual": str(path)}
    raise AssertionError(kind)


BAD_INPUTS = {
    "missing forecast": r"VM\(s\) 'vm000003' have no rows in the forecast",
    "unknown host": r"unknown host\(s\) 'h2'",
    "short deadline": r"less than one window \(0 days 01:00:00\)",
    "negative memory": r"memory_gb must be a positive number.*'vm000004'",
    "no such file": r"vms file .*nope.parquet does not exist",
    "not parquet": r"forecast file .*garbage.parquet is not a readable Parquet file",
    "misspelt column": r"unknown column 'dirty_rate_coef'; did you mean 'dirty_rate_coeff'",
    "missing column": r"vms lacks column\(s\) \['memory_gb'\]",
    "unknown vm in list": r"'vm999999' in the vm list are not in vms",
    "actual without load": r"actual lacks a column 'yhat' or 'value'",
}


@pytest.mark.parametrize("kind", list(BAD_INPUTS))
def test_bad_input_raises_a_data_error_naming_it_and_writes_nothing(
    kind, tmp_path, files, ctx, fleet
):
    params = _params(files, **_break(kind, tmp_path, files, fleet))
    with pytest.raises(DataError, match=BAD_INPUTS[kind]):
        run_plan_migration(params, ctx)
    assert not ctx.artifacts.exists()


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("window", "soon", "not a duration"),
        ("blackouts", ["8-10"], "time-of-day range"),
        ("deadline", "whenever", "neither a duration"),
        ("max_per_host", 0, "greater than or equal to 1"),
    ],
)
def test_bad_parameters_are_refused_at_submission(field, value, message):
    spec = get_kind("plan-migration")
    with pytest.raises(InvalidParams) as info:
        spec.parse({"forecast": "f.parquet", "vms": "v.parquet", field: value})
    assert info.value.details[0]["loc"][0] == field
    assert message in info.value.details[0]["msg"]


def test_bad_history_is_a_data_error(tmp_path, ctx):
    history = tmp_path / "past.csv"
    history.write_text("vm_id,memory_gb,observed_load,downtime_ms\nvm1,8,50,100\n")
    with pytest.raises(DataError, match=r"history lacks column\(s\) \['total_s'\]"):
        run_calibrate_migration(CalibrateMigrationParams(history=str(history)), ctx)
    assert not ctx.artifacts.exists()
