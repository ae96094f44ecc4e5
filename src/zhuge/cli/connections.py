"""zhuge connections add / ls / rm: the SQL databases and object-store prefixes jobs may read
by name (admins add and remove them; members list their tenant's)."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from zhuge.cli.common import JsonOpt, TokenOpt, UrlOpt, client, console, print_json, user_errors

connections_app = typer.Typer(
    help="SQL databases and object-store prefixes jobs read by name: --sql with --connection "
    "NAME, or connection://NAME/KEY. Credentials stay on the server.",
    no_args_is_help=True,
)


@connections_app.command("add")
def connections_add(
    name: Annotated[str, typer.Argument(help="Letters, digits, '_' and '-'.")],
    target: Annotated[
        str,
        typer.Argument(
            metavar="URL",
            help="postgresql://user:password@host/db, sqlite:////path/file.db, or an object "
            "prefix: s3://bucket/prefix, gs://bucket/prefix, file:///folder.",
        ),
    ],
    tenant: Annotated[
        str | None,
        typer.Option("--tenant", help="The tenant whose jobs may use it (default: admins only)."),
    ] = None,
    json_output: JsonOpt = False,
    url: UrlOpt = None,
    token: TokenOpt = None,
) -> None:
    """Register a connection (admin). Refused: the platform's own database or files, and a
    PostgreSQL role that can read server files or run programs."""
    with user_errors(json_output):
        added = client(url, token).add_connection(name, target, tenant=tenant)
    if json_output:
        print_json(added)
        return
    who = f"tenant {added['tenant']}" if added["tenant"] else "admins only"
    use = (
        f"--sql QUERY --connection {added['name']}"
        if added["kind"] == "sql"
        else f"connection://{added['name']}/KEY"
    )
    console.print(f"connection [bold]{added['name']}[/] ({added['location']}, {who}); use: {use}")


@connections_app.command("ls")
def connections_ls(
    json_output: JsonOpt = False, url: UrlOpt = None, token: TokenOpt = None
) -> None:
    """List the connections you may use (admins: all). URLs are never shown."""
    with user_errors(json_output):
        found = client(url, token).connections()
    if json_output:
        print_json(found)
        return
    table = Table()
    for col in ("name", "kind", "tenant", "location", "created"):
        table.add_column(col)
    for c in found:
        table.add_row(
            c["name"], c["kind"], c["tenant"] or "(admins)", c["location"], c["created_at"] or "-"
        )
    console.print(table)


@connections_app.command("rm")
def connections_rm(
    name: Annotated[str, typer.Argument(help="The connection to remove.")],
    json_output: JsonOpt = False,
    url: UrlOpt = None,
    token: TokenOpt = None,
) -> None:
    """Remove a connection (admin); queued jobs that name it fail when they start."""
    with user_errors(json_output):
        removed = client(url, token).remove_connection(name)
    if json_output:
        print_json(removed)
    else:
        console.print(f"connection [bold]{removed['name']}[/] removed")
