from __future__ import annotations

import pytest

from tests.conftest import FakeClock, empty_store
from tests.integration.platform.gate import register_gate_kinds
from zhuge.jobs.store import JobStore


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request, tmp_path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'zhuge.db'}"
    return empty_store(request.getfixturevalue("postgres_url"))


@pytest.fixture
def store(db_url, clock) -> JobStore:
    s = JobStore.open(db_url, clock=clock, retry_base_seconds=10.0, retry_max_seconds=100.0)
    yield s
    s.dispose()


@pytest.fixture(scope="session")
def gate_kinds() -> None:
    """The test-only gate kinds, registered in this process for the tests that submit them
    (``gate.py``); other tests see only the product's kinds."""
    register_gate_kinds()
