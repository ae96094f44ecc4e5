"""A real store on SQLite and PostgreSQL with a clock the test moves, and the HTTP API over
it, for the elastic-capacity tests (no Dask: rows and fake providers stand in for workers)."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from tests.conftest import AdminApi, FakeClock, empty_store
from zhuge.api.app import create_app
from zhuge.config import Settings
from zhuge.jobs.store import JobStore

T0 = 1_700_000_000.0  # 2023-11-14 22:13:20 UTC


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request, tmp_path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'zhuge.db'}"
    return empty_store(request.getfixturevalue("postgres_url"))


@pytest.fixture
def store(db_url, clock):
    s = JobStore.open(db_url, clock=clock)
    yield s
    s.dispose()


@pytest.fixture
def settings(tmp_path, db_url) -> Settings:
    return Settings(home=tmp_path / "home", db_url=db_url, autoscale_seconds=1.0)


@pytest.fixture
def api(store, settings):
    admin = store.issue_token("default", "admin", role="admin")
    with TestClient(create_app(settings, store=store)) as http:
        yield AdminApi(http, store, admin)
