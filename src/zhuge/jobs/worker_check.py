"""A worker's zhuge must match the database's schema before it takes any work.

During a rolling upgrade a worker of the old zhuge next to a database already upgraded (or a
new worker before ``zhuge db upgrade``) would run attempts whose writes the other schema does
not expect. ``zhuge worker`` checks first and refuses to start, saying which revision the
database has, which this zhuge needs, and what to do; it never changes the database (an
empty one is refused too: a scheduler creates it).

Workers not started by ``zhuge worker`` (a plain ``dask worker``, dask-jobqueue's or
dask-kubernetes' workers, a pool's ``dask-cluster`` provider) are checked too: a scheduler
joining an existing Dask cluster registers ``SchemaCheck``, a Dask worker plugin that every
worker, present or joining later, runs before it is any use; a worker whose zhuge does not
match closes itself, saying why in its log. (A worker whose zhuge predates this plugin cannot
load it and is not checked: upgrade workers with ``zhuge worker``.)
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from distributed.diagnostics.plugin import WorkerPlugin

import zhuge
from zhuge.errors import SchemaMismatch, StoreError
from zhuge.jobs import migrations
from zhuge.jobs.store import create_engine, redacted

log = logging.getLogger(__name__)


def check_worker_schema(url: str) -> str:
    """The database's revision, when it is the one this zhuge needs; SchemaMismatch if not."""
    where = redacted(url)
    found = _state(url, where)
    mine = f"this worker's zhuge {zhuge.__version__} needs schema revision {found.head}"
    details = {"current": found.current, "head": found.head, "version": zhuge.__version__}
    if found.up_to_date:
        return found.head
    if found.empty:
        raise SchemaMismatch(
            f"the database at {where} has no zhuge schema yet; {mine}: start a scheduler "
            "(zhuge up) or run zhuge db upgrade first. This worker takes no work.",
            details=details,
        )
    if found.pending:
        raise SchemaMismatch(
            f"the database at {where} has schema revision {found.current}, older than {mine}: "
            f"upgrade the database ({migrations.UPGRADE_COMMAND}) before starting new "
            "workers. This worker takes no work.",
            details=details,
        )
    raise SchemaMismatch(
        f"the database at {where} has schema revision {found.current}, written by a newer "
        f"zhuge; {mine}: install the zhuge the database was upgraded with. This worker takes "
        "no work.",
        details=details,
    )


def _state(url: str, where: str) -> migrations.SchemaState:
    parsed = sa.make_url(url)
    if parsed.get_backend_name() == "sqlite" and not Path(parsed.database or "").is_file():
        # the store's engine would create a missing file; a check must not
        return migrations.SchemaState(current=None, head=migrations.head())
    engine = create_engine(url)
    try:
        return migrations.state(engine)
    except sa.exc.DBAPIError as exc:
        raise StoreError(
            f"cannot reach the database at {where} to check its schema: {exc.orig}; "
            "this worker takes no work"
        ) from exc
    finally:
        engine.dispose()


class SchemaCheck(WorkerPlugin):
    """Run on every Dask worker of a cluster the scheduler joined: a worker whose zhuge does
    not match the database's schema (``check_worker_schema``) logs why and closes itself
    (its nanny too), so admission never books it and it runs no attempt."""

    name = "zhuge-schema-check"
    idempotent = True  # registered once per Dask cluster, by the first scheduler to join it

    def __init__(self, db_url: str) -> None:
        self.db_url = db_url

    async def setup(self, worker: Any) -> None:
        try:
            await asyncio.to_thread(check_worker_schema, self.db_url)
        except (SchemaMismatch, StoreError) as exc:
            log.error("zhuge: %s", exc)
            # not awaited here: closing waits for the plugins' setup, this one included
            worker.loop.add_callback(worker.close, reason=f"zhuge schema check: {exc}")
