"""The job kinds ``plan-migration`` and ``calibrate-migration``.

A result's ``output`` names the artifact a caller usually wants (``zhuge plan-migrations
--out`` downloads it through the API); jobs write nowhere but their own artifact folder."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pandas as pd

from zhuge.jobs.context import JobContext
from zhuge.jobs.inputs import job_output
from zhuge.jobs.kinds import kind
from zhuge.jobs.migration.calibration import (
    CALIBRATION_FILE,
    CALIBRATION_KIND,
    calibration_document,
)
from zhuge.jobs.migration.coverage import add_unforecast, clean_actual, evaluable, grid_step
from zhuge.jobs.migration.inputs import read_actual, read_history
from zhuge.jobs.migration.params import CalibrateMigrationParams, PlanMigrationParams
from zhuge.jobs.migration.partitions import plan_partitions
from zhuge.jobs.migration.prepare import PreparedPlan, prepare_plan
from zhuge.jobs.outputs import json_safe
from zhuge.migration import (
    MigrationModel,
    calibrate,
    check_plan,
    evaluate_plan,
)

PLAN = "plan.parquet"  # the output of plan-migration


@kind(
    "plan-migration",
    params=PlanMigrationParams,
    description="Plan live migrations into the quietest windows of a load forecast.",
)
def run_plan_migration(params: PlanMigrationParams, ctx: JobContext) -> dict[str, Any]:
    ctx.progress(0, 3, "reading inputs")
    if params.forecast.strip().isdigit():  # a forecast job of the tenant: its forecast
        forecast = job_output(ctx, params.forecast, "forecast.parquet")
        params = params.model_copy(update={"forecast": forecast})
    prepared = prepare_plan(params, artifacts_root=ctx.artifacts_root)
    ctx.log(
        f"planning {len(prepared.vms)} VMs, window {prepared.constraints.window}, "
        f"calibration: {prepared.calibration}"
    )
    actual = read_actual(params.actual) if params.actual is not None else None

    plan, summary = plan_partitions(prepared, params, ctx)
    summary["calibration"] = prepared.calibration
    summary["violations"] = check_plan(
        plan, prepared.vms, prepared.constraints, hosts=prepared.hosts
    )
    plan, summary = add_unforecast(plan, summary, prepared.unforecast)
    if summary["violations"]:
        ctx.log(f"plan check found {len(summary['violations'])} violation(s)")

    evaluation = None
    if actual is not None:
        ctx.progress(2, 3, "evaluating against the actual load")
        evaluation = _evaluate(plan, summary, actual, prepared, ctx)

    ctx.progress(3, 3, "writing the plan")
    summary = json_safe(summary)
    artifacts = {
        "plan": ctx.artifacts.write_parquet(PLAN, plan),
        "summary": ctx.artifacts.write_json("summary.json", summary),
    }
    if evaluation is not None:
        evaluation = json_safe(evaluation)
        artifacts["evaluation"] = ctx.artifacts.write_json("evaluation.json", evaluation)
    return {"summary": summary, "evaluation": evaluation, "artifacts": artifacts, "output": PLAN}


def _evaluate(
    plan: pd.DataFrame,
    summary: dict[str, Any],
    actual: pd.DataFrame,
    prepared: PreparedPlan,
    ctx: JobContext,
) -> dict[str, Any] | None:
    """Score the plan on the VMs whose actual load (cleaned as forecasting cleans telemetry)
    covers the whole planning period; the others are named in ``left_out``."""
    step = grid_step(prepared.forecast)
    cleaned = clean_actual(actual, step)
    first, end = pd.Timestamp(summary["first_window"]), pd.Timestamp(summary["deadline"])
    vms = prepared.vms.assign(vm_id=prepared.vms["vm_id"].astype(str))
    period, covered, left_out = evaluable(cleaned, vms["vm_id"], first, end, step)
    if left_out["vms"]:
        ctx.log(f"evaluation leaves out {left_out['vms']} VM(s): {left_out['by_reason']}")
    if len(covered) == 0:
        return {"table": [], "ratios": {}, "evaluated_vms": 0, "left_out": left_out}
    keep = vms["vm_id"].isin(set(covered)).to_numpy()
    mine = plan.assign(vm_id=plan["vm_id"].astype(str))
    constraints = prepared.constraints.evolve(not_before=first, deadline=end)
    result = evaluate_plan(
        mine.loc[mine["vm_id"].isin(set(covered))], period, vms.loc[keep], constraints,
        model=prepared.model, hosts=prepared.hosts,
    ).to_dict()  # fmt: skip
    return {**result, "evaluated_vms": int(keep.sum()), "left_out": left_out}


@kind(
    "calibrate-migration",
    params=CalibrateMigrationParams,
    description="Fit the migration downtime model to past migrations.",
)
def run_calibrate_migration(params: CalibrateMigrationParams, ctx: JobContext) -> dict[str, Any]:
    ctx.progress(0, 2, "reading history")
    history = read_history(params.history) if params.history is not None else None
    defaults = MigrationModel(bandwidth_gbps=params.link_gbps)
    ctx.progress(1, 2, f"fitting {0 if history is None else len(history)} migrations")
    calibration = calibrate(history, defaults, min_migrations=params.min_migrations)
    document = calibration_document(calibration)
    data = json.dumps(document, indent=2, sort_keys=True).encode()
    folder = ctx.artifacts.child("calibration")
    folder.save(
        {CALIBRATION_FILE: data},
        kind=CALIBRATION_KIND,
        libraries=["numpy", "scipy", "pandas"],
        metadata={"source": calibration.source, "history": params.history},
    )
    ctx.progress(2, 2, "saved")
    return {
        "source": calibration.source,
        "model": document["model"],
        "defaults": dataclasses.asdict(defaults),
        "metrics": document["metrics"],
        "vms_with_own_coeff": len(calibration.per_vm),
        "artifacts": {"calibration": folder.url},
        "output": f"calibration/{CALIBRATION_FILE}",
    }
