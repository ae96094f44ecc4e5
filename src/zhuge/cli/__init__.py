"""The ``zhuge`` command."""

from __future__ import annotations

import os
import sys
from typing import Annotated

import typer

from zhuge.cli import (
    admin,
    cluster,
    connections,
    datasets,
    db,
    demo,
    forecast,
    jobs,
    migration,
    plot,
    run,
    server,
)
from zhuge.cli.costs import costs as costs_command
from zhuge.cli.models import models_app
from zhuge.cli.pipelines import pipeline_app
from zhuge.cli.pools import autoscaler_app, pools_app
from zhuge.cli.queues import queues_app
from zhuge.cli.schedules import schedules_app
from zhuge.cli.simulate import register as register_simulate

app = typer.Typer(
    name="zhuge",
    help="zhuge: durable ML jobs on SQL and Dask — fleet forecasting, migration planning, "
    "clustering. Start with `zhuge up`, then `zhuge submit sleep -p seconds=1 --wait`. "
    "Settings: ~/.config/zhuge/config.toml (or ZHUGE_CONFIG) holds url, token_file, home and "
    "[defaults.COMMAND] option values; environment variables override it.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=True,  # zhuge --install-completion [bash|zsh|fish|powershell]
)

WIDE_WIDTH = 10_000  # columns: tables and lines keep their natural width


def _version(value: bool) -> None:
    if value:
        from zhuge import __version__

        typer.echo(f"zhuge {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    ctx: typer.Context,
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="Print zhuge's version and exit."
        ),
    ] = False,
    wide: Annotated[
        bool,
        typer.Option(
            "--wide",
            help="Print tables at their full width, never cut to the terminal's (also "
            "after any command: zhuge jobs ls --wide; output to a pipe or file always is).",
        ),
    ] = False,
    detach: Annotated[
        bool,
        typer.Option(
            "--detach",
            help="Convenience commands (forecast, cluster, plan-migrations...) submit their "
            "job, print its id and the commands to follow it, and return without waiting "
            "(also after the command: zhuge forecast ... --detach). Needs a server.",
        ),
    ] = False,
) -> None:
    """Read the config file (~/.config/zhuge/config.toml or ZHUGE_CONFIG: url, token_file,
    home, [defaults.COMMAND]); environment variables override it."""
    from zhuge.cli.common import console, err_console, user_errors
    from zhuge.cli.config import apply_config, default_map, load_config

    # None: the terminal's width (or COLUMNS); set on every run, as one process may run many
    piped = not console.is_terminal and not os.environ.get("COLUMNS")  # a file has no width
    console.width = WIDE_WIDTH if wide or piped else None  # type: ignore[assignment]
    err_console.width = WIDE_WIDTH if wide else None  # type: ignore[assignment]
    # messages and errors: a terminal wraps them at its width; a pipe or a log file gets
    # each line whole, so a script or grep finds it whatever the length of the paths in it
    err_console.soft_wrap = not err_console.is_terminal
    run.detach.on = detach
    with user_errors():
        config = load_config()
        apply_config(config, os.environ)
        if config.defaults:
            ctx.default_map = default_map(config, ctx.command)


app.command()(server.up)
app.command()(server.worker)
app.command()(jobs.submit)
app.command()(jobs.status)
app.command()(jobs.kinds)
app.add_typer(jobs.jobs_app, name="jobs")
app.add_typer(db.db_app, name="db")
app.add_typer(datasets.datasets_app, name="datasets")
app.add_typer(connections.connections_app, name="connections")
app.add_typer(admin.tenants_app, name="tenants")
app.add_typer(admin.tokens_app, name="tokens")
app.add_typer(admin.audit_app, name="audit")
app.add_typer(queues_app, name="queues")
app.add_typer(plot.plot_app, name="plot")
app.add_typer(models_app, name="models")
app.add_typer(pipeline_app, name="pipeline")
app.add_typer(schedules_app, name="schedules")
app.add_typer(pools_app, name="pools")
app.add_typer(autoscaler_app, name="autoscaler")
app.command("costs")(costs_command)
forecast.register(app)
forecast.demo_app.command("migrations", help=demo.MIGRATIONS_HELP)(demo.demo_migrations_command)
migration.register(app)
cluster.register(app)
register_simulate(app)


GLOBAL_FLAGS = ("--wide", "--detach")  # options of zhuge itself, also typed after a command


def hoist_global_options(argv: list[str]) -> list[str]:
    """``zhuge jobs ls --wide`` as ``zhuge --wide jobs ls``: ``--wide`` and ``--detach``
    belong to ``zhuge`` itself but people type them after the command (not after ``--``)."""
    end = argv.index("--") if "--" in argv else len(argv)
    flags = [f for f in GLOBAL_FLAGS if f in argv[:end]]
    rest = [a for i, a in enumerate(argv) if not (a in flags and i < end)]
    return [*flags, *rest]


def main() -> None:
    app(args=hoist_global_options(sys.argv[1:]), prog_name="zhuge")
