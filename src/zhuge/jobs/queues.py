"""The queue configuration in force (``zhuge queues apply``), and what admission reads of it.

One row of ``queue_config`` holds the YAML as an admin applied it and the configuration as
parsed (``zhuge.jobs.admission.QueueConfig``). With none applied, every tenant has weight 1
and no nominal quota.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import sqlalchemy as sa

from zhuge.jobs import schema
from zhuge.jobs.admission import QueueConfig

if TYPE_CHECKING:
    from sqlalchemy import Connection

    from zhuge.jobs.store import JobStore


class Queues:
    def __init__(self, store: JobStore) -> None:
        self.store = store

    def config(self, conn: Connection | None = None) -> QueueConfig:
        """The configuration in force (the defaults when none was applied)."""
        query = sa.select(schema.queue_config.c.config).where(schema.queue_config.c.id == 1)
        if conn is not None:
            row = conn.execute(query).first()
        else:
            with self.store.engine.connect() as c:
                row = c.execute(query).first()
                c.rollback()
        return QueueConfig() if row is None else QueueConfig.model_validate(row.config)

    def apply(self, document: str, *, applied_by: str | None = None) -> QueueConfig:
        """Check ``document`` (YAML) and make it the configuration in force; InvalidRequest
        naming the field, and nothing changed, if it is not valid."""
        config = QueueConfig.parse(document)
        now = self.store.clock()
        values = {
            "document": document,
            "config": config.model_dump(mode="json"),
            "applied_at": now,
            "applied_by": applied_by,
        }
        with self.store._tx() as conn:
            done = conn.execute(
                schema.queue_config.update().where(schema.queue_config.c.id == 1).values(**values)
            )
            if done.rowcount == 0:
                conn.execute(schema.queue_config.insert().values(id=1, **values))
        return config
