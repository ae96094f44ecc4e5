"""Fixtures shared by every test layer."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import pytest

if TYPE_CHECKING:
    from fastapi.testclient import TestClient

    from zhuge.client import Client
    from zhuge.jobs.store import JobStore

REPO = Path(__file__).resolve().parents[1]
T = TypeVar("T")

# One terminal width for every test that reads rich's output, whatever runs the suite (a
# pytest-xdist worker has no terminal: rich took 80 columns and cut a table's names).
os.environ["COLUMNS"] = "160"


def _shared_data_dir() -> Path:
    raw = os.environ.get("ZHUGE_TEST_DATA")
    return Path(raw).resolve() if raw else (REPO.parent / "shared" / "data").resolve()


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data`` (or ``$ZHUGE_TEST_DATA``): real NAB and datacenter-trace series.

    Skips with a message only where the folder is absent; ``.ci/run`` sets the path and fails
    the build if any test skipped for this reason.
    """
    path = _shared_data_dir()
    if not (path / "nab").is_dir():
        skip_or_fail(
            f"real data not found at {path} (set ZHUGE_TEST_DATA)", required_by="ZHUGE_REQUIRE_DATA"
        )
    return path


def _required(name: str) -> bool:
    return os.environ.get(name, "") not in ("", "0", "false")


def skip_or_fail(reason: str, *, required_by: str) -> None:
    """Skip where a service or data set is absent, but fail where CI says it must be there."""
    if _required(required_by):
        pytest.fail(f"{reason} (and {required_by} is set: CI must run these tests)")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def postgres_url() -> str:
    """A PostgreSQL URL with a schema of its own for this test session."""
    import uuid

    import sqlalchemy as sa

    url = os.environ.get("ZHUGE_TEST_POSTGRES_URL")
    if not url:
        skip_or_fail("ZHUGE_TEST_POSTGRES_URL is not set", required_by="ZHUGE_REQUIRE_POSTGRES")
    schema = f"zt_{uuid.uuid4().hex[:10]}"
    engine = sa.create_engine(url)
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql(f"CREATE SCHEMA {schema}")
    except sa.exc.OperationalError as exc:
        skip_or_fail(
            f"PostgreSQL unreachable at {url}: {exc.orig}", required_by="ZHUGE_REQUIRE_POSTGRES"
        )
    sep = "&" if "?" in url else "?"
    yield f"{url}{sep}options=-csearch_path%3D{schema}"
    with engine.begin() as conn:
        conn.exec_driver_sql(f"DROP SCHEMA {schema} CASCADE")
    engine.dispose()


def empty_store(url: str) -> str:
    """Create the store at ``url`` (stamped with its schema revision) if need be, and delete
    every row: a clean database for one test on the session's shared PostgreSQL schema."""
    import sqlalchemy as sa

    from zhuge.jobs import schema
    from zhuge.jobs.store import JobStore

    JobStore.open(url).dispose()
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        for table in reversed(schema.metadata.sorted_tables):
            conn.execute(table.delete())
    engine.dispose()
    return url


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class AdminApi:
    """A TestClient acting as the platform's admin, with members' tokens made on demand and
    the SDK over the same app."""

    def __init__(self, http: TestClient, store: JobStore, admin: str) -> None:
        self.http, self.store, self.admin = http, store, admin
        self.tokens: dict[str, str] = {}

    def call(self, method: str, path: str, token: str | None = None, **kw):
        headers = {"Authorization": f"Bearer {token or self.admin}", **kw.pop("headers", {})}
        return self.http.request(method, path, headers=headers, **kw)

    def member(self, tenant: str) -> str:
        if tenant not in self.tokens:
            self.store.ensure_tenant(tenant)
            self.tokens[tenant] = self.store.issue_token(tenant, "test member")
        return self.tokens[tenant]

    def sdk(self, token: str | None = None) -> Client:
        from zhuge.client import Client

        return Client("http://testserver", token or self.admin, transport=self.http._transport)


class FakeClock:
    """A clock that moves only when the test moves it (``JobStore(clock=)``,
    ``Scheduler(clock=)``, ``run_attempt(clock=)``); every store of a test may share one."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds

    def set(self, instant: float) -> None:
        self.now = instant


def wait_for(
    probe: Callable[[], T],
    *,
    what: str,
    until: Callable[[T], object] = bool,
    timeout: float = 120.0,
    interval: float = 0.05,
) -> T:
    """Call ``probe`` until ``until`` accepts what it returns (by default: until it returns
    something truthy), and return that.

    The timeout only bounds a hang, so it is generous: a test asserts *what* happened, never
    how fast. On timeout the test fails naming what it waited for and the last value probed.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if until(value):
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"gave up after {timeout:g}s waiting for {what}; last seen: {value!r}")
        time.sleep(interval)
