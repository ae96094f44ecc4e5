"""zhuge costs: what jobs cost, by tenant, kind, pool or day."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from zhuge.cli.common import JsonOpt, TokenOpt, UrlOpt, client, console, print_json, user_errors

BY = ("tenant", "kind", "pool", "day", "job")


def _money(value: float | None) -> str:
    return "-" if value is None else f"{value:,.4f}"


def _hours(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds / 3600:,.2f}"


def costs(
    by: Annotated[
        str, typer.Option("--by", help="Group the lines by tenant, kind, pool, day (UTC) or job.")
    ] = "tenant",
    since: Annotated[
        str | None,
        typer.Option(help="From this long ago (7d, 24h) or an ISO 8601 time; default: ever."),
    ] = None,
    json_output: JsonOpt = False,
    url: UrlOpt = None,
    token: TokenOpt = None,
) -> None:
    """What jobs cost, from what each attempt was allocated and for how long, priced with
    the pools' prices and billing granularity (see docs/elastic.md#cost-accounting). An admin
    also sees each pool's bill, its idle cost (capacity paid for that no job used) and what
    spot would have saved; a member sees its own tenant only.

    Example: zhuge costs --by pool --since 7d
    """
    with user_errors(json_output):
        if by not in BY:
            from zhuge.errors import InvalidRequest

            raise InvalidRequest(f"--by {by!r}: choose one of {', '.join(BY)}")
        from zhuge.cli.admin import since_time  # --since 7d or ISO 8601, said in its words

        data = client(url, token).costs(by=by, since=since_time(since) if since else None)
    if json_output:
        print_json(data)
        return
    table = Table(title=f"costs by {by}" + (f" since {since}" if since else ""))
    for col in (by, "cost", "attempts", "CPU h", "GPU h", "memory GB·h", "CPU h used"):
        table.add_column(col, justify="left" if col == by else "right")
    for line in data["lines"]:
        allocated = line["allocated"]
        table.add_row(
            line["key"],
            _money(line["cost"]),
            str(line["attempts"]),
            _hours(allocated.get("CPU", 0.0)),
            _hours(allocated.get("GPU", 0.0)),
            _hours(allocated.get("memory_gb", 0.0)),
            _hours(line["cpu_seconds"]),
        )
    console.print(table)
    console.print(f"charged to jobs: {_money(data['total'])}")
    if data["capacity_cost"] is None:
        return  # a member: the cluster's bill is not its to see
    console.print(
        f"pools' bill: {_money(data['capacity_cost'])}; idle (paid, no job used it): "
        f"{_money(data['idle_cost'])}; spot would have saved: {_money(data['spot_savings'])}"
    )
    for name, pool in data["pools"].items():
        console.print(
            f"  {name}: bill {_money(pool['cost'])}, idle {_money(pool['idle_cost'])}, "
            f"{_hours(pool['up_s'])} worker-hours up, {_hours(pool['used_worker_s'])} used"
        )
    if data["unpriced_pools"]:
        console.print(
            f"[dim]no price for pool(s) {', '.join(data['unpriced_pools'])} (not in the pools "
            "in force): charged 0[/]"
        )
