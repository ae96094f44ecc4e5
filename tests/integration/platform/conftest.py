from __future__ import annotations

import pytest

from tests.conftest import empty_store
from zhuge.jobs.store import JobStore


class FakeClock:
    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


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
