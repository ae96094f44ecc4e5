"""The store fixtures of ``tests/integration/platform`` (SQLite and PostgreSQL, a fake clock)."""

from __future__ import annotations

from tests.integration.platform.conftest import FakeClock, clock, db_url, store

__all__ = ["FakeClock", "clock", "db_url", "store"]
