"""Alembic's entry point: run the migrations on the connection ``zhuge.jobs.migrations``
hands over (never a URL of its own, so the store's engine set-up applies)."""

from __future__ import annotations

from alembic import context

from zhuge.jobs.schema import metadata

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
