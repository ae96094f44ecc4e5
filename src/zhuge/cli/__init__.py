"""The ``zhuge`` command."""

from __future__ import annotations

import typer

from zhuge.cli import admin, cluster, connections, datasets, db, forecast, jobs, migration, server
from zhuge.cli.models import models_app
from zhuge.cli.queues import queues_app
from zhuge.cli.simulate import register as register_simulate

app = typer.Typer(
    name="zhuge",
    help="zhuge: durable ML jobs on SQL and Dask — fleet forecasting, migration planning, "
    "clustering. Start with `zhuge up`, then `zhuge submit sleep -p seconds=1 --wait`.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

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
app.add_typer(models_app, name="models")
forecast.register(app)
migration.register(app)
cluster.register(app)
register_simulate(app)


def main() -> None:
    app()
