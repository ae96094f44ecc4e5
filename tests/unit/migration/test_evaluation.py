from __future__ import annotations

import pandas as pd
import pytest

from zhuge.errors import DataError
from zhuge.migration import (
    PlanConstraints,
    baseline_plan,
    check_plan,
    evaluate_plan,
    plan_migrations,
    synthetic_fleet,
)

CONSTRAINTS = PlanConstraints(
    window="30min", max_per_host=1, max_per_cluster=6, bandwidth_gbps=400.0
)


@pytest.fixture(scope="module")
def fleet():
    return synthetic_fleet(
        1500, seed=11, hours=48, vms_per_host=10, hosts_per_cluster=10, forecast_noise=2.0
    )


def test_plan_on_forecast_is_near_oracle_and_far_below_naive(fleet) -> None:
    plan, summary = plan_migrations(fleet.forecast, fleet.vms, CONSTRAINTS, method="greedy")
    assert summary["unplaced"] == 0
    report = evaluate_plan(plan, fleet.actual, fleet.vms, CONSTRAINTS, method="greedy")
    table = report.table
    assert table.loc["plan", "mean_load"] <= 1.10 * table.loc["oracle", "mean_load"]
    assert table.loc["plan", "mean_load"] <= 0.70 * table.loc["earliest", "mean_load"]
    assert table.loc["plan", "mean_load"] <= 0.70 * table.loc["night", "mean_load"]
    assert report.ratios["total_downtime_ms plan/earliest"] < 1.0
    assert "mean_load plan/oracle" in str(report)
    assert len(report.per_vm) == len(fleet.vms)


def test_naive_plans_obey_the_constraints(fleet) -> None:
    for strategy in ("earliest", "night"):
        plan, _ = baseline_plan(fleet.forecast, fleet.vms, CONSTRAINTS, strategy=strategy)
        assert check_plan(plan, fleet.vms, CONSTRAINTS) == []
    night, _ = baseline_plan(fleet.forecast, fleet.vms, CONSTRAINTS, strategy="night")
    # capacity spreads them around 02:00, but the 02:00 windows are filled first
    counts = night["start"].dt.strftime("%H:%M").value_counts()
    assert counts["02:00"] == counts.max()


def test_plan_off_the_actual_grid_is_refused(fleet) -> None:
    plan, _ = plan_migrations(fleet.forecast, fleet.vms, CONSTRAINTS, method="greedy")
    plan["start"] = plan["start"] + pd.Timedelta("7min")
    with pytest.raises(DataError, match="not windows of the actual data's grid"):
        evaluate_plan(plan, fleet.actual, fleet.vms, CONSTRAINTS)
