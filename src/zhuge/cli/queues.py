"""zhuge queues apply / ls / status: the queues file (admins) and how the queues stand."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from zhuge.cli.common import (
    JsonOpt,
    TokenOpt,
    UrlOpt,
    client,
    console,
    print_json,
    user_errors,
    when,
)
from zhuge.errors import InvalidRequest

queues_app = typer.Typer(
    help="Tenants' quotas, weights and cohorts (a queues file, applied by an admin), and "
    "how the queues stand.",
    no_args_is_help=True,
)


def _amounts(amounts: dict[str, float] | None, none: str = "-") -> str:
    if not amounts:
        return none
    return ", ".join(f"{k}={v:g}" for k, v in sorted(amounts.items()))


def _duration(seconds: float) -> str:
    """``30s``, ``10m``, ``1h``, ``2d``: as a queues file writes it."""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds / size:g}{unit}"
    return f"{seconds:g}s"


def _percent(share: float) -> str:
    return f"{share * 100:.0f}%"


@queues_app.command("apply")
def apply(
    file: Annotated[
        Path,
        typer.Argument(
            help="The queues file (YAML): resources, cohorts, tenants, preemption, fair_share.",
            exists=True,
            dir_okay=False,
            readable=True,
        ),
    ],
    json_output: JsonOpt = False,
    url: UrlOpt = None,
    token: TokenOpt = None,
) -> None:
    """Make a queues file the configuration in force (admin). A file that is not valid is
    refused naming each bad field, and the configuration in force stays as it was.

    Example: zhuge queues apply queues.yaml
    """
    with user_errors(json_output):
        try:
            applied = client(url, token).apply_queues(file)
        except InvalidRequest as exc:
            errors = exc.details.get("errors") if isinstance(exc.details, dict) else None
            if json_output or not errors:
                raise
            raise InvalidRequest(
                f"{file}: {exc.message}",
                details=[{"loc": [e["field"]], "msg": e["message"]} for e in errors],
            ) from exc
    if json_output:
        print_json(applied)
        return
    config = applied["config"]
    console.print(
        f"queues applied from {file}: {len(config['tenants'])} tenant(s), "
        f"{len(config['cohorts'])} cohort(s), counting {', '.join(config['resources'])}"
    )


@queues_app.command("ls")
def ls(
    document: Annotated[
        bool, typer.Option("--document", help="Print the queues file as it was applied.")
    ] = False,
    json_output: JsonOpt = False,
    url: UrlOpt = None,
    token: TokenOpt = None,
) -> None:
    """The configuration in force (admin): each tenant's weight, cohort, nominal quota and
    borrowing and lending limits, and the policies. A tenant not listed has weight 1 and no
    nominal quota."""
    with user_errors(json_output):
        data = client(url, token).queues()
    if json_output:
        print_json(data)
        return
    if document:
        if data["document"] is None:
            console.print("no queues file applied: every tenant has weight 1, no nominal quota")
        else:
            console.print(data["document"], end="", markup=False, highlight=False)
        return
    config = data["config"]
    cohort_of = {t: name for name, c in config["cohorts"].items() for t in c["tenants"]}
    table = Table(title=f"queues (counting {', '.join(config['resources'])})")
    for col in ("tenant", "weight", "cohort", "nominal", "borrowing limit", "lending limit"):
        table.add_column(col, justify="right" if col == "weight" else "left")
    for name, q in sorted(config["tenants"].items()):
        table.add_row(
            name,
            f"{q['weight']:g}",
            cohort_of.get(name, "-"),
            _amounts(q["nominal"]),
            _amounts(q["borrowing_limit"], "none"),
            _amounts(q["lending_limit"], "all idle"),
        )
    console.print(table)
    p, fs = config["preemption"], config["fair_share"]
    every = config["aging"]["every"]
    console.print(
        f"preemption: reclaim within cohort {p['reclaim_within_cohort']}, within tenant "
        f"{p['within_tenant']}, grace {_duration(p['grace'])}\n"
        f"fair share half-life {_duration(fs['half_life'])}; priority "
        f"{f'+1 every {_duration(every)} waiting' if every else 'does not age'}; reservation "
        f"after {_duration(config['reservation_after'])}; placement {config['placement']}"
    )
    if data["document"] is None:
        console.print("[dim]no queues file applied: these are the defaults[/]")
    else:
        console.print(f"[dim]applied {when(data['applied_at'])} by {data['applied_by'] or '-'}[/]")


def _usage(row: dict[str, Any], resources: list[str]) -> str:
    """``CPU 12/8 (+4), GPU 0/1``: what it holds against its nominal, and what it borrows."""
    parts = []
    for r in resources:
        used, nominal = row["usage"].get(r, 0.0), row["nominal"].get(r, 0.0)
        if not used and not nominal:
            continue
        text = f"{r} {used:g}/{nominal:g}"
        if row["borrowed"].get(r):
            text += f" [yellow](+{row['borrowed'][r]:g})[/]"
        parts.append(text)
    return ", ".join(parts) or "-"


@queues_app.command("status")
def status(json_output: JsonOpt = False, url: UrlOpt = None, token: TokenOpt = None) -> None:
    """Per tenant: jobs running and queued, usage against nominal quota (+ what it borrows
    beyond it), and its fair share (dominant share of the cluster ÷ weight) against the
    share its weight entitles it to. A member sees its own tenant and the cluster's totals."""
    with user_errors(json_output):
        data = client(url, token).queue_status()
    if json_output:
        print_json(data)
        return
    resources = data["resources"]
    table = Table(title="queues")
    columns = ("tenant", "weight", "running", "queued", "usage/nominal (+borrowed)",
               "share", "entitled", "fair share")  # fmt: skip
    for col in columns:
        table.add_column(col, justify="left" if col in ("tenant", columns[4]) else "right")
    for row in data["tenants"]:
        table.add_row(
            row["tenant"] + (f" [dim]({row['cohort']})[/]" if row["cohort"] else ""),
            f"{row['weight']:g}",
            str(row["running"]),
            str(row["queued"]),
            _usage(row, resources),
            _percent(row["dominant_share"]),
            _percent(row["weight_share"]),
            f"{row['fair_share']:.2f}",
        )
    console.print(table)
    cluster = data["cluster"]
    held = ", ".join(
        f"{r} {cluster['usage'].get(r, 0.0):g}/{cluster['capacity'].get(r, 0.0):g}"
        for r in resources
        if cluster["capacity"].get(r) or cluster["usage"].get(r)
    )
    console.print(
        f"cluster: {cluster['workers']} worker(s), {held or 'no capacity'}; "
        f"{cluster['running']} running, {cluster['queued']} queued"
    )


@queues_app.command("demand")
def demand(json_output: JsonOpt = False, url: UrlOpt = None, token: TokenOpt = None) -> None:
    """What admission would start now if workers had room for it, by resource shape and gang
    size: the jobs that wait only for capacity, never those over their tenant's quota (admin).
    An autoscaler's input: each row is capacity that would be used at once."""
    with user_errors(json_output):
        rows = client(url, token).queue_demand()
    if json_output:
        print_json(rows)
        return
    if not rows:
        console.print("no demand: every queued job that quota admits has room, or none waits")
        return
    table = Table(title="demand")
    for col in ("resources per copy", "gang", "jobs"):
        table.add_column(col, justify="left" if col.startswith("resources") else "right")
    for row in rows:
        table.add_row(_amounts(row["resources"]), str(row["gang"]), str(row["count"]))
    console.print(table)
