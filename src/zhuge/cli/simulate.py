"""``zhuge simulate``: replay a job trace through the real admission policy on a virtual clock.

Everything runs here, on no server: ``zhuge.jobs.simulate`` calls ``admission.decide`` at each
event, so the table shows what the queues in the file would do with the load in the trace.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.table import Table

from zhuge.cli.common import JsonOpt, console, err_console, print_json, user_errors
from zhuge.errors import InvalidRequest

PROGRESS_FROM_JOBS = 2_000  # shorter traces finish before a bar would be read

SIMULATE_HELP = """Replay a job trace on a virtual clock through zhuge's admission policy.

The trace is a CSV: submit_time (seconds from the trace's start), tenant, CPU, GPU (fractions \
allowed), memory_gb, duration_s, priority, and optional gang and timeout_s (default: twice \
duration_s). The queues file is what `zhuge queues apply` takes; the pools file declares the \
workers: a fixed count per pool, or pools that scale (min, max, policy, prices: see \
docs/elastic.md). Per tenant: p50/p95 wait, share of (dominant-resource-normalised) \
resource-seconds against its weight's share, preemptions, jobs finished; then Jain's fairness \
index over share/weight, utilisation per resource and simulated jobs per second.

With --policy, every pool runs each policy in turn (rule, demand, predictive, fixed-peak, \
fixed-mean) and one row per policy gives the cost, idle cost, utilisation, scale events and \
each tenant's p50/p95 wait. `zhuge simulate make-trace` makes a trace from a utilisation series.

\b
Examples:
  zhuge simulate --trace examples/jobs.csv --queues examples/queues.yaml --pools examples/pools.yaml
  zhuge simulate --trace jobs.csv --queues queues.yaml --pools pools.yaml --json
  zhuge simulate --trace jobs.csv --queues queues.yaml --pools elastic.yaml \\
      --policy rule,demand,predictive,fixed-peak,fixed-mean

\b
pools.yaml (fixed):
  pools:
    - {name: cpu, count: 4, resources: {CPU: 8, memory_gb: 32}}
    - {name: gpu, count: 1, resources: {CPU: 8, GPU: 1, memory_gb: 64}}
\b
pools.yaml (scaling):
  pools:
    - {name: cpu, resources: {CPU: 8, memory_gb: 32}, min: 0, max: 20, startup_s: 60,
       idle_timeout: 5m, price_per_hour: {on_demand: 0.4}, policy: demand}
"""

MAKE_TRACE_HELP = """Make a job trace (the simulator's CSV) from a utilisation series.

Row t of the column is the --step seconds from t x step; jobs arrive in it as a Poisson \
count with mean --jobs-per-step x value / mean(column), at uniform times, each with a \
tenant (the first listed twice as likely as the second...), CPU 1, 2 or 4, 2 GB memory per \
CPU and a log-normal duration of mean --duration. The same arguments and --seed give the \
same trace.

\b
Examples:
  zhuge simulate make-trace --from-utilisation alibaba2018.csv --column cpu_util_percent \\
      --seed 1 --rows 576 --jobs-per-step 2 --out bursty.csv
  zhuge simulate make-trace --from-utilisation azure_v2.csv --column cpu_usage --seed 7
"""


@contextmanager
def _progress(show: bool, label: str = "simulating") -> Iterator[Callable[[int, int], None] | None]:
    if not show:
        yield None
        return
    columns = (TextColumn(label), BarColumn(), MofNCompleteColumn(), TextColumn("jobs"))
    with Progress(*columns, console=err_console, transient=True) as bar:
        task = bar.add_task("simulate", total=None)

        def update(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        yield update


def _seconds(value: float | None) -> str:
    if value is None:
        return "-"
    if value < 120:
        return f"{value:.0f} s"
    if value < 7200:
        return f"{value / 60:.1f} min"
    return f"{value / 3600:.1f} h"


simulate_app = typer.Typer(help=SIMULATE_HELP, invoke_without_command=True)


@simulate_app.callback(invoke_without_command=True)
def simulate_command(
    ctx: typer.Context,
    trace: Annotated[Path | None, typer.Option("--trace", help="The job trace (CSV).")] = None,
    queues: Annotated[Path | None, typer.Option("--queues", help="The queues file (YAML).")] = None,
    pools: Annotated[Path | None, typer.Option("--pools", help="The workers (YAML).")] = None,
    policy: Annotated[
        str | None,
        typer.Option(
            "--policy",
            help="Comma-separated autoscaling policies to compare: rule, demand, "
            "predictive, fixed-peak, fixed-mean.",
        ),
    ] = None,
    json_output: JsonOpt = False,
) -> None:
    if ctx.invoked_subcommand is not None:
        return
    from zhuge.jobs.elastic.pools import POLICY_NAMES
    from zhuge.jobs.simulate import (
        fixed_workers,
        load_pools_config,
        load_queues,
        load_trace,
        simulate,
    )

    with user_errors(json_output):
        missing = [
            f"--{name}"
            for name, value in (("trace", trace), ("queues", queues), ("pools", pools))
            if value is None
        ]
        if missing:
            raise InvalidRequest(
                f"zhuge simulate needs {', '.join(missing)} (see zhuge simulate --help)"
            )
        assert trace is not None and queues is not None and pools is not None
        names: list[str] = []
        if policy is not None:
            names = [p.strip() for p in policy.split(",") if p.strip()]
            unknown = [p for p in names if p not in POLICY_NAMES]
            if unknown or not names:
                raise InvalidRequest(
                    f"--policy: unknown policy {', '.join(map(repr, unknown)) or repr('')}; "
                    f"one or more of {', '.join(POLICY_NAMES)}"
                )
            names = list(dict.fromkeys(names))
        jobs = load_trace(trace)
        config = load_queues(queues)
        pool_config = load_pools_config(pools)
        workers = fixed_workers(pool_config)
        if workers is None or names:
            _policies(jobs, config, pool_config, names, json_output)
            return
        show = not json_output and len(jobs) >= PROGRESS_FROM_JOBS and err_console.is_terminal
        with _progress(show) as progress:
            result = simulate(jobs, workers, config, progress=progress)
    if json_output:
        print_json(result.to_dict())
        return
    table = Table(
        title=f"{len(result.jobs)} jobs on {len(workers)} workers",
        box=None,
        pad_edge=False,
    )
    table.add_column("tenant", no_wrap=True)
    for name in ("weight", "jobs", "done", "wait p50", "wait p95", "share", "fair", "preempt"):
        table.add_column(name, justify="right", no_wrap=True)
    contended = all(t.contended_share is not None for t in result.tenants)
    for t in result.tenants:
        share = t.contended_share if contended and t.contended_share is not None else t.share
        table.add_row(
            t.tenant,
            f"{t.weight:g}",
            str(t.jobs),
            str(t.finished) + (f" (+{t.timed_out} timed out)" if t.timed_out else ""),
            _seconds(t.wait_p50_s),
            _seconds(t.wait_p95_s),
            f"{share:.1%}",
            f"{t.weight_share:.1%}",
            str(t.preemptions),
        )
    console.print(table)
    console.print("share: of all resource-seconds, by dominant resource; fair: weight's share")
    basis = "while every tenant had work queued" if contended else "over the whole run"
    console.print(f"Jain's fairness index (share/weight, {basis}): {result.jain_index:.3f}")
    console.print(
        "utilisation: "
        + ", ".join(f"{r} {u:.0%}" for r, u in result.utilisation.items())
        + f" over {_seconds(result.makespan_s)}"
    )
    never = [j for j in result.jobs.values() if j.first_start is None]
    for j in never[:10]:
        reason = j.reasons[-1] if j.reasons else "never considered"
        console.print(f"[yellow]job {j.job_id} ({j.tenant}) never started:[/] {reason}")
    if len(never) > 10:
        console.print(f"[yellow]… and {len(never) - 10} more jobs never started[/]")
    console.print(
        f"{result.decisions} admission decisions; "
        f"{result.jobs_per_second:,.0f} simulated jobs per second of wall time"
    )


def _policies(jobs, config, pools, names: list[str], json_output: bool) -> None:
    """Each policy over every pool (none named: each pool's own), one row each."""
    from zhuge.jobs.elastic.simulation import simulate_policy

    runs: list[str | None] = list(names) or [None]
    show = (
        not json_output and len(jobs) * len(runs) >= PROGRESS_FROM_JOBS and err_console.is_terminal
    )
    results = {}
    for name in runs:
        with _progress(show, f"simulating {name or 'the pools'}") as progress:
            result = simulate_policy(jobs, pools, config, name, progress=progress)
        results[result.policy] = result
    if json_output:
        print_json({"policies": {name: r.to_dict() for name, r in results.items()}})
        return
    tenants = sorted({t for r in results.values() for t in r.wait_p95_s})
    workers = sum(p.max for p in pools.pools)
    table = Table(
        title=f"{len(jobs)} jobs on {len(pools.pools)} pool(s) of up to {workers} workers",
        box=None,
        pad_edge=False,
    )
    table.add_column("policy", no_wrap=True)
    for column in ("cost", "idle cost", "util", "scale events", "workers mean/peak"):
        table.add_column(column, justify="right", no_wrap=True)
    table.add_column("worst p95", justify="right", no_wrap=True)
    for t in tenants:
        table.add_column(f"{t} p50/p95", justify="right", no_wrap=True)
    for name, r in results.items():
        table.add_row(
            name,
            f"{r.cost:,.2f}",
            f"{r.idle_cost:,.2f}",
            f"{r.utilisation:.0%}",
            str(r.scale_events),
            f"{r.workers_mean:.1f}/{r.workers_peak}",
            _seconds(r.worst_wait_p95_s),
            *(f"{_seconds(r.wait_p50_s.get(t))}/{_seconds(r.wait_p95_s.get(t))}" for t in tenants),
        )
    console.print(table)
    console.print(
        "cost: the workers' bill (their pools' prices and billing granularity), from the first "
        "submission to the last job's end; idle cost: the part no job used; util: worker-seconds "
        "jobs held over worker-seconds paid"
    )
    for name, r in results.items():
        if r.never_started:
            console.print(f"[yellow]{name}: {r.never_started} job(s) never started[/]")


@simulate_app.command("make-trace", help=MAKE_TRACE_HELP)
def make_trace_command(
    from_utilisation: Annotated[
        Path, typer.Option("--from-utilisation", help="A CSV with a utilisation column.")
    ],
    column: Annotated[str, typer.Option("--column", help="The column to follow.")],
    seed: Annotated[int, typer.Option("--seed", help="Random seed: same seed, same trace.")] = 0,
    out: Annotated[
        Path | None, typer.Option("--out", help="Write the trace here (default: print it).")
    ] = None,
    step: Annotated[
        float, typer.Option("--step", help="Seconds each row of the series stands for.")
    ] = 300.0,
    jobs_per_step: Annotated[
        float, typer.Option("--jobs-per-step", help="Mean jobs arriving per row.")
    ] = 10.0,
    duration: Annotated[float, typer.Option("--duration", help="Mean job duration (s).")] = 600.0,
    tenants: Annotated[
        str, typer.Option("--tenants", help="Comma-separated tenant names.")
    ] = "a,b,c",
    skip: Annotated[int, typer.Option("--skip", min=0, help="Rows to skip first.")] = 0,
    rows: Annotated[
        int | None, typer.Option("--rows", min=2, help="Rows to use (default: all).")
    ] = None,
    json_output: JsonOpt = False,
) -> None:
    from zhuge.jobs.simulate import read_utilisation, trace_from_utilisation, write_trace

    with user_errors(json_output):
        values = read_utilisation(from_utilisation, column)[skip:]
        if rows is not None:
            values = values[:rows]
        if len(values) < 2:
            raise InvalidRequest(f"--skip {skip} leaves fewer than 2 rows of {column!r}")
        names = [t.strip() for t in tenants.split(",") if t.strip()]
        jobs = trace_from_utilisation(
            values,
            seed=seed,
            step_s=step,
            jobs_per_step=jobs_per_step,
            duration_s=duration,
            tenants=names,
        )
        text = write_trace(jobs)
        if out is not None:
            try:
                out.write_text(text, encoding="utf-8")
            except OSError as exc:
                raise InvalidRequest(f"cannot write {out}: {exc}") from exc
    summary = {
        "jobs": len(jobs),
        "rows": len(values),
        "span_s": len(values) * step,
        "tenants": names,
        "out": None if out is None else str(out),
    }
    if json_output:
        print_json(summary if out is not None else {**summary, "trace": text})
    elif out is None:
        typer.echo(text, nl=False)
    else:
        console.print(
            f"wrote {len(jobs)} jobs over {len(values)} rows ({_seconds(len(values) * step)}) "
            f"to {out}"
        )


def register(app: typer.Typer) -> None:
    app.add_typer(simulate_app, name="simulate")
