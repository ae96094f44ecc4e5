from __future__ import annotations

import pytest

from tests.conftest import empty_store


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request, tmp_path) -> str:
    """The platform's own store: SQLite in ``tmp_path``, or the session's PostgreSQL schema."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'root' / '.zhuge' / 'zhuge.db'}"
    return empty_store(request.getfixturevalue("postgres_url"))
