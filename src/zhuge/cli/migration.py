"""``zhuge plan-migrations`` and ``zhuge calibrate-migrations``: the migration planner as commands.

Both check their inputs here, before a job is submitted (the job kind's own checks, run on the
local files), so a typo fails in a second with one line and nothing is written. The work runs
as a ``plan-migration`` / ``calibrate-migration`` job on the server at ZHUGE_URL, or on an
embedded platform when none answers. The kinds' module loads pandas and scipy, so it is
imported only when a command runs, keeping ``zhuge --help`` fast.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from zhuge.cli.common import JsonOpt, console, duration, err_console, print_json, user_errors
from zhuge.cli.run import (
    checked_out,
    connect,
    data_refs,
    detach,
    follow_job,
    is_local,
    local_path,
    refuse_telemetry_as_forecast,
    run_and_report,
    run_job,
    save_output,
)
from zhuge.errors import DataError, InvalidParams

if TYPE_CHECKING:
    from zhuge.jobs.migration import PlanMigrationParams

UNPLACED_SHOWN = 10  # VMs listed with their reason; the JSON output and summary.json have 20
PLAN_DATA = {  # parameter -> the option that names data
    "forecast": "--forecast",
    "vms": "--vms",
    "vm_list": "--vm-list",
    "hosts": "--hosts",
    "calibration": "--calibration",
    "actual": "--evaluate-with",
}

PLAN_HELP = """Plan live migrations of VMs into the quietest windows of a load forecast.

Each VM gets the window where its predicted downtime is lowest, within the limits: at most \
--max-per-host migrations leaving a host and --max-per-cluster in a cluster at once, the \
migrations' link rates within --bandwidth-gbps, none in a --blackout, all done by --deadline. \
Inputs are checked before anything runs; bad input writes nothing.

\b
Example:
  zhuge plan-migrations --forecast forecast.parquet --vms vms.parquet \\
      --window 30min --deadline 24h --max-per-host 2 --max-per-cluster 20 \\
      --blackout 08:00-10:00 --out plan.parquet --evaluate-with actual.parquet

\b
forecast.parquet: series_id (= vm_id), timestamp, yhat (CPU %), on a regular grid.
vms.parquet:      vm_id, host_id, cluster_id, memory_gb
                  (+ optional dirty_rate_coeff, priority, must_move_by).
plan.parquet:     vm_id, start, end, predicted_load, predicted_downtime_ms,
                  predicted_total_s, reason, bandwidth_gbps
                  (no start for a VM that cannot be placed; reason says why).
"""

CALIBRATE_HELP = """Fit the migration downtime model to migrations that really happened.

The history has one row per past migration: vm_id, start, memory_gb, observed_load (CPU %), \
downtime_ms, total_s. The fleet's dirty-rate coefficients are fitted by least squares, and \
each VM with at least --min-migrations rows gets its own coefficient. Without --history the \
documented defaults are reported. The calibration is saved as an artifact of the job; pass \
the job id (or the --out file) to `zhuge plan-migrations --calibration`.

\b
Example:
  zhuge calibrate-migrations --history past_migrations.csv --out calibration.json
  zhuge plan-migrations ... --calibration calibration.json
"""


def _path(value: Path | str | None) -> str | None:
    return local_path(value)


def _zero_is_none(value: float | None) -> float | None:
    return None if value is not None and value <= 0 else value


def _plan_params(**options: Any) -> dict[str, Any]:
    """Parameters of the ``plan-migration`` job, validated by its model (InvalidParams if not)."""
    from zhuge.jobs.kinds import get_kind

    return get_kind("plan-migration").normalise(options)


def plan_migrations_command(
    vms: Annotated[
        str,
        typer.Option("--vms", help="Parquet VM table: vm_id, host_id, cluster_id, memory_gb."),
    ],
    forecast: Annotated[
        str | None,
        typer.Option(
            "--forecast", help="Parquet forecast: series_id, timestamp, yhat. Use this or --input."
        ),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option("--out", help="Download the plan to this file (Parquet), replaced whole."),
    ] = None,
    window: Annotated[str, typer.Option(help="Window length; migrations start on one.")] = "30min",
    deadline: Annotated[
        str | None,
        typer.Option(
            help="All migrations end by then: a duration after the start ('24h') or a timestamp. "
            "Default: the end of the forecast."
        ),
    ] = None,
    not_before: Annotated[
        str | None,
        typer.Option(help="Plan nothing before this (timestamp, or duration after the start)."),
    ] = None,
    max_per_host: Annotated[int, typer.Option(help="Concurrent migrations leaving a host.")] = 1,
    max_per_cluster: Annotated[
        int, typer.Option(help="Concurrent migrations in a cluster (0: no limit).")
    ] = 8,
    bandwidth_gbps: Annotated[
        float,
        typer.Option(help="Gbit/s shared by all migrations running at once (0: no limit)."),
    ] = 100.0,
    link_gbps: Annotated[
        float | None,
        typer.Option(help="Gbit/s one migration takes (default: the calibration's, else 10)."),
    ] = None,
    blackout: Annotated[
        list[str] | None,
        typer.Option("--blackout", help="Daily range with no migrations, e.g. 08:00-10:00."),
    ] = None,
    vm_list: Annotated[
        str | None, typer.Option("--vm-list", help="Plan only these vm_ids (one per line).")
    ] = None,
    hosts: Annotated[
        str | None,
        typer.Option(help="Parquet host table: host_id, cluster_id (+ max_migrations)."),
    ] = None,
    calibration: Annotated[
        str | None,
        typer.Option(help="calibrate-migrations job id, or its --out JSON file."),
    ] = None,
    evaluate_with: Annotated[
        str | None,
        typer.Option(
            "--evaluate-with",
            help="Parquet of the load that really happened: score the plan against the "
            "oracle and naive plans.",
        ),
    ] = None,
    method: Annotated[str, typer.Option(help="auto, greedy or milp.")] = "auto",
    risk: Annotated[
        float | None,
        typer.Option(
            "--risk",
            help="Plan on this quantile of the forecast (0.8: minimise the 80th percentile of "
            "downtime); the forecast needs yhat_qNN columns (with --input they are made).",
        ),
    ] = None,
    input_: Annotated[
        str | None,
        typer.Option(
            "--input",
            help="Fleet metrics (series_id, timestamp, value): forecast first, then plan.",
        ),
    ] = None,
    freq: Annotated[
        str, typer.Option("--freq", help="With --input: the forecast's grid, 5min, 30min or 1h.")
    ] = "1h",
    horizon: Annotated[
        str | None,
        typer.Option(
            "--horizon",
            help="With --input: how far to forecast (default: --deadline when it is a "
            "duration, plus --not-before; else 24h).",
        ),
    ] = None,
    model_from: Annotated[
        str | None,
        typer.Option(
            "--model-from",
            help="With --input: forecast with this saved model: a job id, or a registered "
            "NAME@ALIAS / NAME@VERSION (fleet-cpu@champion), resolved when the forecast starts.",
        ),
    ] = None,
    json_output: JsonOpt = False,
) -> None:
    with user_errors(json_output):
        from zhuge.jobs.migration import PlanMigrationParams, prepare_plan, read_actual

        if (forecast is None) == (input_ is None):
            raise InvalidParams("give exactly one of --forecast FILE or --input FLEET_FILE")
        if risk is not None and not 0 < risk < 1:
            raise InvalidParams(f"--risk must lie strictly between 0 and 1, not {risk:g}")
        out = checked_out(out)
        forecast_options: dict[str, Any] = {}
        forecast_job: dict[str, Any] = {}
        if input_ is not None:
            forecast_options = _forecast_options(
                input_, freq, horizon or _horizon_of(deadline, not_before), model_from, vms,
                limits={
                    "window": window,
                    "max_per_host": max_per_host,
                    "max_per_cluster": max_per_cluster,
                    "bandwidth_gbps": bandwidth_gbps,
                    "blackouts": blackout or [],
                },
                risk=risk,
            )  # fmt: skip
        params = _plan_params(
            forecast=_path(forecast) if forecast is not None else _path(input_),
            vms=_path(vms),
            vm_list=_path(vm_list),
            hosts=_path(hosts),
            window=window,
            deadline=deadline,
            not_before=not_before,
            max_per_host=max_per_host,
            max_per_cluster=max_per_cluster if max_per_cluster > 0 else None,
            bandwidth_gbps=_zero_is_none(bandwidth_gbps),
            link_gbps=link_gbps,
            blackouts=blackout or [],
            method=method,
            risk=risk,
            calibration=_calibration_ref(calibration),
            actual=_path(evaluate_with),
            # a VM whose telemetry gives nothing to forecast from is listed, not an error
            missing_forecast="unplaced" if input_ is not None else "error",
        )
        checked = PlanMigrationParams.model_validate(params)
        # A job id names what the server keeps: the calibration, or the forecast made first.
        data = {k: flag for k, flag in PLAN_DATA.items() if not str(params.get(k)).isdigit()}
        if forecast_options:
            data.pop("forecast")
        if all(is_local(params.get(k)) for k in data):  # check local files before any work
            if forecast_options:
                _check_without_forecast(checked)
            else:
                if checked.actual is not None:
                    read_actual(checked.actual, light=True)
                if "calibration" not in data:
                    checked = checked.model_copy(update={"calibration": None})
                refuse_telemetry_as_forecast(checked.forecast)
                prepare_plan(checked, light=True)

        with connect(json_output) as client:
            if forecast_options:
                forecast_job, job = _forecast_then_plan(
                    client,
                    data_refs(client, forecast_options, {"input": "--input", "vms": "--vms"}),
                    data_refs(client, params, data),
                    json_output=json_output,
                )
            else:
                job = run_job(
                    client,
                    "plan-migration",
                    data_refs(client, params, data),
                    title="planning migrations",
                    json_output=json_output,
                )
            result = {**job["result"], "out": save_output(client, job, out)}
    made = None
    if forecast_options:
        made = {
            "job_id": forecast_job["id"],
            "forecast": forecast_job["result"]["artifacts"]["forecast"],
            "series": forecast_job["result"]["series"],
            "model": forecast_job["result"]["model"]["chosen"],
            "why": forecast_job["result"]["model"]["reason"],
        }
    if json_output:
        print_json({"job_id": job["id"], **result, "forecast_job": made})
        return
    if made is not None:
        console.print(
            f"forecast first (job {made['job_id']}): {made['series']:,} VMs by {made['model']}"
            f" — {made['why']}"
        )
    _print_plan(result, job)


def forecast_then_plan_pipeline(forecast: dict[str, Any], plan: dict[str, Any]) -> dict[str, Any]:
    """``--input``: the two-step pipeline the server runs, forecast then plan, the plan
    reading the forecast step's output (docs/pipelines.md); the same for API and SDK users."""
    return {
        "name": "plan-migrations",
        "steps": {
            "forecast": {"kind": "forecast", "params": forecast},
            "plan": {
                "kind": "plan-migration",
                "params": {**plan, "forecast": "step://forecast/forecast.parquet"},
                "after": ["forecast"],
            },
        },
    }


def _forecast_then_plan(
    client: Any, forecast: dict[str, Any], plan: dict[str, Any], *, json_output: bool
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Submit the pipeline and follow its steps; Ctrl-C cancels it. The finished forecast
    and plan jobs (an error if either did not succeed). With ``--detach``: say how to
    follow the pipeline, and exit 0."""
    pipeline = client.run_pipeline(forecast_then_plan_pipeline(forecast, plan))
    jobs = {step["name"]: step["job_id"] for step in pipeline["steps"]}
    if detach.on:
        _detached_pipeline(pipeline["id"], jobs, json_output)
        raise typer.Exit(0)
    try:
        forecast_job = follow_job(
            client, jobs["forecast"], kind="forecast", title="forecasting", json_output=json_output
        )
        plan_job = follow_job(
            client,
            jobs["plan"],
            kind="plan-migration",
            title="planning migrations",
            json_output=json_output,
        )
    except KeyboardInterrupt:
        client.cancel_pipeline(pipeline["id"])
        err_console.print(f"cancelled pipeline {pipeline['id']}")
        raise typer.Exit(130) from None
    return forecast_job, plan_job


def _detached_pipeline(pipeline_id: int, jobs: dict[str, int], json_output: bool) -> None:
    follow = [
        f"zhuge pipeline show {pipeline_id}",
        f"zhuge jobs wait {jobs['plan']}",
        f"zhuge jobs download {jobs['plan']} --out FILE",
        f"zhuge pipeline cancel {pipeline_id}",
    ]
    if json_output:
        print_json(
            {
                "pipeline_id": pipeline_id,
                "job_id": jobs["plan"],
                "forecast_job_id": jobs["forecast"],
                "follow": follow,
            }
        )
        return
    console.print(
        f"pipeline [bold]{pipeline_id}[/] submitted: forecast (job {jobs['forecast']}), then "
        f"plan (job {jobs['plan']}); it runs without this command"
    )
    for line in follow:
        console.print(f"  {line}", highlight=False)


def _calibration_ref(value: str | None) -> str | None:
    if value is None or value.strip().isdigit():
        return value.strip() if value else None
    return _path(value)


def _horizon_of(deadline: str | None, not_before: str | None) -> str:
    """How far ``--input`` forecasts: to the deadline when both are durations, else a day."""
    import pandas as pd

    from zhuge.jobs.migration import parse_when

    if deadline is None:
        return "24h"
    until = parse_when(deadline)
    if not isinstance(until, pd.Timedelta):
        return "24h"
    if not_before is not None:
        start = parse_when(not_before)
        if isinstance(start, pd.Timedelta):
            until += start
    minutes = max(1, math.ceil(until / pd.Timedelta(minutes=1)))
    return f"{minutes}min"


def _forecast_options(
    fleet: str,
    freq: str,
    horizon: str,
    model_from: int | str | None,
    vms: str,
    *,
    limits: dict[str, Any],
    risk: float | None = None,
) -> dict[str, Any]:
    """``--input``: the ``forecast`` job's parameters, checked on the fleet's first rows. A
    model it trains is chosen by the decision: the one whose plans under these limits capture
    most (docs/forecasting.md)."""
    from zhuge.cli.forecast import checked_params

    if isinstance(model_from, str) and model_from.strip().isdigit():
        model_from = int(model_from)  # a job id; else NAME@ALIAS, resolved by the forecast kind
    options: dict[str, Any] = {
        "input": _path(fleet),
        "freq": None if model_from is not None else freq,
        "horizon": horizon if model_from is None else None,
        "model_from": model_from,
    }
    if model_from is None:
        options.update(select_by="decision", vms=_path(vms), **limits)
        if risk is not None:  # the quantile the plan minimises, and the usual 80 % interval
            options["quantiles"] = sorted({0.1, 0.9, risk})
    return checked_params("forecast", options)


def _check_without_forecast(params: PlanMigrationParams) -> None:
    """The plan's own inputs, before the forecast is made (bad input writes nothing)."""
    from zhuge.jobs.migration import VM_OPTIONAL, VM_REQUIRED, read_parquet
    from zhuge.migration.validation import validate_vms

    validate_vms(read_parquet(params.vms, "vms", required=VM_REQUIRED, optional=VM_OPTIONAL))
    if params.actual is not None:
        from zhuge.jobs.migration import read_actual

        read_actual(params.actual, light=True)


def _fmt(value: Any, unit: str = "", digits: int = 1) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.{digits}f}{unit}"
    return f"{value:,}{unit}" if isinstance(value, int) else f"{value}{unit}"


def _print_plan(result: dict[str, Any], job: dict[str, Any]) -> None:
    s = result["summary"]
    table = Table(title=f"Migration plan (job {job['id']})", show_header=False)
    table.add_column("", style="bold")
    table.add_column("")
    parts = s.get("partitions") or {}
    rows = [
        ("VMs placed", f"{s['placed']:,} of {s['vms']:,}"),
        ("windows", f"{s['windows']} x {duration(s['window'])} from {s['first_window']}"),
        ("deadline", duration(s["deadline"])),
        ("total predicted downtime", _fmt(s["total_predicted_downtime_ms"] / 1000, " s", 2)),
        ("mean predicted downtime", _fmt(s["mean_predicted_downtime_ms"], " ms")),
        ("mean predicted load", _fmt(s["mean_predicted_load"], " %")),
        ("longest migration", _fmt(s["max_predicted_total_s"], " s")),
        ("peak concurrent per host", _fmt(s["peak_concurrent_per_host"])),
        ("peak concurrent per cluster", _fmt(s["peak_concurrent_per_cluster"])),
        ("peak bandwidth", _fmt(s["peak_bandwidth_gbps"], " Gbit/s", 0)),
        ("cannot converge (stop-and-copy)", _fmt(s["non_convergent"])),
        ("solver", f"{s['method']}, {parts.get('count', 1)} partition(s), {s['seconds']} s"),
        ("model", s.get("calibration", "defaults")),
    ]
    if s.get("violations"):
        rows.append(("[red]constraint violations[/]", str(len(s["violations"]))))
    for name, value in rows:
        table.add_row(name, str(value))
    console.print(table)

    if s["unplaced"]:
        why = Table(title=f"{s['unplaced']:,} VM(s) cannot be placed, for example")
        why.add_column("vm_id")
        why.add_column("reason")
        for example in s["unplaced_examples"][:UNPLACED_SHOWN]:
            why.add_row(str(example["vm_id"]), example["reason"])
        console.print(why)
        counts = ", ".join(f"{k}: {v}" for k, v in s["unplaced_by_reason"].items())
        console.print(f"unplaced by reason: {counts}")

    evaluation = result.get("evaluation")
    if evaluation:
        _print_evaluation(evaluation)
    console.print(f"plan: {result['out'] or result['artifacts']['plan']}")
    console.print(f"[dim]artifacts: {job['artifacts']}[/]")


def _print_evaluation(evaluation: dict[str, Any]) -> None:
    left = evaluation.get("left_out") or {}
    if left.get("vms"):
        why = ", ".join(f"{k}: {v}" for k, v in left["by_reason"].items())
        console.print(
            f"evaluated on {evaluation.get('evaluated_vms', 0):,} VM(s); "
            f"{left['vms']:,} left out ({why})"
        )
    if not evaluation["table"]:
        return
    table = Table(title="Realised on the actual load (same constraints)")
    columns = ["plan", "placed", "mean_load", "total_downtime_ms", "p95_downtime_ms"]
    for column in columns:
        table.add_column(column, justify="left" if column == "plan" else "right")
    for row in evaluation["table"]:
        table.add_row(*(_fmt(row.get(c), digits=2) for c in columns))
    console.print(table)
    ratios = Table(title="Plan / other (below 1: the plan did better)")
    ratios.add_column("measure")
    ratios.add_column("ratio", justify="right")
    for name, value in evaluation["ratios"].items():
        style = "green" if value is not None and value <= 1 else "yellow"
        ratios.add_row(name, f"[{style}]{_fmt(value, digits=3)}[/]")
    console.print(ratios)


def calibrate_migrations_command(
    history: Annotated[
        str | None,
        typer.Option(help="CSV or Parquet of past migrations. Without it: the defaults."),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option(help="Download the calibration JSON to this file, replaced whole."),
    ] = None,
    min_migrations: Annotated[
        int, typer.Option(help="Past migrations a VM needs for its own coefficient.")
    ] = 3,
    link_gbps: Annotated[float, typer.Option(help="Link rate the history ran at.")] = 10.0,
    json_output: JsonOpt = False,
) -> None:
    with user_errors(json_output):
        from zhuge.jobs.kinds import get_kind
        from zhuge.jobs.migration import CalibrateMigrationParams, read_history

        params = get_kind("calibrate-migration").normalise(
            {
                "history": _path(history),
                "min_migrations": min_migrations,
                "link_gbps": link_gbps,
            }
        )
        checked = CalibrateMigrationParams.model_validate(params)
        if checked.history is not None and is_local(checked.history):
            frame = read_history(checked.history)
            if len(frame) < 3:
                raise DataError(
                    f"history has {len(frame)} migration(s); at least 3 are needed to fit"
                )
        done = run_and_report(
            "calibrate-migration", params, title="calibrating", json_output=json_output,
            data={"history": "--history"}, out=out,
        )  # fmt: skip
    if done:
        job, result = done
        _print_calibration(result, job)


def _print_calibration(result: dict[str, Any], job: dict[str, Any]) -> None:
    model, defaults = result["model"], result["defaults"]
    title = "fitted" if result["source"] == "fit" else "defaults (no history)"
    table = Table(title=f"Migration model: {title} (job {job['id']})")
    table.add_column("parameter")
    table.add_column("value", justify="right")
    table.add_column("default", justify="right")
    for name in ("base_dirty_mbps", "dirty_rate_coeff", "resume_overhead_ms", "bandwidth_gbps"):
        table.add_row(name, _fmt(model[name], digits=3), _fmt(defaults[name], digits=3))
    console.print(table)
    metrics = result["metrics"]
    if result["source"] == "fit":
        fit = Table(title=f"Fit error over {metrics['migrations']:,} migrations")
        fit.add_column("target")
        fit.add_column("MAPE %", justify="right")
        fit.add_column("R²", justify="right")
        fit.add_column("MAPE % (fleet coefficient only)", justify="right")
        for target in ("total_s", "downtime_ms"):
            fit.add_row(
                target,
                _fmt(metrics[target]["mape_pct"], digits=2),
                _fmt(metrics[target]["r2"], digits=3),
                _fmt(metrics["fleet_only"][target]["mape_pct"], digits=2),
            )
        console.print(fit)
        console.print(f"VMs with their own coefficient: {result['vms_with_own_coeff']:,}")
    else:
        console.print(metrics.get("note", "no history"))
    use = result["out"] or job["id"]
    console.print(f"use it: zhuge plan-migrations ... --calibration {use}")


def register(app: typer.Typer) -> None:
    app.command("plan-migrations", help=PLAN_HELP)(plan_migrations_command)
    app.command("calibrate-migrations", help=CALIBRATE_HELP)(calibrate_migrations_command)
