"""Admission with real stores and workers: fractional GPUs on a worker advertising a fake
GPU, and quotas that hold while two schedulers and chains admit at once on PostgreSQL.

Nothing here is timed: the tests wait for states, and the concurrency test checks an
invariant after every admission of every thread."""

from __future__ import annotations

import threading

import dask
import pytest
from distributed import LocalCluster

from tests.conftest import empty_store, wait_for
from tests.integration.platform.gate import GATE, Gate, LoadGateKinds
from zhuge.config import Settings
from zhuge.jobs.model import Worker
from zhuge.jobs.states import JobState
from zhuge.jobs.store import JobStore
from zhuge.platform import Platform


@pytest.fixture
def fake_gpu_cluster():
    """One worker process with two threads that advertises CPU=2 and one (fake) GPU; not
    daemonic, as ``zhuge worker`` starts them, so attempts can be isolated in a child."""
    with (
        dask.config.set({"distributed.worker.daemon": False}),
        LocalCluster(
            n_workers=1,
            threads_per_worker=2,
            processes=True,
            resources={"CPU": 2.0, "GPU": 1.0},
            host="127.0.0.1",
            dashboard_address="127.0.0.1:0",
        ) as cluster,
    ):
        yield cluster


def test_two_half_gpu_jobs_share_one_gpu_at_once_and_a_whole_gpu_job_waits(
    fake_gpu_cluster, tmp_path, gate_kinds
):
    settings = Settings(
        home=tmp_path / "home",
        dask_address=fake_gpu_cluster.scheduler_address,
        poll_seconds=0.05,
        lease_seconds=30,
        heartbeat_seconds=0.2,
        chain_seconds=0,
    )
    with Platform(settings, start_dask=False) as platform:
        platform.executor.client.register_plugin(LoadGateKinds())
        store = platform.store
        gate = Gate(tmp_path / "gate")
        halves = [
            store.submit(tenant="t", kind=GATE, params=gate.params, resources={"GPU": 0.5})[0]
            for _ in range(2)
        ]
        whole, _ = store.submit(tenant="t", kind="echo", params={}, resources={"GPU": 1.0})
        platform.scheduler.notify()
        # Both halves started on the one GPU and hold it together: each is inside its gate,
        # which stays shut until the test opens it, so they overlap in time.
        started = wait_for(
            lambda: [store.get(j.id) for j in halves],
            until=lambda jobs: all(j.started_at is not None for j in jobs),
            what="both half-GPU jobs to start",
        )
        assert {tuple(j.assigned_workers) for j in started} == {(started[0].worker,)}
        assert all(j.state is JobState.RUNNING for j in started)
        # the whole-GPU job waits, and says why, while the halves hold the device
        waiting = wait_for(
            lambda: store.get(whole.id),
            until=lambda j: j.pending_reason is not None,
            what="the whole-GPU job's reason",
        )
        assert waiting.state is JobState.QUEUED and waiting.attempt == 0
        assert "GPU=1" in waiting.pending_reason
        gate.open()
        done = wait_for(
            lambda: [store.get(j.id) for j in [*halves, whole]],
            until=lambda jobs: all(j.is_terminal for j in jobs),
            what="every job to finish",
        )
        assert [j.state for j in done] == [JobState.SUCCEEDED] * 3, [j.error for j in done]
        # the whole-GPU job started only once both halves had finished
        assert done[2].started_at >= max(j.finished_at for j in done[:2])


QUOTAS = """
resources: [CPU]
cohorts:
  research: {tenants: [a, b]}
tenants:
  a: {nominal: {CPU: 4}, borrowing_limit: {CPU: 2}}
  b: {nominal: {CPU: 2}, lending_limit: {CPU: 1}}
"""


def _held(store: JobStore) -> dict[str, float]:
    held: dict[str, float] = {}
    for job in store.list(state=JobState.RUNNING, limit=10_000):
        held[job.tenant] = held.get(job.tenant, 0.0) + job.resources.get("CPU", 0.0) * job.gang
    return held


def test_quotas_hold_while_two_schedulers_and_chains_admit_at_once(postgres_url):
    """Two schedulers' turns and two workers' chains, on two connections pools each, admit
    from one queue at the same time; the admission lock makes each see the others' claims,
    so no tenant ever holds more than its nominal plus what it may borrow."""
    url = empty_store(postgres_url)
    stores = [JobStore.open(url) for _ in range(4)]
    try:
        first = stores[0]
        first.queues.apply(QUOTAS)
        workers = [Worker(f"w{i}", {"CPU": 2.0}, 0.0) for i in range(5)]  # 10 CPU in all
        first.record_workers("census", workers)
        for tenant in ("a", "b", "c"):
            for _ in range(12):
                first.submit(tenant=tenant, kind="echo", params={})
        breaches: list[str] = []
        lock = threading.Lock()

        def check() -> None:
            held = _held(first)
            # a never beyond its nominal plus its borrowing limit; all within the cluster
            if held.get("a", 0) > 4 + 2 or sum(held.values()) > 10:
                with lock:
                    breaches.append(repr(held))

        def schedule(store: JobStore, name: str) -> None:
            for _ in range(15):
                store.record_workers("census", workers)
                store.admit(owner=name, workers=workers, lease_seconds=300)
                check()

        def chain(store: JobStore, worker: str) -> None:
            for _ in range(15):
                store.claim_next(
                    owner="chain", worker=worker, lease_seconds=300, resources={"CPU": 1.0}
                )
                check()

        threads = [
            threading.Thread(target=schedule, args=(stores[0], "s1")),
            threading.Thread(target=schedule, args=(stores[1], "s2")),
            threading.Thread(target=chain, args=(stores[2], "w0")),
            threading.Thread(target=chain, args=(stores[3], "w1")),
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert breaches == []
        held = _held(first)
        # the cluster is full; a and b (queued work beyond their nominal) hold at least
        # their nominal, c (no nominal) only shares the 4 CPU no nominal claims
        assert sum(held.values()) == 10
        assert 4 <= held["a"] <= 6 and held["b"] >= 2
        assert held.get("c", 0) <= 10 - 4 - 2
        # every running job sits on a worker of the census, within that worker's 2 CPUs
        per_worker: dict[str, float] = {}
        for job in first.list(state=JobState.RUNNING, limit=10_000):
            for w in job.assigned_workers:
                per_worker[w] = per_worker.get(w, 0.0) + job.resources["CPU"]
        assert set(per_worker) <= {w.address for w in workers}
        assert max(per_worker.values()) <= 2.0
    finally:
        for s in stores:
            s.dispose()


def test_two_servers_creating_the_platform_tenant_at_once_both_start(postgres_url):
    """``ensure_tenant`` looks, then inserts: another server's insert between the two (two
    ``zhuge up`` starting at once on a fresh database) must not stop this one."""
    import sqlalchemy as sa

    from zhuge.jobs import schema

    url = empty_store(postgres_url)
    store = JobStore.open(url)
    other = sa.create_engine(url)
    raced: list[str] = []

    @sa.event.listens_for(store.engine, "before_cursor_execute")
    def _other_server_first(conn, cursor, statement, *args):  # type: ignore[no-untyped-def]
        if statement.startswith("INSERT INTO tenants") and not raced:
            raced.append(statement)
            with other.begin() as c:  # commits before this insert runs
                c.execute(schema.tenants.insert().values(name="default", created_at=0.0))

    try:
        store.ensure_tenant("default")
        assert raced  # the other server's insert did come first
        with store.engine.connect() as conn:
            names = conn.execute(sa.select(schema.tenants.c.name)).scalars().all()
        assert names == ["default"]
    finally:
        store.dispose()
        other.dispose()
