"""``zhuge worker`` refuses to start, and so takes no work, when its zhuge does not match the
database's schema (a rolling upgrade done in the wrong order), saying which revision each has
and what to do; the database is left as it was. Nothing is started: ``os.execv`` (which would
become the Dask worker) is replaced by a recorder."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

import zhuge
from tests.conftest import free_port
from zhuge.cli import app
from zhuge.jobs import migrations
from zhuge.jobs.store import JobStore


@pytest.fixture
def started(monkeypatch) -> list[list[str]]:
    calls: list[list[str]] = []
    monkeypatch.setattr("os.execv", lambda path, argv: calls.append(argv))
    return calls


@pytest.fixture
def stamp(db_url):  # type: ignore[no-untyped-def]
    """Stamp the database with another revision; put the head back after (the PostgreSQL
    schema is the session's)."""
    JobStore.open(db_url).dispose()
    yield lambda revision: _stamp(db_url, revision)
    _stamp(db_url, migrations.head())


def _stamp(url: str, revision: str) -> None:
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE alembic_version SET version_num = :r"), {"r": revision})
    engine.dispose()


def _revision(url: str) -> str | None:
    engine = sa.create_engine(url)
    try:
        return migrations.state(engine).current
    finally:
        engine.dispose()


def _worker(url: str):  # type: ignore[no-untyped-def]
    return CliRunner().invoke(
        app,
        ["worker", "tcp://127.0.0.1:8786", "--cpus", "1", "--memory", "1", "--gpus", "0"],
        env={"ZHUGE_DB_URL": url},
    )


def test_a_worker_matching_the_schema_starts(db_url, started):
    JobStore.open(db_url).dispose()
    r = _worker(db_url)
    assert r.exit_code == 0, r.output
    assert len(started) == 1 and "distributed.cli.dask_worker" in started[0]


def test_a_worker_newer_than_the_database_refuses_and_says_why(db_url, stamp, started):
    stamp("0004")  # the database of the zhuge before: not upgraded yet
    r = _worker(db_url)
    assert r.exit_code == 1
    out = " ".join(r.output.split())
    assert "schema revision 0004" in out and f"zhuge {zhuge.__version__}" in out
    assert f"needs schema revision {migrations.head()}" in out
    assert "zhuge db upgrade" in out and "takes no work" in out
    assert "Traceback" not in r.output
    assert started == []
    assert _revision(db_url) == "0004"  # nothing changed


def test_a_worker_older_than_the_database_refuses_and_says_why(db_url, stamp, started):
    stamp("9999")  # upgraded by a newer zhuge this worker does not know
    r = _worker(db_url)
    assert r.exit_code == 1
    out = " ".join(r.output.split())
    assert "schema revision 9999, written by a newer zhuge" in out and "takes no work" in out
    assert started == []
    assert _revision(db_url) == "9999"


def test_a_worker_facing_an_empty_database_refuses_and_creates_nothing(tmp_path, started):
    path = tmp_path / "none.db"
    r = _worker(f"sqlite:///{path}")
    assert r.exit_code == 1
    assert "no zhuge schema yet" in " ".join(r.output.split())
    assert started == [] and not path.exists()


def test_a_worker_that_cannot_reach_the_database_refuses_in_words(started):
    url = f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/zhuge?connect_timeout=2"
    r = _worker(url)
    assert r.exit_code == 1
    out = " ".join(r.output.split())
    assert "cannot reach the database" in out and "takes no work" in out
    assert "Traceback" not in r.output and started == []
