"""Fixtures of the schedule tests: a store on SQLite or PostgreSQL with a fake clock, a
tenant's token, and a small pipeline of echo jobs to schedule."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from tests.conftest import FakeClock, empty_store
from zhuge.jobs.model import Principal
from zhuge.jobs.store import JobStore

ECHO_PIPELINE = """\
name: tiny
params: {who: world}
steps:
  hello:
    kind: echo
    params: {greeting: "hello {{ who }}", day: "{{ slot - 1d }}"}
  done:
    kind: echo
    params: {after_hello: true}
    after: [hello]
"""
STEPS = 2  # jobs of one ECHO_PIPELINE run


def utc(*args: int) -> float:
    return datetime(*args, tzinfo=UTC).timestamp()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(utc(2026, 1, 1, 0, 0))


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request, tmp_path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'zhuge.db'}"
    return empty_store(request.getfixturevalue("postgres_url"))


@pytest.fixture
def store(db_url, clock) -> JobStore:
    s = JobStore.open(db_url, clock=clock)
    yield s
    s.dispose()


@pytest.fixture
def member(store) -> Principal:
    """A member token of tenant ``acme``, as the API would see it."""
    principal = store.principal_for_token(store.issue_token("acme"))
    assert principal is not None
    return principal
