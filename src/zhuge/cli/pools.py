"""zhuge pools apply / ls and zhuge autoscaler log: worker pools (admins) and the autoscaler."""

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

pools_app = typer.Typer(
    help="Worker pools that grow and shrink with the queue's demand (admin): apply a pools "
    "file, list the pools in force. See docs/elastic.md.",
    no_args_is_help=True,
)
autoscaler_app = typer.Typer(
    help="The autoscaler: one decision per pool per interval (admin).", no_args_is_help=True
)


def _amounts(amounts: dict[str, float] | None) -> str:
    return ", ".join(f"{k}={v:g}" for k, v in sorted((amounts or {}).items())) or "-"


def _seconds(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds / size:g}{unit}"
    return f"{seconds:g}s"


@pools_app.command("apply")
def apply(
    file: Annotated[
        Path,
        typer.Argument(
            help="The pools file (YAML): a list of pools, each with resources, min, max, "
            "policy, prices and a provider configured on the server.",
            exists=True,
            dir_okay=False,
            readable=True,
        ),
    ],
    json_output: JsonOpt = False,
    url: UrlOpt = None,
    token: TokenOpt = None,
) -> None:
    """Make a pools file the pools in force (admin). A pool may only name a provider the
    server configures (in its own ZHUGE_POOLS_FILE); a file naming another, or one that is
    not valid, is refused in words and nothing changes.

    Example (pools.yaml):

        pools:
          - {name: cpu, resources: {CPU: 4, memory_gb: 16}, min: 0, max: 10,
             idle_timeout: 5m, policy: demand, provider: local,
             price_per_hour: {on_demand: 0.20, spot: 0.06}}

    then: zhuge pools apply pools.yaml
    """
    with user_errors(json_output):
        try:
            applied = client(url, token).apply_pools(file)
        except InvalidRequest as exc:
            if json_output:
                raise
            errors = exc.details.get("errors") if isinstance(exc.details, dict) else None
            raise InvalidRequest(
                f"{file}: {exc.message}",
                details=[{"loc": [e["field"]], "msg": e["message"]} for e in errors[1:]]
                if errors
                else None,
            ) from exc
    if json_output:
        print_json(applied)
        return
    names = ", ".join(p["spec"]["name"] for p in applied["pools"])
    console.print(f"pools applied from {file}; in force: {names}")


@pools_app.command("ls")
def ls(json_output: JsonOpt = False, url: UrlOpt = None, token: TokenOpt = None) -> None:
    """The pools in force (admin): each pool's workers up (and draining) against its min and
    max, its worker's resources, policy, idle timeout, price and provider, and the
    autoscaler's latest decision."""
    with user_errors(json_output):
        data = client(url, token).pools()
    if json_output:
        print_json(data)
        return
    table = Table(title=f"pools ({data['source']})")
    for col in ("pool", "workers", "min-max", "resources", "policy", "idle", "price/h",
                "provider", "last decision"):  # fmt: skip
        table.add_column(col, justify="right" if col in ("workers", "min-max") else "left")
    for pool in data["pools"]:
        spec = pool["spec"]
        prices = spec["price_per_hour"]
        price = f"{prices['on_demand']:g}" + (
            f" (spot {prices['spot']:g})" if prices.get("spot") is not None else ""
        )
        workers = str(pool["workers"]) + (
            f" [yellow]({pool['draining']} draining)[/]" if pool["draining"] else ""
        )
        table.add_row(
            spec["name"],
            workers,
            f"{spec['min']}-{spec['max']}",
            _amounts(spec["resources"]),
            spec["policy"]["name"],
            _seconds(spec["idle_timeout"]),
            price,
            spec["provider"],
            _decision(pool["last_decision"]),
        )
    console.print(table)
    if data["unmanaged"]:
        console.print(
            "unmanaged: " + ", ".join(f"{n} worker(s) in {p}" for p, n in data["unmanaged"].items())
        )
    console.print(
        f"providers on this server: {', '.join(f'{n} ({t})' for n, t in data['providers'].items())}"
        f"; autoscaler: {data['autoscaler'] or 'no scheduler holds its lease'}"
    )
    if data["applied_at"]:
        console.print(f"[dim]applied {when(data['applied_at'])} by {data['applied_by'] or '-'}[/]")


def _decision(decision: dict[str, Any] | None) -> str:
    if decision is None:
        return "-"
    return f"{decision['from_size']} → {decision['to_size']}: {decision['reason']}"


@autoscaler_app.command("log")
def log(
    pool: Annotated[str | None, typer.Option("--pool", help="Only this pool's.")] = None,
    changes: Annotated[
        bool, typer.Option("--changes", help="Only decisions that changed a pool's size.")
    ] = False,
    limit: Annotated[int, typer.Option(help="How many, newest first.")] = 50,
    json_output: JsonOpt = False,
    url: UrlOpt = None,
    token: TokenOpt = None,
) -> None:
    """The autoscaler's decisions, newest first (admin): when, which pool, from → to
    workers, the policy and its reason; --json adds the inputs the policy looked at.

    Example: zhuge autoscaler log --pool gpu --changes
    """
    with user_errors(json_output):
        if limit < 1:
            raise InvalidRequest(f"--limit must be at least 1, not {limit}")
        rows = client(url, token).autoscaler_log(pool=pool, changes=changes, limit=limit)
    if json_output:
        print_json(rows)
        return
    if not rows:
        console.print("no decisions yet" + (f" for pool {pool}" if pool else ""))
        return
    table = Table(title="autoscaler decisions")
    for col in ("at", "pool", "from → to", "policy", "reason"):
        table.add_column(col)
    for r in rows:
        arrow = f"{r['from_size']} → {r['to_size']}"
        if r["to_size"] != r["from_size"]:
            arrow = f"[bold]{arrow}[/]"
        table.add_row(when(r["at"]), r["pool"], arrow, r["policy"], r["reason"])
    console.print(table)
