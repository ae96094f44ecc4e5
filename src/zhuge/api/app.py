"""create_app(settings): the HTTP API. It only reads and writes rows; it never runs work."""

from __future__ import annotations

from collections.abc import Callable

from fastapi import FastAPI

import zhuge
from zhuge.api import audit, errors, limits, openapi
from zhuge.api.metrics import registry_for
from zhuge.api.routes import (
    admin,
    artifacts,
    connections,
    datasets,
    health,
    jobs,
    models,
    queues,
    system,
)
from zhuge.api.routes import costs as cost_routes
from zhuge.api.routes import pipelines as pipeline_routes
from zhuge.api.routes import pools as pool_routes
from zhuge.api.routes import schedules as schedule_routes
from zhuge.config import Settings
from zhuge.jobs.store import JobStore


def create_app(
    settings: Settings,
    *,
    store: JobStore | None = None,
    notify: Callable[..., None] | None = None,
) -> FastAPI:
    """Build the API. ``notify`` is called after a submission or cancel, so an in-process
    scheduler looks at the queue at once instead of at its next poll; after a submission,
    with the submitted jobs' resources (``Scheduler.notify``)."""
    app = FastAPI(
        title="zhuge",
        version=zhuge.__version__,
        description="Durable ML jobs on SQL and Dask: submit, watch, cancel, retry.",
    )
    app.state.settings = settings
    app.state.store = store or JobStore.open(
        settings.database_url,
        retry_base_seconds=settings.retry_base_seconds,
        retry_max_seconds=settings.retry_max_seconds,
    )
    app.state.notify = notify or (lambda *_: None)
    app.state.metrics = registry_for(app.state.store)
    errors.install(app)
    limits.install(app, settings)
    openapi.document_errors(app)
    app.include_router(jobs.router)
    app.include_router(connections.router)
    app.include_router(artifacts.router)
    app.include_router(datasets.router)
    app.include_router(system.router)
    app.include_router(health.router)
    app.include_router(admin.router)
    app.include_router(queues.router)
    app.include_router(models.router)
    app.include_router(pipeline_routes.router)
    app.include_router(schedule_routes.router)
    app.include_router(pool_routes.router)
    app.include_router(cost_routes.router)
    audit.install(app)  # last: the outermost middleware, it sees what any other refuses
    return app
