"""Scale-out shapes: several schedulers on one PostgreSQL, and an existing Dask cluster whose
workers were started with `zhuge worker`."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from tests.conftest import empty_store, free_port
from zhuge.config import Settings
from zhuge.jobs.model import Principal
from zhuge.jobs.service import submit_job
from zhuge.jobs.states import JobState
from zhuge.platform import Platform

MEMBER = Principal(token_id="tok_t", tenant="t")  # who submits the jobs here


pytestmark = pytest.mark.slow


@pytest.fixture
def pg_url(postgres_url):
    return empty_store(postgres_url)


def wait_all(store, ids, timeout=60):
    deadline = time.monotonic() + timeout
    while True:
        jobs = [store.get(i) for i in ids]
        if all(j.is_terminal for j in jobs):
            return jobs
        assert time.monotonic() < deadline, [j.state for j in jobs]
        time.sleep(0.1)


def test_two_schedulers_on_one_postgres_never_run_a_job_twice(pg_url, tmp_path):
    def settings(name):
        return Settings(
            home=tmp_path / name,
            db_url=pg_url,
            workers=1,
            poll_seconds=0.05,
            lease_seconds=10,
            heartbeat_seconds=1,
        )

    with Platform(settings("a")) as a, Platform(settings("b")) as b:
        ids = [
            submit_job(
                a.store,
                principal=MEMBER,
                settings=a.settings,
                kind="sleep",
                params={"seconds": 0.05},
            )[0].id
            for _ in range(30)
        ]
        a.scheduler.notify()
        b.scheduler.notify()
        jobs = wait_all(a.store, ids)
        assert all(j.state is JobState.SUCCEEDED and j.attempt == 1 for j in jobs)
        owners = set()
        for job_id in ids:
            events = a.store.events(job_id)
            assert sum(e.to_state is JobState.SUCCEEDED for e in events) == 1
            # "claimed by <scheduler>" (+ ", chained on <worker>" when a worker took it)
            owners |= {e.message.split(",")[0] for e in events if e.to_state is JobState.RUNNING}
        assert owners == {f"claimed by {a.scheduler.name}", f"claimed by {b.scheduler.name}"}


def test_existing_dask_cluster_with_zhuge_workers(pg_url, tmp_path):
    port = free_port()
    scheduler = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "distributed.cli.dask_scheduler",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--no-dashboard",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    address = f"tcp://127.0.0.1:{port}"
    worker = subprocess.Popen(
        [sys.executable, "-m", "zhuge", "worker", address, "--nworkers", "2", "--gpus", "0"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        settings = Settings(home=tmp_path, db_url=pg_url, dask_address=address, poll_seconds=0.1)
        with Platform(settings, start_dask=False) as p:
            deadline = time.monotonic() + 60
            while len(p.executor.workers()) < 2:
                assert time.monotonic() < deadline, "zhuge workers did not join"
                time.sleep(0.2)
            assert all(w.resources == {"CPU": 1.0} for w in p.executor.workers())
            job, _ = submit_job(
                p.store,
                principal=MEMBER,
                settings=p.settings,
                kind="echo",
                params={"on": "cluster"},
            )
            p.scheduler.notify()
            (done,) = wait_all(p.store, [job.id])
            assert done.state is JobState.SUCCEEDED and done.result == {"on": "cluster"}
    finally:
        worker.terminate()
        scheduler.terminate()
        worker.wait(timeout=30)
        scheduler.wait(timeout=30)


def test_no_dask_without_an_address_is_a_clear_error(tmp_path):
    from zhuge.errors import ConfigError

    with pytest.raises(ConfigError, match="ZHUGE_DASK_ADDRESS"):
        Platform(Settings(home=tmp_path), start_dask=False).start()
