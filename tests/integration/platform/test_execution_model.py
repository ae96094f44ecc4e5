"""The worker side of the execution model: an attempt stopped at its ``timeout_s``, one that
yields when admission preempts it and resumes from its checkpoint, one isolated in a child
process that is killed alone, and Dask workers that advertise their share and run what is
pinned to them.

Nothing is raced: clocks move when the test moves them, a job that must still run waits at a
gate or loops until it is stopped, and every wait is for a state (``wait_for``), its timeout
only bounding a hang.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Any

import psutil
import pytest
import sqlalchemy as sa
from pydantic import Field

from tests.conftest import wait_for
from tests.integration.platform.conftest import FakeClock
from tests.integration.platform.gate import GATE, MAP, Gate, LoadGateKinds
from zhuge.jobs import schema
from zhuge.jobs.context import JobContext
from zhuge.jobs.executor import DaskExecutor
from zhuge.jobs.kinds import KindParams, kind
from zhuge.jobs.model import Worker
from zhuge.jobs.runner import STOP_GRACE_S, AttemptSpec, _worker_name, run_attempt
from zhuge.jobs.states import JobState
from zhuge.jobs.store import store_for

RESUME = "test-resume"
STUBBORN = "test-stubborn"
ISOLATED = "test-isolated"
DEAF = "test-deaf"
HERE = {"CPU": 2.0, "memory_gb": 16.0}
"""What this process offers as a worker when the test runs attempts in it (no Dask)."""


class MarkerParams(KindParams):
    marker: str = Field("", description="A file the job writes its pid to once running.")


@kind(RESUME, params=MarkerParams, description="Tests only: checkpoints, then waits.")
def run_resume(params: MarkerParams, ctx: JobContext) -> dict[str, Any]:
    """Each attempt adds itself to the checkpoint; the first then runs until stopped."""
    state = ctx.load_checkpoint() or {"attempts": []}
    state["attempts"].append(ctx.attempt)
    ctx.save_checkpoint(state)
    if len(state["attempts"]) == 1:
        while True:
            ctx.sleep(0.02)  # raises JobPreempted once admission asks it to yield
    return state


@kind(STUBBORN, params=MarkerParams, description="Tests only: ignores every stop.")
def run_stubborn(params: MarkerParams, ctx: JobContext) -> None:
    ctx.log(f"stubborn in {os.getpid()}")
    Path(params.marker).write_text(str(os.getpid()))
    while True:
        time.sleep(0.05)  # never looks at its stop flag: only a kill ends it


class DeafParams(KindParams):
    path: str = Field(description="The job returns once this file exists, not before.")


@kind(DEAF, params=DeafParams, description="Tests only: never looks at its stop flag.")
def run_deaf(params: DeafParams, ctx: JobContext) -> dict[str, Any]:
    while not Path(params.path).exists():
        time.sleep(0.02)  # not ctx.sleep: deaf to every stop
    return {"pid": os.getpid()}


class IsolatedParams(KindParams):
    allocate_gb: float = 0.0
    fail: bool = False


@kind(ISOLATED, params=IsolatedParams, description="Tests only: reports where it ran.")
def run_isolated_probe(params: IsolatedParams, ctx: JobContext) -> dict[str, Any]:
    ctx.log(f"isolated in {os.getpid()}")
    ctx.progress(1, 2, "half way")
    if params.fail:
        from zhuge.errors import InvalidRequest

        raise InvalidRequest("no such column: y")
    if params.allocate_gb:
        bytearray(int(params.allocate_gb * 2**30))
    return {"pid": os.getpid(), "fraction": os.environ.get("ZHUGE_GPU_MEMORY_FRACTION")}


class CountingClock(FakeClock):
    """A fake clock that says how often it was read: the heartbeat's first reading starts an
    attempt's time limit, so a test moves the clock only once it has been read."""

    def __init__(self) -> None:
        super().__init__()
        self.reads = 0

    def __call__(self) -> float:
        self.reads += 1
        return super().__call__()


def attempt_of(db_url, artifacts, store, *, resources=None, **spec: Any) -> AttemptSpec:
    """Claim the head of the queue as scheduler "s" would, and the spec it hands to Dask."""
    store.record_workers("s", [Worker(_worker_name(), HERE, 0.0)])
    (job,) = wait_for(
        lambda: store.claim(limit=1, owner="s", lease_seconds=30),
        what="the job to be claimed (past any backoff)",
    )
    return AttemptSpec(
        db_url,
        artifacts,
        job.id,
        job.attempt,
        lease_seconds=30,
        heartbeat_seconds=spec.pop("heartbeat_seconds", 0.05),
        owner="s",
        resources=resources or {"CPU": 1.0},
        **spec,
    )


def in_thread(spec: AttemptSpec, **kwargs: Any) -> tuple[threading.Thread, dict[str, Any]]:
    outcome: dict[str, Any] = {}
    runner = threading.Thread(
        target=lambda: outcome.update(run_attempt(spec, **kwargs)), daemon=True
    )
    runner.start()
    return runner, outcome


def ended(runner: threading.Thread, outcome: dict[str, Any]) -> dict[str, Any]:
    wait_for(lambda: not runner.is_alive(), what="the attempt to end")
    return outcome


@pytest.fixture
def jobs(db_url, gate_kinds):
    store = store_for(db_url, retry_base_seconds=0.01, retry_max_seconds=0.02)
    return store


def test_an_attempt_past_its_timeout_fails_and_is_retried(jobs, db_url, tmp_path):
    gate = Gate(tmp_path / "gate")  # never opened: only the timeout ends the job
    job, _ = jobs.submit(tenant="t", kind=GATE, params=gate.params, timeout_s=30)
    clock = CountingClock()
    runner, outcome = in_thread(attempt_of(db_url, tmp_path.as_uri(), jobs), clock=clock)
    wait_for(lambda: clock.reads, what="the heartbeat to start timing the attempt")
    clock.advance(29.9)
    assert jobs.get(job.id).state is JobState.RUNNING  # not yet: 29.9 s of 30
    clock.advance(0.1)
    assert ended(runner, outcome)["outcome"] == "timed_out"
    failed = jobs.get(job.id)
    assert failed.state is JobState.QUEUED  # retried, as any failure with attempts left
    assert (failed.failures, failed.lost) == (1, 0)
    assert failed.error == "JobTimedOut: timed out after 30s (timeout_s)"


def test_an_attempt_deaf_to_its_timeout_is_failed_for_it_after_the_grace(jobs, db_url, tmp_path):
    """Code in the worker's process that never looks at its stop flag cannot be stopped, but
    its time limit still bounds the attempt: STOP_GRACE_S after asking it to stop, its
    heartbeat fails it (a timeout, retried), renews its lease no more, and the result it
    returns later is refused."""
    gate = Gate(tmp_path / "gate")
    job, _ = jobs.submit(tenant="t", kind=DEAF, params={"path": str(gate.path)}, timeout_s=30)
    clock = CountingClock()
    runner, outcome = in_thread(attempt_of(db_url, tmp_path.as_uri(), jobs), clock=clock)
    wait_for(lambda: clock.reads, what="the heartbeat to start timing the attempt")
    clock.advance(30)
    wait_for(
        lambda: [x.line for x in jobs.logs(job.id) if "asked to stop" in x.line],
        what="its time limit to ask it to stop",
    )
    clock.advance(STOP_GRACE_S - 0.1)
    assert jobs.get(job.id).state is JobState.RUNNING  # it still has its grace
    clock.advance(0.1)
    failed = wait_for(
        lambda: jobs.get(job.id),
        until=lambda j: j.state is JobState.QUEUED,
        what="the heartbeat to fail it",
    )
    assert (failed.failures, failed.lost, failed.attempt) == (1, 0, 1)
    assert "did not stop within 30s: failed for it" in failed.error
    gate.open()  # its code returns at last: the result is refused
    assert ended(runner, outcome)["outcome"] != "succeeded"
    after = jobs.get(job.id)
    assert (after.state, after.attempt, after.result) == (JobState.QUEUED, 1, None)


def test_the_spec_timeout_wins_over_the_kinds_default(jobs, db_url, tmp_path):
    gate = Gate(tmp_path / "gate")
    job, _ = jobs.submit(tenant="t", kind=GATE, params=gate.params, max_attempts=1)
    clock = CountingClock()
    spec = attempt_of(db_url, tmp_path.as_uri(), jobs, timeout_s=5)
    runner, outcome = in_thread(spec, clock=clock)
    wait_for(lambda: clock.reads, what="the heartbeat to start timing the attempt")
    clock.advance(5)
    assert ended(runner, outcome)["outcome"] == "timed_out"
    dead = jobs.get(job.id)
    assert (dead.state, dead.failures) == (JobState.DEAD, 1)
    assert "timed out after 5s (timeout_s)" in dead.error


def ask_to_yield(store, job_id: int) -> None:
    """What admission does to reclaim a job's resources (the scheduler's side)."""
    with store.engine.begin() as conn:
        conn.execute(
            sa.update(schema.jobs)
            .where(schema.jobs.c.id == job_id)
            .values(preempt_requested_at=store.clock())
        )


def test_a_preempted_attempt_is_lost_not_failed_and_resumes_from_its_checkpoint(
    jobs, db_url, tmp_path
):
    job, _ = jobs.submit(tenant="t", kind=RESUME, params={}, max_attempts=1)
    runner, outcome = in_thread(attempt_of(db_url, tmp_path.as_uri(), jobs))
    checkpoint = tmp_path / "jobs" / str(job.id) / "checkpoint" / "state.pkl"
    wait_for(checkpoint.exists, what="the first attempt's checkpoint")
    ask_to_yield(jobs, job.id)
    assert ended(runner, outcome)["outcome"] == "preempted"
    lost = jobs.get(job.id)
    assert lost.state is JobState.QUEUED
    assert lost.failures == 0  # max_attempts=1 and still queued: a preemption costs nothing
    assert lost.error.startswith("attempt lost (preempted): preempted: ")
    # the next attempt finds what the first saved
    second = attempt_of(db_url, tmp_path.as_uri(), jobs)
    assert second.attempt == job.attempt + 2  # claimed twice: attempts 1 and 2
    assert run_attempt(second)["outcome"] == "succeeded"
    done = jobs.get(job.id)
    assert (done.state, done.failures) == (JobState.SUCCEEDED, 0)
    assert done.result == {"attempts": [1, 2]}


def test_an_isolated_attempt_runs_in_its_own_process_and_reports_back(jobs, db_url, tmp_path):
    job, _ = jobs.submit(
        tenant="t", kind=ISOLATED, params={}, resources={"CPU": 1.0, "memory_gb": 4.0}
    )
    spec = attempt_of(db_url, tmp_path.as_uri(), jobs, resources={"CPU": 1.0, "memory_gb": 4.0})
    assert run_attempt(spec)["outcome"] == "succeeded"
    done = jobs.get(job.id)
    assert done.state is JobState.SUCCEEDED
    assert done.result["pid"] != os.getpid()
    assert done.progress["message"] == "half way"  # progress crossed the pipe
    lines = [line.line for line in jobs.logs(job.id)]
    assert f"isolated in {done.result['pid']}" in lines


def test_an_isolated_attempts_errors_keep_their_type(jobs, db_url, tmp_path):
    memory = {"CPU": 1.0, "memory_gb": 4.0}
    job, _ = jobs.submit(tenant="t", kind=ISOLATED, params={"fail": True}, resources=memory)
    assert run_attempt(attempt_of(db_url, tmp_path.as_uri(), jobs, resources=memory))
    dead = jobs.get(job.id)
    # InvalidRequest crossed the process boundary: bad input is not retried
    assert (dead.state, dead.failures) == (JobState.DEAD, 1)
    assert dead.error == "InvalidRequest: no such column: y"


def test_an_isolated_attempt_over_its_memory_fails_saying_so(jobs, db_url, tmp_path):
    memory = {"CPU": 1.0, "memory_gb": 2.0}
    job, _ = jobs.submit(
        tenant="t", kind=ISOLATED, params={"allocate_gb": 3}, resources=memory, max_attempts=1
    )
    run_attempt(attempt_of(db_url, tmp_path.as_uri(), jobs, resources=memory))
    dead = jobs.get(job.id)
    assert dead.state is JobState.DEAD
    assert dead.error.startswith(
        "ResourceLimitExceeded: the job used more memory than it asked for (memory_gb=2)"
    )


def test_an_isolated_attempt_that_ignores_its_stop_is_killed_alone(jobs, db_url, tmp_path):
    memory = {"CPU": 1.0, "memory_gb": 4.0}
    marker = tmp_path / "stubborn.pid"
    stubborn, _ = jobs.submit(
        tenant="t", kind=STUBBORN, params={"marker": str(marker)}, resources=memory
    )
    runner, outcome = in_thread(attempt_of(db_url, tmp_path.as_uri(), jobs, resources=memory))
    child = int(wait_for(lambda: marker.exists() and marker.read_text(), what="the child"))
    assert child != os.getpid()
    # its neighbour: an in-process attempt on the same worker, on a thread of its own
    gate = Gate(tmp_path / "gate")
    neighbour, _ = jobs.submit(tenant="t", kind=GATE, params=gate.params)
    beside, beside_outcome = in_thread(attempt_of(db_url, tmp_path.as_uri(), jobs))
    wait_for(lambda: jobs.get(neighbour.id).worker, what="the neighbour to start")

    jobs.cancel(stubborn.id)
    assert ended(runner, outcome)["outcome"] == "cancelled"
    assert not psutil.pid_exists(child)  # killed and reaped
    assert jobs.get(stubborn.id).state is JobState.CANCELLED
    assert f"stubborn in {child}" in [line.line for line in jobs.logs(stubborn.id)]
    # the neighbour ran on untouched, and still ends as it should
    assert beside.is_alive() and jobs.get(neighbour.id).state is JobState.RUNNING
    gate.open()
    assert ended(beside, beside_outcome)["outcome"] == "succeeded"


def test_an_isolated_attempt_past_its_timeout_is_killed_and_fails(jobs, db_url, tmp_path):
    memory = {"CPU": 1.0, "memory_gb": 4.0}
    marker = tmp_path / "stubborn.pid"
    job, _ = jobs.submit(
        tenant="t", kind=STUBBORN, params={"marker": str(marker)}, resources=memory, timeout_s=60
    )
    clock = CountingClock()
    spec = attempt_of(db_url, tmp_path.as_uri(), jobs, resources=memory)
    runner, outcome = in_thread(spec, clock=clock)
    child = int(wait_for(lambda: marker.exists() and marker.read_text(), what="the child"))
    wait_for(lambda: clock.reads, what="the heartbeat to start timing the attempt")
    clock.advance(60)
    assert ended(runner, outcome)["outcome"] == "timed_out"
    assert not psutil.pid_exists(child)
    failed = jobs.get(job.id)
    assert (failed.state, failed.failures) == (JobState.QUEUED, 1)
    assert failed.error == "JobTimedOut: timed out after 60s (timeout_s)"


# -- Dask: workers advertise their share and run what is pinned to them -----------------


@pytest.fixture(scope="module")
def cluster(gate_kinds):
    executor = DaskExecutor(n_workers=2).start()
    executor.client.register_plugin(LoadGateKinds())
    yield executor
    executor.close()


@pytest.mark.slow
def test_embedded_workers_advertise_their_share_of_the_machine(cluster):
    from zhuge.hardware import cpu_count, memory_gb

    share = int(memory_gb() / 2 * 10) / 10
    offered = [w.resources for w in cluster.workers()]
    assert len(offered) == 2
    for resources in offered:
        assert resources["CPU"] == max(1, cpu_count() // 2)
        assert resources["memory_gb"] == pytest.approx(share)
    threads = cluster.client.scheduler_info(n_workers=-1)["workers"]
    assert [w["nthreads"] for w in threads.values()] == [max(1, cpu_count() // 2)] * 2


@pytest.mark.slow
def test_one_embedded_worker_offers_the_whole_machine_and_holds_a_wide_job(tmp_path):
    """``zhuge up --workers 1``: one worker with every core, as threads and as ``CPU``, so a
    job asking for all of them is admitted, placed there and runs."""
    from zhuge.hardware import cpu_count

    executor = DaskExecutor(n_workers=1).start()
    try:
        (worker,) = executor.workers()
        assert worker.resources["CPU"] == cpu_count()
        (info,) = executor.client.scheduler_info(n_workers=-1)["workers"].values()
        assert info["nthreads"] == cpu_count()
        db_url = f"sqlite:///{tmp_path / 'zhuge.db'}"
        store = store_for(db_url)
        wide = {"CPU": float(cpu_count())}
        job, _ = store.submit(tenant="t", kind="echo", params={"n": 1}, resources=wide)
        admitted = store.admit(owner="s", workers=[worker], lease_seconds=30)
        (claimed,) = admitted.started
        assert claimed.assigned_workers == [worker.address]
        spec = AttemptSpec(
            db_url, tmp_path.as_uri(), claimed.id, claimed.attempt, 30, 0.2, owner="s"
        )
        future = executor.submit(spec, wide, workers=[worker.address])
        assert future.result(timeout=120)["outcome"] == "succeeded"
        assert store.get(job.id).state is JobState.SUCCEEDED
    finally:
        executor.close()


@pytest.mark.slow
def test_an_attempt_runs_on_the_worker_it_is_pinned_to(cluster, tmp_path):
    db_url = f"sqlite:///{tmp_path / 'zhuge.db'}"
    store = store_for(db_url)
    addresses = sorted(w.address for w in cluster.workers())
    store.record_workers("s", [Worker(a, {"CPU": 1.0}, 0.0) for a in addresses])
    for address in reversed(addresses):  # both of them: not where Dask would go anyway
        job, _ = store.submit(tenant="t", kind="echo", params={"n": 1})
        (claimed,) = store.claim(limit=1, owner="s", lease_seconds=30)
        spec = AttemptSpec(
            db_url, tmp_path.as_uri(), claimed.id, claimed.attempt, 30, 0.2, owner="s"
        )
        future = cluster.submit(spec, {"CPU": 1.0}, workers=[address])
        assert future.result(timeout=120)["outcome"] == "succeeded"
        assert store.get(job.id).worker == address


@pytest.mark.slow
def test_map_parts_run_only_on_the_attempts_workers(cluster, tmp_path):
    db_url = f"sqlite:///{tmp_path / 'zhuge.db'}"
    store = store_for(db_url)
    pids = cluster.worker_processes()
    addresses = sorted(pids)
    store.record_workers("s", [Worker(a, {"CPU": 1.0}, 0.0) for a in addresses])
    job, _ = store.submit(
        tenant="t", kind=MAP, params={"markers": str(tmp_path / "markers"), "parts": 6}
    )
    (claimed,) = store.claim(limit=1, owner="s", lease_seconds=30)
    pinned = addresses[1]
    spec = AttemptSpec(
        db_url,
        tmp_path.as_uri(),
        claimed.id,
        claimed.attempt,
        30,
        0.2,
        owner="s",
        workers=(pinned,),
    )
    future = cluster.submit(spec, {"CPU": 1.0}, workers=[pinned])
    assert future.result(timeout=120)["outcome"] == "succeeded"
    assert store.get(job.id).result["pids"] == [pids[pinned]]


@pytest.mark.slow
def test_an_isolated_attempt_runs_in_a_child_of_its_dask_worker(cluster, tmp_path):
    cluster.client.run(_register_these_kinds)
    db_url = f"sqlite:///{tmp_path / 'zhuge.db'}"
    store = store_for(db_url)
    pids = cluster.worker_processes()
    store.record_workers("s", [Worker(a, {"CPU": 1.0, "memory_gb": 4.0}, 0.0) for a in pids])
    memory = {"CPU": 1.0, "memory_gb": 4.0}
    job, _ = store.submit(tenant="t", kind=ISOLATED, params={}, resources=memory)
    (claimed,) = store.claim(limit=1, owner="s", lease_seconds=30)
    spec = AttemptSpec(db_url, tmp_path.as_uri(), claimed.id, claimed.attempt, 30, 0.2, owner="s")
    future = cluster.submit(spec, {"CPU": 1.0, "memory_gb": 4.0})
    assert future.result(timeout=120)["outcome"] == "succeeded"
    done = store.get(job.id)
    assert done.worker in pids  # started by a Dask worker...
    assert done.result["pid"] not in pids.values()  # ...whose child ran the kind's code


def _register_these_kinds() -> None:
    import importlib

    importlib.import_module(__name__)
