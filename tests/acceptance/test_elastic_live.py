"""Elastic capacity live: the embedded platform (``zhuge up``'s ``Platform``: store, scheduler,
a real local Dask cluster of worker processes) with pools of the ``local`` provider, on
SQLite and on PostgreSQL.

- A pool with ``min: 0`` grows to its ``max`` when jobs arrive and returns to 0 after its idle
  timeout (every decision in the autoscaler's log).
- A running job is never lost while its worker drains: the drained worker takes nothing new
  (a job submitted meanwhile, which it had room for, runs on a fresh worker), the job
  commits its first attempt, and the worker is retired once idle.
- A worker killed from outside re-queues its job without spending an attempt (the job has
  ``max_attempts: 1``, so a spent attempt would leave it dead).

Each pool asks for a custom resource of its own, so each test's jobs land in its pool. Jobs
are ``test-gate`` jobs that run until the test opens their gate: "still running" holds by
construction. Waits are for states, with timeouts that only bound a hang.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from tests.conftest import empty_store, wait_for
from tests.integration.platform.gate import GATE, Gate, LoadGateKinds, register_gate_kinds
from zhuge.config import Settings
from zhuge.jobs.elastic import autoscaler, costs
from zhuge.jobs.states import JobState, LostReason
from zhuge.platform import Platform

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

POOLS = """
pools:
  - {name: grow, resources: {CPU: 1, grow: 1}, min: 0, max: 2, idle_timeout: 1s,
     startup_s: 0, cooldown: {up: 0s, down: 0s}, stabilisation: {up: 0s, down: 0s},
     policy: demand, price_per_hour: {on_demand: 3.6}}
  - {name: drain, resources: {CPU: 2, drainme: 2}, min: 0, max: 2, idle_timeout: 1s,
     startup_s: 0, cooldown: {up: 0s, down: 0s}, stabilisation: {up: 0s, down: 0s},
     policy: demand}
  - {name: kill, resources: {CPU: 1, killme: 1}, min: 0, max: 1, idle_timeout: 1h,
     startup_s: 0, cooldown: {up: 0s, down: 0s}, stabilisation: {up: 0s, down: 0s},
     policy: demand}
"""


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def platform(request, tmp_path_factory):
    register_gate_kinds()
    folder = tmp_path_factory.mktemp("elastic")
    pools = folder / "pools.yaml"
    pools.write_text(POOLS)
    db_url = None
    if request.param == "postgres":
        db_url = empty_store(request.getfixturevalue("postgres_url"))
    settings = Settings(
        home=folder / "home",
        db_url=db_url,
        workers=1,
        pools_file=pools,
        autoscale_seconds=0.2,
        poll_seconds=0.05,
        chain_seconds=0,
        lease_seconds=6,
        heartbeat_seconds=0.5,
        retry_base_seconds=0.05,
    )
    with Platform(settings) as running:
        running.executor.client.register_plugin(LoadGateKinds())
        yield running


def provider(platform, pool: str):
    return wait_for(
        lambda: platform.scheduler.autoscaler.providers.get(pool),
        what=f"the autoscaler to make pool {pool}'s provider",
    )


def submit(platform, gate: Gate, resource: str, **kw):
    job, _ = platform.store.submit(
        tenant="t", kind=GATE, params=gate.params, resources={"CPU": 1.0, resource: 1.0}, **kw
    )
    platform.scheduler.notify()
    return job


def test_a_pool_grows_to_its_max_for_jobs_and_returns_to_zero_when_idle(platform, tmp_path):
    store, gate = platform.store, Gate(tmp_path / "gate")
    jobs = [submit(platform, gate, "grow") for _ in range(3)]
    grow = provider(platform, "grow")
    # three one-worker jobs against max 2: two workers, two jobs running, one queued
    running = wait_for(
        lambda: [store.get(j.id) for j in jobs],
        until=lambda js: sum(j.state is JobState.RUNNING and j.worker is not None for j in js) == 2,
        what="two grow jobs running",
    )
    assert len(grow.workers()) == 2
    assert {j.worker for j in running if j.worker} == set(grow.workers())
    assert sum(j.state is JobState.QUEUED for j in running) == 1
    gate.open()
    done = wait_for(
        lambda: [store.get(j.id) for j in jobs],
        until=lambda js: all(j.is_terminal for j in js),
        what="every grow job to finish",
    )
    assert [j.state for j in done] == [JobState.SUCCEEDED] * 3
    wait_for(lambda: grow.workers(), until=lambda w: w == [], what="pool grow back at 0")
    wait_for(
        lambda: [u for u in costs.uptimes(store) if u.pool == "grow"],
        until=lambda ups: len(ups) >= 2 and all(u.ended_at is not None for u in ups),
        what="the grow workers' up-time closed",
    )
    sizes = [(d["from_size"], d["to_size"])
             for d in reversed(autoscaler.decisions(store, pool="grow", changes=True))]  # fmt: skip
    assert max(to for _, to in sizes) == 2 and sizes[-1][1] == 0
    # what they cost: each job's attempt was recorded in pool grow
    usage = [a for a in costs.attempts(store) if a.job_id in {j.id for j in jobs}]
    assert {a.pool for a in usage} == {"grow"} and len(usage) == 3


def test_a_running_job_is_never_lost_while_its_worker_drains(platform, tmp_path):
    store = platform.store
    first, second = Gate(tmp_path / "first"), Gate(tmp_path / "second")
    job = submit(platform, first, "drainme")
    pool = provider(platform, "drain")
    started = wait_for(
        lambda: store.get(job.id),
        until=lambda j: j.state is JobState.RUNNING and j.worker is not None,
        what="the drain job to start",
    )
    draining = started.worker
    autoscaler.drain(store, draining, "drain", "test: drain a busy worker")
    later = submit(platform, second, "drainme")
    moved = wait_for(
        lambda: store.get(later.id),
        until=lambda j: j.state is JobState.RUNNING and j.worker is not None,
        what="the later job to start on another worker",
    )
    # the draining worker had room for it (2 of each, 1 held), but took nothing new
    assert moved.worker != draining
    assert store.get(job.id).state is JobState.RUNNING  # still running where it was
    assert draining in pool.workers()  # not retired while it holds a job
    first.open()
    second.open()
    done = wait_for(
        lambda: store.get(job.id), until=lambda j: j.is_terminal, what="the drained job"
    )
    assert (done.state, done.attempt, done.lost, done.failures) == (JobState.SUCCEEDED, 1, 0, 0)
    assert not [e for e in store.events(job.id) if e.to_state is JobState.LOST]
    wait_for(
        lambda: pool.workers(),
        until=lambda w: draining not in w,
        what="the drained worker to be retired once idle",
    )
    assert wait_for(lambda: store.get(later.id), until=lambda j: j.is_terminal,
                    what="the later job").state is JobState.SUCCEEDED  # fmt: skip


def test_a_worker_killed_from_outside_requeues_its_job_without_spending_an_attempt(
    platform, tmp_path
):
    store, gate = platform.store, Gate(tmp_path / "gate")
    job = submit(platform, gate, "killme", max_attempts=1)
    provider(platform, "kill")
    started = wait_for(
        lambda: store.get(job.id),
        until=lambda j: j.state is JobState.RUNNING and j.worker is not None,
        what="the kill job to start",
    )
    pid = platform.executor.client.run(os.getpid, workers=[started.worker])[started.worker]
    os.kill(pid, signal.SIGKILL)  # a spot reclaim, or an operator's kill -9
    requeued = wait_for(
        lambda: store.events(job.id),
        until=lambda es: any(e.to_state is JobState.LOST for e in es),
        what="the killed worker's attempt to be lost",
    )
    lost = next(e for e in requeued if e.to_state is JobState.LOST)
    assert lost.reason in (LostReason.WORKER_DIED, LostReason.LEASE_LOST)
    gate.open()
    done = wait_for(
        lambda: store.get(job.id), until=lambda j: j.is_terminal, what="the killed job to rerun"
    )
    assert (done.state, done.failures) == (JobState.SUCCEEDED, 0)
    assert done.attempt >= 2 and done.worker != started.worker
    assert Path(gate.path).exists()


ONE_BURST = """
pools:
  - {name: burst, resources: {CPU: 1, burst: 1}, min: 0, max: 1, idle_timeout: 1s,
     startup_s: 0, cooldown: {up: 0s, down: 0s}, stabilisation: {up: 0s, down: 0s},
     policy: demand, price_per_hour: {on_demand: 3.6}}
"""


def test_zhuge_up_scales_a_pool_from_zero_and_back_seen_through_the_cli(tmp_path):
    """The same on a real `zhuge up` subprocess, driven and read through the CLI only."""
    from tests.acceptance.test_up import Server

    pools = tmp_path / "pools.yaml"
    pools.write_text(ONE_BURST)
    server = Server(tmp_path / "home")
    server.home.mkdir()
    server.env.update({"ZHUGE_POOLS_FILE": str(pools), "ZHUGE_AUTOSCALE_SECONDS": "0.2"})
    server.start()
    try:
        gate = Gate(tmp_path / "gate")
        job_id = server.cli_json(
            "submit", GATE, "-p", f"path={gate.path}", "--resource", "burst=1"
        )["id"]

        def burst_workers() -> int:
            listed = server.cli_json("pools", "ls")
            return next(p["workers"] for p in listed["pools"] if p["spec"]["name"] == "burst")

        wait_for(
            lambda: server.job(job_id),
            until=lambda j: j["state"] == "running" and j["worker"],
            what="the burst job to run on a new burst worker",
        )
        assert burst_workers() == 1
        gate.open()
        wait_for(lambda: server.job(job_id), until=lambda j: j["state"] == "succeeded",
                 what="the burst job to succeed")  # fmt: skip
        wait_for(burst_workers, until=lambda n: n == 0, what="pool burst back at 0")
        log = server.cli_json("autoscaler", "log", "--pool", "burst", "--changes")
        assert [(d["from_size"], d["to_size"]) for d in reversed(log)] == [(0, 1), (1, 0)]
        costs = server.cli_json("costs", "--by", "pool")
        (line,) = [line for line in costs["lines"] if line["key"] == "burst"]
        assert line["attempts"] == 1 and line["cost"] > 0
        assert costs["pools"]["burst"]["billed_s"] >= 60  # the billing minimum
    finally:
        if server.proc is not None and server.proc.poll() is None:
            server.kill_all()  # the server and every worker it started
