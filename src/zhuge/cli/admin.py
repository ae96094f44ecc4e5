"""zhuge tenants / tokens / audit: who may use the platform, and what they did (admins)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import typer
from rich.table import Table

from zhuge.cli.common import (
    JsonOpt,
    TokenOpt,
    UrlOpt,
    client,
    console,
    err_console,
    print_json,
    user_errors,
    when,
)
from zhuge.errors import InvalidRequest
from zhuge.jobs.tenancy import parse_duration

tenants_app = typer.Typer(help="Create and list tenants (admin).", no_args_is_help=True)
tokens_app = typer.Typer(help="Create, list and revoke tokens.", no_args_is_help=True)
audit_app = typer.Typer(
    help="What was asked of the platform, by whom (admin).", no_args_is_help=True
)

TenantOpt = Annotated[str | None, typer.Option("--tenant", help="Only this tenant's.")]


def since_time(text: str) -> str:
    """``--since``: a duration back from now (``1h``, ``7d``) or an ISO 8601 time."""
    try:
        return (datetime.now(UTC) - timedelta(seconds=parse_duration(text))).isoformat()
    except InvalidRequest:
        pass
    try:
        return datetime.fromisoformat(text).isoformat()
    except ValueError:
        raise InvalidRequest(
            f"--since {text!r} is neither a duration (1h, 7d) nor an ISO 8601 time"
        ) from None


# -- tenants ------------------------------------------------------------------------------


@tenants_app.command("create")
def tenants_create(
    name: Annotated[str, typer.Argument(help="Lowercase letters, digits, '-' and '_'.")],
    json_output: JsonOpt = False,
    url: UrlOpt = None,
    token: TokenOpt = None,
) -> None:
    """Create a tenant: a namespace of jobs, tokens and data."""
    with user_errors(json_output):
        tenant = client(url, token).create_tenant(name)
    if json_output:
        print_json(tenant)
    else:
        console.print(
            f"tenant [bold]{tenant['name']}[/] created; "
            f"give it a token with: zhuge tokens create --tenant {tenant['name']}"
        )


@tenants_app.command("ls")
def tenants_ls(json_output: JsonOpt = False, url: UrlOpt = None, token: TokenOpt = None) -> None:
    """List tenants."""
    with user_errors(json_output):
        tenants = client(url, token).tenants()
    if json_output:
        print_json(tenants)
        return
    table = Table()
    for col in ("tenant", "created", "data roots"):
        table.add_column(col)
    for t in tenants:
        table.add_row(t["name"], when(t["created_at"]), ", ".join(t["data_roots"] or []) or "-")
    console.print(table)


@tenants_app.command("roots")
def tenants_roots(
    name: Annotated[str, typer.Argument(help="The tenant.")],
    roots: Annotated[
        list[str] | None,
        typer.Argument(help="Absolute server folders its jobs may read by path."),
    ] = None,
    clear: Annotated[bool, typer.Option("--clear", help="Remove all of its own roots.")] = False,
    json_output: JsonOpt = False,
    url: UrlOpt = None,
    token: TokenOpt = None,
) -> None:
    """Set the server folders a tenant's jobs may read by path, beyond ZHUGE_DATA_ROOTS.

    Example: zhuge tenants roots forecasting /srv/telemetry /srv/inventory
    """
    with user_errors(json_output):
        if not roots and not clear:
            raise InvalidRequest("name one or more folders, or --clear to remove them all")
        tenant = client(url, token).set_data_roots(name, [] if clear else list(roots or []))
    if json_output:
        print_json(tenant)
    else:
        shown = ", ".join(tenant["data_roots"] or []) or "none of its own"
        console.print(f"tenant [bold]{tenant['name']}[/] reads by path: {shown}")


# -- tokens -------------------------------------------------------------------------------


@tokens_app.command("create")
def tokens_create(
    tenant: Annotated[str, typer.Option("--tenant", help="The token's tenant (must exist).")],
    role: Annotated[
        str, typer.Option(help="member (its own tenant) or admin (the whole platform).")
    ] = "member",
    expires: Annotated[
        str | None, typer.Option(help="Lifetime, e.g. 90d, 12h, 2w (default: never).")
    ] = None,
    name: Annotated[str, typer.Option(help="A label, e.g. laptop or ci.")] = "",
    json_output: JsonOpt = False,
    url: UrlOpt = None,
    token: TokenOpt = None,
) -> None:
    """Create a token and print it, this once: only its hash is kept.

    Only the token goes to stdout, for TOKEN=$(zhuge tokens create --tenant acme).
    With --json: {"token": ..., "id": ..., ...}.
    """
    with user_errors(json_output):
        created = client(url, token).create_token(tenant, role=role, name=name, expires=expires)
    if json_output:
        print_json(created)
        return
    expiry = f"expires {when(created['expires_at'])}" if created["expires_at"] else "no expiry"
    err_console.print(
        f"token [bold]{created['id']}[/] ({created['role']} of {created['tenant']}, {expiry}); "
        "shown this once, keep it now:"
    )
    print(created["token"])


def token_table(tokens: list[dict[str, Any]]) -> Table:
    table = Table()
    for col in ("id", "name", "tenant", "role", "state", "last used", "expires", "created"):
        table.add_column(col)
    style = {"active": "green", "revoked": "red", "expired": "yellow"}
    for t in tokens:
        table.add_row(
            t["id"],
            t["name"] or t["description"] or "-",
            t["tenant"],
            t["role"],
            f"[{style.get(t['state'], 'white')}]{t['state']}[/]",
            when(t["last_used_at"]),
            when(t["expires_at"]) if t["expires_at"] else "never",
            when(t["created_at"]),
        )
    return table


@tokens_app.command("ls")
def tokens_ls(
    tenant: TenantOpt = None,
    json_output: JsonOpt = False,
    url: UrlOpt = None,
    token: TokenOpt = None,
) -> None:
    """List tokens by id (never the tokens themselves); a member sees its own tenant's."""
    with user_errors(json_output):
        tokens = client(url, token).tokens(tenant=tenant)
    if json_output:
        print_json(tokens)
    elif not tokens:
        console.print("no tokens")
    else:
        console.print(token_table(tokens))


@tokens_app.command("revoke")
def tokens_revoke(
    token_id: Annotated[str, typer.Argument(help="The token's id (tok_..., see tokens ls).")],
    json_output: JsonOpt = False,
    url: UrlOpt = None,
    token: TokenOpt = None,
) -> None:
    """Revoke a token: every API process refuses it from its next request."""
    with user_errors(json_output):
        revoked = client(url, token).revoke_token(token_id)
    if json_output:
        print_json(revoked)
    else:
        console.print(f"token [bold]{revoked['id']}[/] of {revoked['tenant']} [red]revoked[/]")


# -- audit --------------------------------------------------------------------------------


@audit_app.command("ls")
def audit_ls(
    tenant: Annotated[
        str | None, typer.Option("--tenant", help="Only requests by this tenant's tokens.")
    ] = None,
    since: Annotated[
        str | None, typer.Option(help="A duration back (1h, 7d) or an ISO 8601 time.")
    ] = None,
    limit: Annotated[int, typer.Option(help="At most this many, newest first.")] = 100,
    json_output: JsonOpt = False,
    url: UrlOpt = None,
    token: TokenOpt = None,
) -> None:
    """Audit entries, newest first: who did what, to what, from where, and how it ended."""
    with user_errors(json_output):
        entries = client(url, token).audit(
            tenant=tenant, since=since_time(since) if since else None, limit=limit
        )
    if json_output:
        print_json(entries)
        return
    if not entries:
        console.print("no audit entries")
        return
    table = Table()
    for col in ("id", "at", "tenant", "token", "action", "target", "outcome", "client"):
        table.add_column(col, justify="right" if col == "id" else "left")
    for e in entries:
        outcome = "[green]ok[/]" if e["outcome"] == "ok" else f"[red]{e['outcome']}[/]"
        table.add_row(
            str(e["id"]),
            when(e["at"]),
            e["tenant"] or "-",
            e["token_id"] or "-",
            e["action"],
            e["target"] or "-",
            outcome,
            e["client"] or "-",
        )
    console.print(table)
