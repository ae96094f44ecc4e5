"""Scale-out shapes: several schedulers on one PostgreSQL, and an existing Dask cluster whose
workers were started with `zhuge worker`."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import empty_store, free_port, wait_for
from tests.integration.platform.gate import GATE, Gate, LoadGateKinds
from zhuge.config import Settings
from zhuge.hardware import cpu_count
from zhuge.jobs.model import Principal
from zhuge.jobs.service import submit_job
from zhuge.jobs.states import JobState
from zhuge.platform import Platform

MEMBER = Principal(token_id="tok_t", tenant="t")  # who submits the jobs here


pytestmark = pytest.mark.slow


@pytest.fixture
def pg_url(postgres_url):
    return empty_store(postgres_url)


def wait_all(store, ids):
    return wait_for(
        lambda: [store.get(i) for i in ids],
        until=lambda jobs: all(j.is_terminal for j in jobs),
        what=f"jobs {ids[0]}..{ids[-1]} to finish",
    )


def test_two_schedulers_on_one_postgres_never_run_a_job_twice(pg_url, tmp_path, gate_kinds):
    def settings(name):
        return Settings(
            home=tmp_path / name,
            db_url=pg_url,
            workers=1,
            poll_seconds=0.05,
            lease_seconds=30,
            heartbeat_seconds=0.5,
        )

    with Platform(settings("a")) as a, Platform(settings("b")) as b:
        for p in (a, b):
            p.executor.client.register_plugin(LoadGateKinds())
        gate = Gate(tmp_path / "gate")
        whole = {"CPU": float(cpu_count())}  # one embedded worker offers every core
        gated = [
            submit_job(
                a.store,
                principal=MEMBER,
                settings=a.settings,
                kind=GATE,
                params=gate.params,
                resources=whole,
            )[0]
            for _ in "ab"
        ]
        a.scheduler.notify()
        b.scheduler.notify()
        # Each scheduler has one worker, and a gated job holds all of it: both run at once
        # only when each scheduler claimed one of them.
        wait_for(
            lambda: [a.store.get(j.id).state for j in gated],
            until=lambda states: states == [JobState.RUNNING] * 2,
            what="both gated jobs to be claimed",
        )
        claims = {
            e.message.split(";")[0]  # "claimed by S; placed on W"
            for job in gated
            for e in a.store.events(job.id)
            if e.to_state is JobState.RUNNING
        }
        assert claims == {f"claimed by {a.scheduler.name}", f"claimed by {b.scheduler.name}"}
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
        gate.open()  # now both schedulers' workers race for the queue
        jobs = wait_all(a.store, [j.id for j in gated] + ids)
        assert all(j.state is JobState.SUCCEEDED and j.attempt == 1 for j in jobs)
        for job in jobs:
            events = a.store.events(job.id)
            assert sum(e.to_state is JobState.SUCCEEDED for e in events) == 1
            assert sum(e.to_state is JobState.RUNNING for e in events) == 1  # claimed once


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
        [
            sys.executable,
            "-m",
            "zhuge",
            "worker",
            address,
            "--nworkers",
            "2",
            "--cpus",
            "1",
            "--memory",
            "2",
            "--gpus",
            "0",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        settings = Settings(home=tmp_path, db_url=pg_url, dask_address=address, poll_seconds=0.1)
        with Platform(settings, start_dask=False) as p:
            wait_for(
                lambda: p.executor.workers(),
                until=lambda workers: len(workers) == 2,
                what="the two zhuge workers to join",
                interval=0.2,
            )
            assert all(w.resources == {"CPU": 1.0, "memory_gb": 2.0} for w in p.executor.workers())
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
        worker.wait(timeout=120)
        scheduler.wait(timeout=120)


def test_no_dask_without_an_address_is_a_clear_error(tmp_path):
    from zhuge.errors import ConfigError

    with pytest.raises(ConfigError, match="ZHUGE_DASK_ADDRESS"):
        Platform(Settings(home=tmp_path), start_dask=False).start()
