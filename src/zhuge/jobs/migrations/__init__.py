"""Schema versions of the store, with Alembic: check at start, create, upgrade.

The revisions live in ``versions/``; ``0001`` is the schema of zhuge v0.1.0, the first
release, and every later schema change ships a revision of its own. A process that opens the
store (``JobStore.open``) calls ``prepare``:

- an empty database is created at the newest revision (``schema.metadata`` plus a stamp; a
  test checks that this equals running every revision);
- a database at the newest revision is used as it is;
- an older one is refused with the command that upgrades it (``zhuge db upgrade``): a server
  does not change its schema behind an operator's back, and several processes of one
  deployment must not race to do it;
- one written by a newer zhuge (a revision this one does not know) is refused too.

A database of v0.1.0 has the tables but no ``alembic_version``: it counts as ``0001``.
Creation and upgrade hold a lock (PostgreSQL: an advisory lock; SQLite: ``BEGIN
IMMEDIATE``), so two processes starting at once do it once.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import cache

import sqlalchemy as sa
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection, Engine

from zhuge.errors import SchemaMismatch
from zhuge.jobs import schema

BASELINE = "0001"  # the schema of zhuge v0.1.0
_LOCK_KEY = 0x7A68756765  # "zhuge": the advisory lock of schema changes on PostgreSQL
UPGRADE_COMMAND = "zhuge db upgrade"

# Alembic announces its plugins at INFO each time a process loads it; keep `zhuge up` quiet.
logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)


@cache
def _config() -> Config:
    config = Config()
    config.set_main_option("script_location", "zhuge.jobs:migrations")
    return config


@cache
def _scripts() -> ScriptDirectory:
    return ScriptDirectory.from_config(_config())


def head() -> str:
    """The revision this zhuge writes and expects."""
    revision = _scripts().get_current_head()
    assert revision is not None
    return revision


def known(revision: str) -> bool:
    return any(s.revision == revision for s in _scripts().walk_revisions())


@dataclass(frozen=True)
class SchemaState:
    current: str | None  # None: an empty database
    head: str

    @property
    def empty(self) -> bool:
        return self.current is None

    @property
    def up_to_date(self) -> bool:
        return self.current == self.head

    @property
    def pending(self) -> list[str]:
        """Revisions an upgrade would apply, oldest first."""
        if self.current is None or not known(self.current):
            return []
        steps = _scripts().iterate_revisions(self.head, self.current)
        return [s.revision for s in reversed(list(steps))]


def _current(conn: Connection) -> str | None:
    tables = set(sa.inspect(conn).get_table_names())
    if "alembic_version" in tables:
        return MigrationContext.configure(conn).get_current_revision()
    if "jobs" in tables:
        return BASELINE  # made by v0.1.0, before schema versions were recorded
    return None


def state(engine: Engine) -> SchemaState:
    with engine.connect() as conn:
        current = _current(conn)
        conn.rollback()
    return SchemaState(current=current, head=head())


def _locked(conn: Connection) -> None:
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_LOCK_KEY})")
    # SQLite: the store's engine begins every transaction with BEGIN IMMEDIATE.


def _refusal(found: SchemaState, where: str) -> SchemaMismatch:
    if found.current is not None and not known(found.current):
        return SchemaMismatch(
            f"the database at {where} has schema revision {found.current}, written by a newer "
            f"zhuge than this one (which knows up to {found.head}): upgrade zhuge",
            details={"current": found.current, "head": found.head},
        )
    return SchemaMismatch(
        f"the database at {where} has schema revision {found.current}; this zhuge needs "
        f"{found.head}. Back it up, then run: {UPGRADE_COMMAND}",
        details={"current": found.current, "head": found.head, "command": UPGRADE_COMMAND},
    )


def prepare(engine: Engine, where: str) -> None:
    """Create an empty database at the head revision; refuse any other than the head."""
    found = state(engine)
    if found.up_to_date:
        return
    if found.empty:
        with engine.begin() as conn:
            _locked(conn)
            if _current(conn) is None:  # nobody created it while we waited for the lock
                schema.metadata.create_all(conn)
                MigrationContext.configure(conn).stamp(_scripts(), "head")
        found = state(engine)
        if found.up_to_date:
            return
    raise _refusal(found, where)


def upgrade(engine: Engine, where: str) -> tuple[str | None, str]:
    """Bring the database to the head revision (creating it if empty); ``(from, to)``."""
    found = state(engine)
    if found.current is not None and not known(found.current):
        raise _refusal(found, where)
    if found.empty:
        prepare(engine, where)
        return None, head()
    with engine.begin() as conn:
        _locked(conn)
        if "alembic_version" not in sa.inspect(conn).get_table_names():
            MigrationContext.configure(conn).stamp(_scripts(), BASELINE)
        config = _config()
        config.attributes["connection"] = conn
        from alembic import command

        command.upgrade(config, "head")
    return found.current, head()
