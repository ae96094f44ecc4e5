"""``zhuge db``: the store's schema version, and its upgrade."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from zhuge.cli.common import JsonOpt, console, print_json, user_errors

db_app = typer.Typer(
    help="The database's schema: which revision it has, and upgrading it to this zhuge's.",
    no_args_is_help=True,
)

HomeOpt = Annotated[
    Path | None,
    typer.Option(envvar="ZHUGE_HOME", help="Home of the SQLite database (unless ZHUGE_DB_URL)."),
]


def _engine_and_where(home: Path | None):  # type: ignore[no-untyped-def]
    import os

    from zhuge.config import Settings
    from zhuge.jobs.store import create_engine, redacted

    env = dict(os.environ)
    if home is not None:
        env["ZHUGE_HOME"] = str(home)
    settings = Settings.from_env(env)
    if settings.db_url is None:
        settings.home.mkdir(parents=True, exist_ok=True)
    return create_engine(settings.database_url), redacted(settings.database_url)


@db_app.command("current")
def current(home: HomeOpt = None, json_output: JsonOpt = False) -> None:
    """Show the database's schema revision and whether it needs `zhuge db upgrade`.

    Exits 0 when the schema is this zhuge's, 1 when it needs an upgrade or is newer.
    """
    from zhuge.jobs import migrations

    with user_errors(json_output):
        engine, where = _engine_and_where(home)
        try:
            found = migrations.state(engine)
        finally:
            engine.dispose()
    out = {
        "database": where,
        "current": found.current,
        "head": found.head,
        "up_to_date": found.up_to_date,
        "pending": found.pending,
    }
    if json_output:
        print_json(out)
    elif found.empty:
        console.print(
            f"{where}: empty; `zhuge up` (or `zhuge db upgrade`) creates it at {found.head}"
        )
    elif found.up_to_date:
        console.print(f"{where}: revision {found.current} (up to date)")
    elif found.pending:
        console.print(
            f"{where}: revision {found.current}; this zhuge needs {found.head} "
            f"({len(found.pending)} to apply: {', '.join(found.pending)}). "
            "Back it up, then run: zhuge db upgrade"
        )
    else:
        console.print(
            f"{where}: revision {found.current}, written by a newer zhuge (this one knows up "
            f"to {found.head}): upgrade zhuge"
        )
    if not (found.up_to_date or found.empty):
        raise typer.Exit(1)


@db_app.command("upgrade")
def upgrade(home: HomeOpt = None, json_output: JsonOpt = False) -> None:
    """Upgrade the database's schema to this zhuge's (creating it when empty).

    Back the database up first. Safe to run twice, and while other zhuge processes start
    (one upgrade runs; the others wait for it). Every job, event, token and artifact
    reference is kept.
    """
    from zhuge.jobs import migrations

    with user_errors(json_output):
        engine, where = _engine_and_where(home)
        try:
            before, after = migrations.upgrade(engine, where)
        finally:
            engine.dispose()
    if json_output:
        print_json({"database": where, "from": before, "to": after})
    elif before == after:
        console.print(f"{where}: already at revision {after}")
    else:
        console.print(f"{where}: upgraded from {before or 'empty'} to revision {after}")
