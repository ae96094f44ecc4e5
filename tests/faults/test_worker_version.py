"""``zhuge worker`` refuses to start, and so takes no work, when its zhuge does not match the
database's schema (a rolling upgrade done in the wrong order), saying which revision each has
and what to do; the database is left as it was. Nothing is started: ``os.execv`` (which would
become the Dask worker) is replaced by a recorder.

Workers zhuge did not start (a plain ``dask worker`` in a cluster a scheduler joins) run the
same check as a Dask worker plugin and leave the cluster when it fails."""

from __future__ import annotations

import logging
import os
import signal

import pytest
import sqlalchemy as sa
from distributed import Client, LocalCluster
from typer.testing import CliRunner

import zhuge
from tests.conftest import free_port, wait_for
from zhuge.cli import app
from zhuge.jobs import executor as executor_module
from zhuge.jobs import migrations
from zhuge.jobs.executor import DaskExecutor
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


# -- workers zhuge did not start: a plain ``dask worker`` in a cluster the scheduler joins -----


@pytest.fixture
def cluster():  # type: ignore[no-untyped-def]
    """An existing Dask cluster, as an operator's ``dask scheduler`` + ``dask worker`` (or
    dask-jobqueue) would make it: zhuge joins it by address and started none of its workers."""
    with LocalCluster(
        n_workers=1, processes=False, threads_per_worker=1, dashboard_address="127.0.0.1:0"
    ) as c:
        yield c


def _joined(cluster, db_url):  # type: ignore[no-untyped-def]
    return DaskExecutor(address=cluster.scheduler_address, schema_url=db_url).start()


def test_a_plain_dask_worker_matching_the_schema_stays(db_url, cluster):
    JobStore.open(db_url).dispose()
    executor = _joined(cluster, db_url)
    try:
        # registering the plugin waits for its setup on every worker: the check has run
        assert len(executor.workers()) == 1
        cluster.scale(2)  # one joining later runs it too, and stays
        wait_for(lambda: len(executor.workers()), what="the second worker", until=lambda n: n == 2)
    finally:
        executor.close()


@pytest.mark.parametrize("joins", ["before", "after"])
def test_a_plain_dask_worker_of_another_schema_leaves_and_says_why(
    db_url, stamp, cluster, caplog, joins
):
    stamp("0004")
    if joins == "after":
        cluster.scale(0)
        wait_for(lambda: cluster.scheduler.workers, what="no worker", until=lambda w: not w)
    with caplog.at_level(logging.ERROR, logger="zhuge.jobs.worker_check"):
        executor = _joined(cluster, db_url)
        try:
            if joins == "after":
                cluster.scale(1)  # checked as it joins
            wait_for(
                lambda: (len(cluster.scheduler.workers), _refusals(caplog)),
                what="the mismatched worker to say why and leave",
                until=lambda seen: seen == (0, 1),
            )
            assert executor.workers() == []
        finally:
            executor.close()
    (refusal,) = [r for r in caplog.records if r.name == "zhuge.jobs.worker_check"]
    message = " ".join(refusal.getMessage().split())
    assert "schema revision 0004" in message and "takes no work" in message
    assert _revision(db_url) == "0004"  # the check changed nothing


def _refusals(caplog) -> int:  # type: ignore[no-untyped-def]
    return sum(r.name == "zhuge.jobs.worker_check" for r in caplog.records)


def test_a_scheduler_joins_though_a_worker_cannot_answer_the_check(db_url, caplog, monkeypatch):
    """The check must never keep a scheduler from starting: a worker paused (or cut off)
    while a scheduler registers the check cannot answer it; the scheduler warns and starts,
    and the Dask scheduler keeps the check for workers that join later."""
    JobStore.open(db_url).dispose()
    with (
        LocalCluster(
            n_workers=1, processes=True, threads_per_worker=1, dashboard_address="127.0.0.1:0"
        ) as cluster,
        Client(cluster) as client,
    ):
        (pid,) = client.run(os.getpid).values()
        os.kill(pid, signal.SIGSTOP)
        try:
            monkeypatch.setattr(executor_module, "SCHEMA_CHECK_WAIT_SECONDS", 0.5)
            with caplog.at_level(logging.WARNING, logger="zhuge.jobs.executor"):
                executor = _joined(cluster, db_url)
            try:
                assert any(
                    "could not reach every Dask worker" in r.getMessage() for r in caplog.records
                )
                assert "zhuge-schema-check" in cluster.scheduler.worker_plugins
            finally:
                executor.close()
        finally:
            os.kill(pid, signal.SIGCONT)
