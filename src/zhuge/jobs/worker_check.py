"""A worker's zhuge must match the database's schema before it takes any work.

During a rolling upgrade a worker of the old zhuge next to a database already upgraded (or a
new worker before ``zhuge db upgrade``) would run attempts whose writes the other schema does
not expect. ``zhuge worker`` checks first and refuses to start, saying which revision the
database has, which this zhuge needs, and what to do; it never changes the database (an
empty one is refused too: a scheduler creates it).
"""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa

import zhuge
from zhuge.errors import SchemaMismatch, StoreError
from zhuge.jobs import migrations
from zhuge.jobs.store import create_engine, redacted


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
