"""``zhuge forecast``, ``backtest``, ``prepare``, ``train`` and ``demo-data fleet``.

Each command checks its inputs here first (the job kind's own checks on the first rows of the
input), so a typo fails in a second with one line and nothing is written; then it runs the
``forecast`` / ``backtest`` / ``prepare`` / ``train`` job on the server at ZHUGE_URL, or on an
embedded platform when none answers, with a progress bar. The kinds' module loads pandas,
LightGBM and statsforecast, so it is imported only when a command runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from zhuge.cli.common import JsonOpt, console, print_json, user_errors
from zhuge.cli.run import is_local, local_path, read_with_sep, run_and_report
from zhuge.errors import InvalidParams

BASELINE_NAMES = ("last_value", "seasonal_naive", "window_median", "seasonal_median")
NOTES_SHOWN = 5
FLEET_DATA = {"input": "--input", "vms": "--vms"}  # parameter -> the option that names data

DATA_FORMAT = """\b
Input: long format, one row per sample: series_id, timestamp, value (CPU %)
  [+ host_id, cluster_id], CSV or Parquet: a file, dataset://NAME or connection://NAME/KEY,
  or --sql QUERY --connection NAME (zhuge connections ls). Rename columns with --columns
  series_id=vm,value=cpu. A CSV's separator (, ; tab |) and decimal comma are detected
  (--sep ';' to say).
  Timestamps: ISO text or epoch s/ms/us/ns (--timestamp-unit; auto detects and says).
  Rows should be grouped by series_id (any order works, with one extra pass).
"""

FORECAST_HELP = f"""Forecast the load of every VM (or host, or cluster) of a fleet.

The telemetry is cleaned (off-grid timestamps snapped, duplicates merged, values clipped to \
0-100, short gaps interpolated; every series' report is kept), aggregated to --freq, a model \
is trained on a sample of series (--model auto backtests the global LightGBM, the baselines \
and, on small fleets, AutoETS, and keeps the best) and every series is forecast --horizon \
ahead, in chunks spread over the cluster. The model is saved with the job: reuse it on new \
data with --model-from JOB_ID.

\b
Examples:
  zhuge demo-data fleet --vms 200 --days 14 --out demo/
  zhuge forecast --input demo/telemetry.parquet --freq 1h --horizon 24h \\
      --quantiles 0.1,0.9 --out forecast.parquet
  zhuge forecast --input new.parquet --model-from 12 --out next.parquet
  zhuge forecast --input demo/telemetry.parquet --vms demo/vms.parquet --level host \\
      --freq 1h --horizon 24h --out hosts.parquet

{DATA_FORMAT}
Output (Parquet): series_id, timestamp, yhat [, yhat_q10, yhat_q90 ...] [, bucket], model.
"""

BACKTEST_HELP = f"""Score forecast models over rolling origins, always next to the baselines.

The last --windows horizons of each series are held out in turn; every model is trained on \
what came before each origin and scored on the horizon after it: MASE (vs the daily \
seasonal naive in-sample), sMAPE, MAE and the coverage of the --quantiles interval. The \
baselines (last value, seasonal naive, window median, seasonal median) are always scored.

\b
Example:
  zhuge backtest --input demo/telemetry.parquet --freq 1h --horizon 24h --windows 3
  zhuge backtest --input fleet.parquet --model auto,gbm,autoets --json
  zhuge backtest --input fleet.parquet --model-from fleet-cpu@champion --windows 5

With --model-from (a job id, or a registered NAME@ALIAS / NAME@VERSION resolved when the \
job starts) the saved model is scored frozen, not refitted, beside the baselines (and the \
--model models, if given), on its own grid, horizon, statistic, level and target.

{DATA_FORMAT}"""

PREPARE_HELP = f"""Clean fleet telemetry onto the forecast grid and report per series what was done.

\b
Rules, in order: rows without a value dropped; timestamps snapped to the sample grid;
exact duplicate rows dropped; values clipped to [0, 100]; rows sharing a slot averaged;
gaps of up to 3 samples interpolated, longer ones left empty; flags: flat, too short
(< 2 days: forecast by a baseline), starts late, stops early, level shift. Then each
series is aggregated to --freq with --agg (mean, max or p95); a last slot less than half
full is dropped.

\b
Example:
  zhuge prepare --input nab.csv --columns series_id=host --freq 1h --out prepared.parquet

{DATA_FORMAT}"""

TRAIN_HELP = """Train a fleet forecaster and save it as an artifact of the job, without forecasting.

\b
Example:
  zhuge train --input demo/telemetry.parquet --freq 1h --horizon 24h --quantiles 0.1,0.9
  zhuge forecast --input demo/telemetry.parquet --model-from JOB_ID --out forecast.parquet
"""

DEMO_HELP = """Write a realistic synthetic fleet: DIR/telemetry.parquet and DIR/vms.parquet.

Daily and weekly cycles, noise, bursts above 100 %, idle and flat VMs, level shifts, gaps, \
duplicates, off-grid timestamps, VMs created late or stopped early; the VM table has \
vm_id, host_id, cluster_id, memory_gb, vcpus. Deterministic by --seed.

\b
Example:
  zhuge demo-data fleet --vms 1000 --days 14 --freq 5min --out demo/
"""

# -- options shared by the commands ---------------------------------------------------------

InputOpt = Annotated[
    str | None,
    typer.Option("--input", help="Telemetry file or folder: CSV or Parquet, path or URL."),
]
SqlOpt = Annotated[str | None, typer.Option("--sql", help="SQL query giving the telemetry.")]
ConnectionOpt = Annotated[
    str | None,
    typer.Option("--connection", help="The SQL connection --sql runs on (zhuge connections ls)."),
]
ColumnsOpt = Annotated[
    str | None,
    typer.Option("--columns", help="Column names in the input: series_id=vm,timestamp=ts,..."),
]
UnitOpt = Annotated[str, typer.Option("--timestamp-unit", help="auto, iso, s, ms, us or ns.")]
SepOpt = Annotated[
    str | None,
    typer.Option(
        "--sep", help="The CSV's separator, e.g. ';' (default: detected, as is a decimal comma)."
    ),
]
VmsOpt = Annotated[
    Path | None,
    typer.Option("--vms", help="VM table (vm_id, host_id, cluster_id, vcpus) for --level."),
]
AggOpt = Annotated[str, typer.Option("--agg", help="Statistic per slot: mean, max or p95.")]
LevelOpt = Annotated[str, typer.Option("--level", help="vm, host or cluster.")]
# None: the job kind's default (CHUNK_SERIES in zhuge.jobs.forecast), kept in one place.
ChunkOpt = Annotated[
    int | None,
    typer.Option(
        "--chunk-series", help="Series per chunk of work (memory per worker; default 1,000)."
    ),
]
HorizonOpt = Annotated[str, typer.Option("--horizon", help="How far ahead: 24h, 90min, 7d.")]
ModelOpt = Annotated[
    str,
    typer.Option(
        "--model",
        help="auto, gbm, seasonal_naive, last_value, window_median, seasonal_median, "
        "autoets, autoarima, mstl or lstm (needs zhuge\\[torch]).",
    ),
]
TargetOpt = Annotated[
    str, typer.Option("--target", help="mean, or bucket: also predict the load band.")
]
BucketsOpt = Annotated[str, typer.Option("--buckets", help="Band edges for --target bucket.")]
SelectionOpt = Annotated[
    str, typer.Option("--selection", help="auto: global (one model) or per_series.")
]
DecisionOpt = Annotated[
    str | None,
    typer.Option(
        "--decision",
        help="migration: also score each model by the migration plans its forecasts induce "
        "(realised load in the chosen windows, captured share; needs --vms with memory_gb).",
    ),
]
WindowOpt = Annotated[
    str, typer.Option("--window", help="With --decision or --select-by decision: window length.")
]
PerHostOpt = Annotated[
    int, typer.Option("--max-per-host", help="With --decision: migrations leaving a host at once.")
]
PerClusterOpt = Annotated[
    int,
    typer.Option(
        "--max-per-cluster", help="With --decision: migrations in a cluster (0: no limit)."
    ),
]
BandwidthOpt = Annotated[
    float, typer.Option("--bandwidth-gbps", help="With --decision: shared Gbit/s (0: no limit).")
]
BlackoutOpt = Annotated[
    list[str] | None, typer.Option("--blackout", help="With --decision: daily no-migration range.")
]


SelectByOpt = Annotated[
    str,
    typer.Option(
        "--select-by",
        help="How auto chooses: mase (point error), or decision (the model whose migration "
        "plans capture most under --window/--max-per-host/...; needs --vms with memory_gb).",
    ),
]


def _decision(
    decision: str | None,
    select_by: str,
    window: str,
    max_per_host: int,
    max_per_cluster: int,
    bandwidth_gbps: float,
    blackout: list[str] | None,
) -> dict[str, Any]:
    """The plan request ``--decision migration`` / ``--select-by decision`` judge forecasts by."""
    if decision is None and select_by != "decision":
        return {"select_by": select_by}
    return {
        "decision": decision,
        "select_by": select_by,
        "window": window,
        "max_per_host": max_per_host,
        "max_per_cluster": max_per_cluster,  # 0: no limit, as the job reads it
        "bandwidth_gbps": bandwidth_gbps,
        "blackouts": blackout or [],
    }


TrainSeriesOpt = Annotated[
    int, typer.Option("--train-series", help="Train on at most this many series.")
]


def _floats(text: str | None, what: str) -> list[float] | None:
    if text is None:
        return None
    try:
        return [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise InvalidParams(f"{what} must be numbers separated by commas, not {text!r}") from None


def _source(
    input_: str | None,
    sql: str | None,
    connection: str | None,
    columns: str | None,
    unit: str,
    sep: str | None = None,
) -> dict[str, Any]:
    return {
        "input": local_path(input_),
        "sql": sql,
        "connection": connection,
        "columns": columns,
        "timestamp_unit": unit,
        "sep": sep,  # read here, never sent (cli.run.read_with_sep)
    }


def _model(
    freq: str,
    horizon: str,
    model: str,
    level: str | None,
    agg: str | None,
    quantiles: str | None,
    target: str | None,
    buckets: str | None,
    selection: str,
    vms: Path | None,
) -> dict[str, Any]:
    """The options that say what to model, as forecast, train and backtest share them."""
    return {
        "freq": freq,
        "horizon": horizon,
        "model": model,
        "level": level,
        "agg": agg,
        "quantiles": _floats(quantiles, "--quantiles"),
        "target": target,
        "buckets": _floats(buckets, "--buckets"),
        "selection": selection,
        "vms": local_path(vms),
    }


def _run(
    kind: str,
    options: dict[str, Any],
    *,
    title: str,
    json_output: bool,
    out: Path | None = None,
) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """Check the options, then ``run_and_report`` (``out``: where to download the output)."""
    with user_errors(json_output):
        params = checked_params(kind, read_with_sep(options))
        return run_and_report(
            kind, params, title=title, json_output=json_output, data=FLEET_DATA, out=out
        )


def checked_params(kind: str, options: dict[str, Any]) -> dict[str, Any]:
    """The job's parameters, validated by its model and checked on the input's first rows
    (when they are local files: only the server reads datasets and connections)."""
    from zhuge.jobs import forecast as jobs
    from zhuge.jobs.kinds import get_kind

    params = get_kind(kind).normalise({k: v for k, v in options.items() if v is not None})
    model = {
        "prepare": jobs.PrepareParams,
        "train": jobs.TrainParams,
        "forecast": jobs.ForecastParams,
        "backtest": jobs.BacktestParams,
    }[kind]
    if all(is_local(params.get(name)) for name in FLEET_DATA):
        jobs.check_request(model.model_validate(params))
    return params


# -- commands ---------------------------------------------------------------------------------


def forecast_command(
    input_: InputOpt = None,
    freq: Annotated[
        str | None, typer.Option("--freq", help="5min, 30min or 1h (default 1h, or the model's).")
    ] = None,
    horizon: Annotated[
        str | None, typer.Option("--horizon", help="How far ahead: 24h, 90min (default 24h).")
    ] = None,
    model: ModelOpt = "auto",
    level: Annotated[str | None, typer.Option("--level", help="vm, host or cluster.")] = None,
    quantiles: Annotated[
        str | None, typer.Option("--quantiles", help="Interval columns, e.g. 0.1,0.9.")
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option("--out", help="Download the forecast to this file (Parquet), replaced whole."),
    ] = None,
    model_from: Annotated[
        str | None,
        typer.Option(
            "--model-from",
            help="Reuse a model: a job id, or a registered NAME@ALIAS / NAME@VERSION "
            "(zhuge models ls), resolved when the job starts.",
        ),
    ] = None,
    plot: Annotated[
        Path | None,
        typer.Option(
            "--plot",
            help="Also draw the first series' history, forecast and interval to this PNG "
            "(zhuge plot forecast JOB --series S for another; needs zhuge\\[plot]).",
        ),
    ] = None,
    agg: Annotated[str | None, typer.Option("--agg", help="mean, max or p95.")] = None,
    target: Annotated[str | None, typer.Option("--target", help="mean or bucket.")] = None,
    buckets: Annotated[
        str | None, typer.Option("--buckets", help="Band edges, e.g. 0,25,50,75,100.")
    ] = None,
    selection: SelectionOpt = "global",
    vms: VmsOpt = None,
    sql: SqlOpt = None,
    connection: ConnectionOpt = None,
    columns: ColumnsOpt = None,
    sep: SepOpt = None,
    timestamp_unit: UnitOpt = "auto",
    train_series: TrainSeriesOpt = 2000,
    chunk_series: ChunkOpt = None,
    select_by: SelectByOpt = "mase",
    window: WindowOpt = "30min",
    max_per_host: PerHostOpt = 1,
    max_per_cluster: PerClusterOpt = 8,
    bandwidth_gbps: BandwidthOpt = 100.0,
    blackout: BlackoutOpt = None,
    json_output: JsonOpt = False,
) -> None:
    options = {
        **_source(input_, sql, connection, columns, timestamp_unit, sep),
        **_model(freq, horizon, model, level, agg, quantiles, target, buckets, selection, vms),
        "model_from": int(model_from) if model_from and model_from.isdigit() else model_from,
        "train_series": train_series,
        "chunk_series": chunk_series,
        **_decision(
            None, select_by, window, max_per_host, max_per_cluster, bandwidth_gbps, blackout
        ),
    }
    from zhuge.cli.plot import draw_forecast_file, forecast_download

    with user_errors(json_output), forecast_download(out, plot) as download:
        done = _run("forecast", options, title="forecasting", json_output=json_output, out=download)
        drawn = plot and draw_forecast_file(
            download, plot, telemetry=input_, columns=columns, timestamp_unit=timestamp_unit
        )
    if done:
        job, result = done
        _print_forecast({**result, "out": result["out"] if out else None}, job)
        if drawn:
            console.print(f"plot: {drawn}")


def backtest_command(
    input_: InputOpt = None,
    freq: Annotated[str, typer.Option("--freq", help="5min, 30min or 1h.")] = "1h",
    horizon: HorizonOpt = "24h",
    windows: Annotated[int, typer.Option("--windows", help="Rolling origins scored.")] = 3,
    model: Annotated[
        str | None,
        typer.Option(
            "--model",
            help="Models to score, comma-separated (baselines always; default auto, none "
            "with --model-from).",
        ),
    ] = None,
    model_from: Annotated[
        str | None,
        typer.Option(
            "--model-from",
            help="Also score a saved model, frozen: a job id, or a registered NAME@ALIAS / "
            "NAME@VERSION (zhuge models ls), resolved when the job starts.",
        ),
    ] = None,
    quantiles: Annotated[
        str, typer.Option("--quantiles", help="Interval whose coverage is reported.")
    ] = "0.1,0.9",
    level: LevelOpt = "vm",
    agg: AggOpt = "mean",
    target: TargetOpt = "mean",
    buckets: BucketsOpt = "0,25,50,75,100",
    selection: SelectionOpt = "global",
    vms: VmsOpt = None,
    sql: SqlOpt = None,
    connection: ConnectionOpt = None,
    columns: ColumnsOpt = None,
    sep: SepOpt = None,
    timestamp_unit: UnitOpt = "auto",
    chunk_series: ChunkOpt = None,
    decision: DecisionOpt = None,
    select_by: SelectByOpt = "mase",
    window: WindowOpt = "30min",
    max_per_host: PerHostOpt = 1,
    max_per_cluster: PerClusterOpt = 8,
    bandwidth_gbps: BandwidthOpt = 100.0,
    blackout: BlackoutOpt = None,
    json_output: JsonOpt = False,
) -> None:
    options = {
        **_source(input_, sql, connection, columns, timestamp_unit, sep),
        **_model(freq, horizon, model, level, agg, quantiles, target, buckets, selection, vms),
        "windows": windows,
        "chunk_series": chunk_series,
        **_decision(
            decision, select_by, window, max_per_host, max_per_cluster, bandwidth_gbps, blackout
        ),
    }
    given = options.pop("model") or ("" if model_from else "auto")
    options["models"] = [m.strip() for m in given.split(",") if m.strip()]
    options["model_from"] = int(model_from) if model_from and model_from.isdigit() else model_from
    done = _run("backtest", options, title="backtesting", json_output=json_output)
    if done:
        job, result = done
        _print_backtest(result, job)


def prepare_command(
    input_: InputOpt = None,
    freq: Annotated[str, typer.Option("--freq", help="5min, 30min or 1h.")] = "1h",
    agg: AggOpt = "mean",
    level: LevelOpt = "vm",
    out: Annotated[
        Path | None,
        typer.Option(
            "--out", help="Download the prepared series to this file (Parquet), replaced whole."
        ),
    ] = None,
    vms: VmsOpt = None,
    sql: SqlOpt = None,
    connection: ConnectionOpt = None,
    columns: ColumnsOpt = None,
    sep: SepOpt = None,
    timestamp_unit: UnitOpt = "auto",
    sample_freq: Annotated[
        str | None,
        typer.Option("--sample-freq", help="Grid of the raw samples (default: detected)."),
    ] = None,
    chunk_series: ChunkOpt = None,
    json_output: JsonOpt = False,
) -> None:
    options = {
        **_source(input_, sql, connection, columns, timestamp_unit, sep),
        "freq": freq,
        "agg": agg,
        "level": level,
        "vms": local_path(vms),
        "sample_freq": sample_freq,
        "chunk_series": chunk_series,
    }
    done = _run("prepare", options, title="preparing", json_output=json_output, out=out)
    if not done:
        return
    _, result = done
    _print_prepare(result)
    console.print(f"prepared: {result['out'] or result['artifacts']['prepared']}")
    console.print(f"report (one row per series): {result['artifacts']['report']}")


def train_command(
    input_: InputOpt = None,
    freq: Annotated[str, typer.Option("--freq", help="5min, 30min or 1h.")] = "1h",
    horizon: HorizonOpt = "24h",
    model: ModelOpt = "auto",
    level: LevelOpt = "vm",
    quantiles: Annotated[
        str | None, typer.Option("--quantiles", help="Interval levels, e.g. 0.1,0.9.")
    ] = None,
    agg: AggOpt = "mean",
    target: TargetOpt = "mean",
    buckets: BucketsOpt = "0,25,50,75,100",
    selection: SelectionOpt = "global",
    vms: VmsOpt = None,
    sql: SqlOpt = None,
    connection: ConnectionOpt = None,
    columns: ColumnsOpt = None,
    sep: SepOpt = None,
    timestamp_unit: UnitOpt = "auto",
    train_series: TrainSeriesOpt = 2000,
    chunk_series: ChunkOpt = None,
    select_by: SelectByOpt = "mase",
    window: WindowOpt = "30min",
    max_per_host: PerHostOpt = 1,
    max_per_cluster: PerClusterOpt = 8,
    bandwidth_gbps: BandwidthOpt = 100.0,
    blackout: BlackoutOpt = None,
    register: Annotated[
        str | None,
        typer.Option(
            "--register",
            help="Add the model as a new version of this registered model, behind the "
            "release gate (zhuge models show NAME).",
        ),
    ] = None,
    json_output: JsonOpt = False,
) -> None:
    options = {
        **_source(input_, sql, connection, columns, timestamp_unit, sep),
        **_model(freq, horizon, model, level, agg, quantiles, target, buckets, selection, vms),
        "train_series": train_series,
        "chunk_series": chunk_series,
        **_decision(
            None, select_by, window, max_per_host, max_per_cluster, bandwidth_gbps, blackout
        ),
    }
    if register is not None:
        from zhuge.cli.models import train_and_register

        train_and_register(options, register, json_output)
        return
    done = _run("train", options, title="training", json_output=json_output)
    if not done:
        return
    job, result = done
    _print_model(result["model"], result["trained_on_series"])
    console.print(f"model: {result['artifacts']['model']}")
    console.print(
        f"use it: zhuge forecast --input ... --model-from {job['id']} --out forecast.parquet"
    )


demo_app = typer.Typer(help="Generate demo data.", no_args_is_help=True)


@demo_app.command("fleet", help=DEMO_HELP)
def demo_fleet_command(
    out: Annotated[Path, typer.Option("--out", help="Folder to write the two files to.")],
    vms: Annotated[int, typer.Option("--vms", help="Number of VMs.")] = 100,
    days: Annotated[float, typer.Option("--days", help="Days of telemetry.")] = 14.0,
    freq: Annotated[str, typer.Option("--freq", help="Sample interval.")] = "5min",
    seed: Annotated[int, typer.Option("--seed", help="Random seed.")] = 0,
    start: Annotated[str, typer.Option("--start", help="First timestamp.")] = "2024-01-01",
    json_output: JsonOpt = False,
) -> None:
    with user_errors(json_output):
        from zhuge.data import write_fleet
        from zhuge.errors import DataError

        if vms < 1 or days <= 0:
            raise DataError(f"--vms must be at least 1 and --days positive (got {vms}, {days})")
        target = local_path(out) or "."
        parent = Path(target).parent
        if "://" not in target and not parent.exists():
            raise DataError(f"cannot write {target}: folder {parent} does not exist")
        files = write_fleet(target, vms, days, freq, seed, start=start)
    summary = {
        "telemetry": files.telemetry,
        "vms": files.vms,
        "rows": files.rows,
        "series": files.series,
        "days": days,
        "freq": freq,
        "seed": seed,
    }
    if json_output:
        print_json(summary)
        return
    console.print(
        f"wrote {files.rows:,} samples of {files.series:,} VMs ({days:g} days at {freq}) to "
        f"{files.telemetry}\nVM table (host, cluster, memory, vCPUs): {files.vms}"
    )
    console.print(
        f"next: zhuge forecast --input {files.telemetry} --freq 1h --horizon 24h "
        "--out forecast.parquet"
    )


# -- printing ---------------------------------------------------------------------------------


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def _label(name: str) -> str:
    return f"{name} [dim](baseline)[/]" if name in BASELINE_NAMES else f"[bold]{name}[/]"


def _print_model(model: dict[str, Any], trained_on: int | None) -> None:
    where = f" on {trained_on:,} series" if trained_on else ""
    console.print(
        f"[bold]model:[/] {model['chosen']} (asked: {model['requested']}, "
        f"{model['strategy']}{where})"
    )
    if model.get("reason"):
        console.print(f"[bold]why:[/] {model['reason']}")
    if model.get("scores"):
        metric = "1 - band accuracy" if model["metric"] == "bucket_error" else "MASE"
        table = Table(title=f"Selection backtest ({model['windows']} window(s), {metric})")
        table.add_column("model")
        table.add_column(metric, justify="right")
        for name, score in sorted(model["scores"].items(), key=lambda kv: kv[1]):
            mark = " ✓" if name == model["chosen"] else ""
            table.add_row(_label(name) + mark, _fmt(score))
        console.print(table)
    if model.get("bucket_accuracy") is not None:
        console.print(f"band accuracy in the selection backtest: {model['bucket_accuracy']:.1%}")
    for note in model.get("notes", []):
        console.print(f"[yellow]note:[/] {note}")


def _print_prepare(prep: dict[str, Any]) -> None:
    c = prep["cleaning"]
    table = Table(title="What cleaning did", show_header=False)
    table.add_column("", style="bold")
    table.add_column("", justify="right")
    rows = [
        ("series", c.get("series")),
        ("samples read", c.get("rows_in")),
        ("timestamps read as", prep["timestamp_unit"]),
        ("sample grid / forecast grid", f"{prep['sample_freq']} / {prep['freq']} ({prep['agg']})"),
        ("samples moved onto the grid", c.get("snapped")),
        ("duplicate rows dropped", c.get("rows_dropped_duplicates")),
        ("values clipped to [0, 100]", c.get("clipped")),
        ("rows merged into shared slots", c.get("duplicate_timestamps")),
        ("missing values dropped", c.get("missing_values")),
        (
            "gaps interpolated (steps)",
            f"{c.get('gaps_filled', 0):,} ({c.get('steps_filled', 0):,})",
        ),
        (
            "long gaps left empty (steps)",
            f"{c.get('long_gaps', 0):,} ({c.get('long_gap_steps', 0):,})",
        ),
        ("flat series", c.get("flat")),
        ("too short (baseline forecast)", c.get("too_short")),
        ("start late / stop early", f"{c.get('starts_late', 0)} / {c.get('stops_early', 0)}"),
        ("level shifts", c.get("level_shifts")),
    ]
    if prep["level"] != "vm":
        rows.append((f"{prep['level']}s forecast", prep["series"]))
    for name, value in rows:
        table.add_row(name, _fmt(value))
    console.print(table)
    for note in prep.get("notes_examples", [])[:NOTES_SHOWN]:
        console.print(f"  [dim]{note['series_id']}: {note['notes']}[/]")


def _print_forecast(result: dict[str, Any], job: dict[str, Any]) -> None:
    _print_prepare(result["prepare"])
    _print_model(result["model"], result["trained_on_series"])
    if job.get("model_version"):  # a registry reference, as it resolved when the job started
        console.print(
            f"model {job['model_version']} ({job['model_ref']} as the job started; "
            f"trained by job {result['model_from']})"
        )
    elif result["model_from"]:
        console.print(f"model reused from job {result['model_from']}")
    used = ", ".join(f"{name}: {n:,}" for name, n in result["models_used"].items())
    console.print(f"[bold]series per model:[/] {used}")
    console.print(
        f"[bold]forecast:[/] {result['series']:,} {result['level']} series x "
        f"{result['horizon_steps']} steps of {result['freq']} ({result['horizon']}), "
        f"{result['first_timestamp']} .. {result['last_timestamp']}; "
        f"columns {', '.join(result['columns'])}"
    )
    console.print(f"written: {result['out'] or result['artifacts']['forecast']}")
    console.print(f"[dim]reuse the model: zhuge forecast --input ... --model-from {job['id']}[/]")


def _coverage_title(job: dict[str, Any]) -> str:
    """``coverage q10-q90``: the share of actual values inside that interval."""
    quantiles = sorted((job.get("params") or {}).get("quantiles") or [])
    if len(quantiles) < 2:
        return "coverage"
    return f"coverage q{quantiles[0] * 100:g}-q{quantiles[-1] * 100:g}"


def _print_backtest(result: dict[str, Any], job: dict[str, Any]) -> None:
    overall = result["overall"]
    columns = [
        ("mase", "MASE"),
        ("mase_median", "MASE median"),
        ("smape", "sMAPE %"),
        ("mae", "MAE"),
        ("coverage", _coverage_title(job)),
        ("bucket_accuracy", "band accuracy"),
        ("cpu_ms_per_series_window", "CPU ms/series"),
    ]
    present = [(k, t) for k, t in columns if any(row.get(k) is not None for row in overall)]
    table = Table(
        title=f"Backtest: {result['series']:,} series, {result['windows']} rolling origin(s), "
        f"horizon {result['horizon']} at {result['freq']} (lower MASE is better)"
    )
    table.add_column("model")
    for _, title in present:
        table.add_column(title, justify="right")
    for row in overall:
        table.add_row(_label(row["model"]), *(_fmt(row.get(k)) for k, _ in present))
    console.print(table)
    if result.get("in_sample"):
        console.print(f"[yellow]{result['in_sample']}[/]")
    if result.get("auto_chose"):
        chose = ", ".join(f"{name} {n}x" for name, n in result["auto_chose"].items())
        console.print(f"[bold]auto chose[/] (per window and chunk): {chose}")
        for reason in result.get("auto_reasons", [])[:1]:
            console.print(f"[dim]  e.g. {reason}[/]")
    console.print(f"[dim]per-series scores: {result['artifacts']['per_series']}[/]")
    if result.get("decision"):
        _print_decision(result["decision"])


def _print_decision(decision: dict[str, Any]) -> None:
    limits = ", ".join(
        f"{k} {v}" for k, v in decision["constraints"].items() if v not in (None, [])
    )
    table = Table(
        title=f"Judged by the migration plans they induce: {decision['series']:,} VMs ({limits})"
        "; realised load in the chosen windows, lower is better"
    )
    for title in ("plan made from", "realised load", "downtime ms", "captured", "worst window"):
        table.add_column(title, justify="left" if title == "plan made from" else "right")
    for row in decision["overall"]:
        table.add_row(
            _label(row["plan"]),
            _fmt(row["realised_load"], 2),
            _fmt(row["downtime_ms"], 1),
            _pct(row["captured"]),
            _pct(row["captured_min"]),
        )
    console.print(table)
    console.print(
        "[dim]captured = (L_earliest - L_plan) / (L_earliest - L_perfect_forecast); "
        f"per window: {decision['artifact']}[/]"
    )


def _pct(value: Any) -> str:
    return "-" if value is None else f"{100 * value:.0f} %"


def register(app: typer.Typer) -> None:
    """Add this module's commands to ``app``."""
    app.command("forecast", help=FORECAST_HELP)(forecast_command)
    app.command("backtest", help=BACKTEST_HELP)(backtest_command)
    app.command("prepare", help=PREPARE_HELP)(prepare_command)
    app.command("train", help=TRAIN_HELP)(train_command)
    app.add_typer(demo_app, name="demo-data")
