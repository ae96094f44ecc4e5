"""Workers on other hosts: a hub (private PostgreSQL, a TLS-only Dask scheduler, ``zhuge up``
and an S3 protocol server for artifacts) and two worker hosts, each a network namespace on a
veth pair of its own (``hosts.py``). Dask traffic is TLS with the certificates
``scripts/make-dask-certs.sh`` makes.

A job that ignores stop requests until a gate opens (``chaos-ledger`` with ``gate``) starts on
one worker host; that host's link is cut; once the lease runs out the job runs again on the
other host; the link comes back and the gate opens: both executions run to their end (the
ledger has both), the store committed the second, and the cut-off worker's late commit was
refused. Every step waits for a condition, none for a time."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from distributed import Client as DaskClient

from tests.chaos import hosts, postgres
from tests.chaos.driver import REPO, Proc
from tests.chaos.ledger_kind import LEDGER, LEDGER_ENV, MODULE, UP_WITH_LEDGER, read_ledger
from tests.conftest import free_port, wait_for
from zhuge.client import Client
from zhuge.config import Settings
from zhuge.jobs import dask_tls, schema

LEASE_SECONDS = 4.0
pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.timeout(600)]


@pytest.fixture
def hub_and_workers(tmp_path):
    why = hosts.available() or (None if postgres.binaries() else "no initdb/pg_ctl")
    if why:
        pytest.skip(f"hosts cannot be built here: {why}")
    net = hosts.Hosts()
    procs: list[Proc] = []
    try:
        net.build(2)
        yield net, procs, tmp_path
    finally:
        for p in procs:
            p.kill()
        net.destroy()


def _certs(folder: Path) -> dict[str, str]:
    subprocess.run(
        ["bash", str(REPO / "scripts" / "make-dask-certs.sh"), str(folder)],
        check=True,
        capture_output=True,
    )
    return {
        "ZHUGE_DASK_TLS_CA": str(folder / "ca.pem"),
        "ZHUGE_DASK_TLS_CERT": str(folder / "node.pem"),
        "ZHUGE_DASK_TLS_KEY": str(folder / "node-key.pem"),
    }


def test_a_cut_off_worker_host_loses_its_job_to_the_other_and_its_late_commit_is_refused(
    hub_and_workers,
):
    net, procs, tmp = hub_and_workers
    hub = hosts.HUB_IP
    certs = _certs(tmp / "certs")
    tls = dask_tls.security(Settings.from_env(certs))
    ledger = tmp / "ledger"
    ledger.mkdir()
    pg = postgres.PrivatePostgres(tmp / "pg", host=hub, netns=net.hub).start()
    try:
        s3_port, dask_port, api_port = free_port(), free_port(), free_port()
        base = {k: v for k, v in os.environ.items() if not k.startswith(("ZHUGE_", "DASK_"))}
        env = {
            **base,
            **certs,
            "PYTHONPATH": str(REPO),
            "ZHUGE_DB_URL": pg.url,
            "ZHUGE_ARTIFACTS_URL": "s3://zhuge-hosts/artifacts",
            "AWS_ACCESS_KEY_ID": "test",
            "AWS_SECRET_ACCESS_KEY": "test",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_ENDPOINT_URL": f"http://{hub}:{s3_port}",
            "ZHUGE_LEASE_SECONDS": str(LEASE_SECONDS),
            "ZHUGE_HEARTBEAT_SECONDS": "1",
            "ZHUGE_CHAIN_SECONDS": "0",
            LEDGER_ENV: str(ledger),
        }
        on_hub = net.prefix(net.hub)

        def start(name: str, argv: list[str], **extra: str) -> Proc:
            proc = Proc(name, argv, {**env, **extra}, tmp / f"{name}.log")
            proc.start()
            procs.append(proc)
            return proc

        start("s3", [*on_hub, sys.executable, "-m", "moto.server", "-H", hub, "-p", str(s3_port)])
        wait_for(lambda: _answers(f"http://{hub}:{s3_port}"), what="the S3 server", interval=0.2)
        import boto3

        s3 = boto3.client(
            "s3",
            endpoint_url=f"http://{hub}:{s3_port}",
            aws_access_key_id="test",
            aws_secret_access_key="test",
            region_name="us-east-1",
        )
        s3.create_bucket(Bucket="zhuge-hosts")
        start(
            "dask-scheduler",
            [*on_hub, sys.executable, "-m", "distributed.cli.dask_scheduler", "--host", hub,
             "--port", str(dask_port), "--protocol", "tls", "--no-dashboard",
             "--tls-ca-file", certs["ZHUGE_DASK_TLS_CA"], "--tls-cert",
             certs["ZHUGE_DASK_TLS_CERT"], "--tls-key", certs["ZHUGE_DASK_TLS_KEY"]],
        )  # fmt: skip
        address = f"tls://{hub}:{dask_port}"
        start(
            "zhuge-up",
            [*on_hub, *UP_WITH_LEDGER, "--host", hub, "--port", str(api_port), "--no-dask"],
            ZHUGE_HOME=str(tmp / "home"),
            ZHUGE_DASK_ADDRESS=address,
        )
        url = f"http://{hub}:{api_port}"
        wait_for(lambda: _answers(f"{url}/healthz"), what="zhuge up", timeout=180, interval=0.3)
        for name in net.workers:
            start(
                name,
                [*net.prefix(name), sys.executable, "-m", "zhuge", "worker", address,
                 "--nworkers", "1", "--cpus", "1", "--memory", "1", "--gpus", "0"],
                DASK_DISTRIBUTED__WORKER__PRELOAD=MODULE,
            )  # fmt: skip
        token = (tmp / "home" / "token").read_text().strip()
        engine = sa.create_engine(pg.url)
        with Client(url, token) as c, contextlib.closing(_Disposer(engine)):
            ready = wait_for(
                c.readiness,
                until=lambda r: r["workers"] == 2 and r["ready"],
                what="both worker hosts to be seen, and zhuge up ready",
                timeout=180,
                interval=0.5,
            )
            assert len(ready["schedulers"]) == 1  # zhuge up's loop beats
            job_id = c.submit(LEDGER, {"gate": "go"}, max_lost=5).id

            def job() -> sa.Row:
                with engine.connect() as conn:
                    return conn.execute(
                        sa.select(schema.jobs).where(schema.jobs.c.id == job_id)
                    ).one()

            first = wait_for(
                job,
                until=lambda j: j.state == "running" and j.worker and _started(ledger, job_id, 1),
                what="the job's first execution to start",
                timeout=240,
                interval=0.2,
            )
            victim = net.host_of(first.worker)
            assert victim in net.workers, first.worker
            net.cut(victim)
            second = wait_for(
                job,
                until=lambda j: j.attempt >= 2 and j.state == "running" and j.worker,
                what="the job to run again once the cut-off host's lease ran out",
                timeout=120,
                interval=0.2,
            )
            assert net.host_of(second.worker) not in (victim, None), second.worker
            net.restore(victim)
            (ledger / "go").touch()  # both executions run to their end now
            done = wait_for(
                job,
                until=lambda j: j.state == "succeeded",
                what="the job to succeed",
                timeout=120,
                interval=0.2,
            )
            ends = wait_for(
                lambda: [e for e in read_ledger(ledger) if e["phase"] == "end"],
                until=lambda e: {x["attempt"] for x in e} == {1, second.attempt},
                what="the cut-off execution to end too, once its link is back",
                timeout=120,
                interval=0.2,
            )
            # ... and its late commit to have been tried: its task ends only after it. Cut off,
            # the Dask worker may also have given up on its scheduler and be closing down: its
            # process then ends once the task's thread has.
            victim_proc = next(p for p in procs if p.name == victim)
            with DaskClient(address, security=tls, timeout="30s", set_as_default=False) as dc:
                wait_for(
                    lambda: (
                        not victim_proc.alive()
                        or not dc.run_on_scheduler(_processing, address=first.worker)
                    ),
                    what="the cut-off worker's task to end",
                    timeout=120,
                    interval=0.3,
                )
            done = job()
            assert done.state == "succeeded" and done.attempt == second.attempt
            committed = [e for e in ends if e["nonce"] == done.result["nonce"]]
            assert [e["attempt"] for e in committed] == [second.attempt]
            with engine.connect() as conn:
                events = conn.execute(
                    sa.select(schema.job_events).where(schema.job_events.c.job_id == job_id)
                ).all()
            assert [e.attempt for e in events if e.to_state == "succeeded"] == [second.attempt]
            assert any(e.attempt == 1 and e.reason == "lease_lost" for e in events), events
            assert done.failures == 0
            # artifacts went to the S3 server, not the shared file system
            keys = [o["Key"] for o in s3.list_objects_v2(Bucket="zhuge-hosts").get("Contents", [])]
            assert f"artifacts/jobs/{job_id}/attempt-{second.attempt}/execution.json" in keys
    finally:
        for p in reversed(procs):
            p.kill()
        procs.clear()
        pg.stop()


class _Disposer:
    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine

    def close(self) -> None:
        self.engine.dispose()


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code < 500
    except httpx.HTTPError:
        return False


def _started(ledger: Path, job_id: int, attempt: int) -> bool:
    return any(
        e["job"] == job_id and e["attempt"] == attempt and e["phase"] == "start"
        for e in read_ledger(ledger)
    )


def _processing(dask_scheduler, address: str) -> int:  # type: ignore[no-untyped-def]
    """Tasks the Dask scheduler has on the worker at ``address`` (0 once it left)."""
    worker = dask_scheduler.workers.get(address)
    return 0 if worker is None else len(worker.processing)
