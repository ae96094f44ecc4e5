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

PROGRESS_FROM_JOBS = 2_000  # shorter traces finish before a bar would be read

SIMULATE_HELP = """Replay a job trace on a virtual clock through zhuge's admission policy.

The trace is a CSV: submit_time (seconds from the trace's start), tenant, CPU, GPU (fractions \
allowed), memory_gb, duration_s, priority, and optional gang and timeout_s (default: twice \
duration_s). The queues file is what `zhuge queues apply` takes; the pools file declares a \
fixed set of workers. Per tenant: p50/p95 wait, share of (dominant-resource-normalised) \
resource-seconds against its weight's share, preemptions, jobs finished; then Jain's fairness \
index over share/weight, utilisation per resource and simulated jobs per second.

\b
Examples:
  zhuge simulate --trace examples/jobs.csv --queues examples/queues.yaml --pools examples/pools.yaml
  zhuge simulate --trace jobs.csv --queues queues.yaml --pools pools.yaml --json

\b
pools.yaml:
  pools:
    - {name: cpu, count: 4, resources: {CPU: 8, memory_gb: 32}}
    - {name: gpu, count: 1, resources: {CPU: 8, GPU: 1, memory_gb: 64}}
"""


@contextmanager
def _progress(show: bool) -> Iterator[Callable[[int, int], None] | None]:
    if not show:
        yield None
        return
    columns = (TextColumn("simulating"), BarColumn(), MofNCompleteColumn(), TextColumn("jobs"))
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


def simulate_command(
    trace: Annotated[Path, typer.Option("--trace", help="The job trace (CSV).")],
    queues: Annotated[Path, typer.Option("--queues", help="The queues file (YAML).")],
    pools: Annotated[Path, typer.Option("--pools", help="The workers (YAML).")],
    json_output: JsonOpt = False,
) -> None:
    from zhuge.jobs.simulate import load_pools, load_queues, load_trace, simulate

    with user_errors(json_output):
        jobs = load_trace(trace)
        config = load_queues(queues)
        workers = load_pools(pools)
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


def register(app: typer.Typer) -> None:
    app.command("simulate", help=SIMULATE_HELP)(simulate_command)
