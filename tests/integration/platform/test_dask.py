"""The whole path with real Dask worker processes: scheduler → Dask → runner → store."""

from __future__ import annotations

import os
import signal
import time

import pytest

from zhuge.config import Settings
from zhuge.jobs.model import Principal
from zhuge.jobs.service import submit_job
from zhuge.jobs.states import JobState
from zhuge.platform import Platform

MEMBER = Principal(token_id="tok_t", tenant="t")  # who submits the jobs here


pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def platform(tmp_path_factory):
    home = tmp_path_factory.mktemp("home")
    settings = Settings(
        home=home,
        workers=2,
        lease_seconds=2.0,
        heartbeat_seconds=0.25,
        retry_base_seconds=0.05,
        retry_max_seconds=0.2,
        poll_seconds=0.1,
    )
    with Platform(settings) as p:
        yield p


def submit(p: Platform, kind: str, **params):
    max_attempts = params.pop("max_attempts", 3)
    job, _ = submit_job(
        p.store,
        principal=MEMBER,
        settings=p.settings,
        kind=kind,
        params=params,
        max_attempts=max_attempts,
    )
    p.scheduler.notify()
    return job


def wait_for(p: Platform, job_id: int, states, timeout: float = 30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = p.store.get(job_id)
        if job.state in states:
            return job
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} still {p.store.get(job_id).state} after {timeout}s")


DONE = {JobState.SUCCEEDED, JobState.DEAD, JobState.CANCELLED}


def test_job_runs_on_a_worker_and_records_cpu_seconds(platform):
    job = submit(platform, "burn", seconds=0.5)
    done = wait_for(platform, job.id, DONE)
    assert done.state is JobState.SUCCEEDED
    assert done.worker and done.worker.startswith("tcp://")
    assert 0.4 <= done.cpu_seconds <= 3.0
    assert done.started_at >= done.created_at


def test_retries_with_backoff_then_succeeds(platform):
    job = submit(platform, "sleep", seconds=0, fail_times=2)
    done = wait_for(platform, job.id, DONE)
    assert (done.state, done.attempt, done.failures) == (JobState.SUCCEEDED, 3, 2)
    failed = [e for e in platform.store.events(job.id) if e.to_state is JobState.FAILED]
    assert len(failed) == 2 and "on purpose" in failed[0].message


def test_exhausted_retries_make_a_dead_job_with_traceback(platform):
    job = submit(platform, "sleep", seconds=0, fail_times=9, max_attempts=2)
    dead = wait_for(platform, job.id, DONE)
    assert dead.state is JobState.DEAD and dead.attempt == 2
    assert "SleepFailure" in dead.error and "Traceback" in dead.traceback


def test_cancel_running_job_frees_its_worker(platform):
    job = submit(platform, "sleep", seconds=60)
    wait_for(platform, job.id, {JobState.RUNNING})
    while platform.store.get(job.id).worker is None:
        time.sleep(0.05)
    cancelled = platform.store.cancel(job.id)
    assert cancelled.state is JobState.CANCELLED
    # both slots must be usable again soon: the job noticed at its next heartbeat
    quick = [submit(platform, "sleep", seconds=0.2) for _ in range(2)]
    t0 = time.monotonic()
    for q in quick:
        assert wait_for(platform, q.id, DONE, timeout=10).state is JobState.SUCCEEDED
    assert time.monotonic() - t0 < 5
    assert platform.store.get(job.id).state is JobState.CANCELLED
    deadline = time.monotonic() + 3  # the scheduler reaps finished futures on its next turn
    while platform.scheduler.in_flight and time.monotonic() < deadline:
        time.sleep(0.05)
    assert platform.scheduler.in_flight == 0


def test_sigkilled_worker_loses_the_attempt_and_the_job_runs_again(platform):
    job = submit(platform, "sleep", seconds=2)
    wait_for(platform, job.id, {JobState.RUNNING})
    deadline = time.monotonic() + 10
    while (worker := platform.store.get(job.id).worker) is None:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    pid = platform.executor.worker_processes()[worker]
    os.kill(pid, signal.SIGKILL)
    done = wait_for(platform, job.id, DONE, timeout=60)
    assert done.state is JobState.SUCCEEDED
    assert done.attempt >= 2 and done.worker != worker
    events = platform.store.events(job.id)
    assert sum(e.to_state is JobState.SUCCEEDED for e in events) == 1
    assert any("lost" in e.message or "lease" in e.message for e in events)


def test_queued_jobs_wait_in_priority_order_when_workers_are_busy(platform):
    blockers = [submit(platform, "sleep", seconds=0.6) for _ in range(2)]
    for b in blockers:
        wait_for(platform, b.id, {JobState.RUNNING, JobState.SUCCEEDED})
    low, _ = submit_job(
        platform.store,
        principal=MEMBER,
        settings=platform.settings,
        kind="echo",
        params={"n": "low"},
        priority=0,
    )
    high, _ = submit_job(
        platform.store,
        principal=MEMBER,
        settings=platform.settings,
        kind="echo",
        params={"n": "high"},
        priority=9,
    )
    low_done = wait_for(platform, low.id, DONE)
    high_done = wait_for(platform, high.id, DONE)
    assert high_done.started_at <= low_done.started_at


def test_gpu_job_waits_in_the_queue_while_no_gpu_worker_exists(platform):
    gpu_job, _ = submit_job(
        platform.store,
        principal=MEMBER,
        settings=platform.settings,
        kind="echo",
        params={"gpu": True},
        resources={"GPU": 1.0},
    )
    cpu_job = submit(platform, "echo", n=1)
    assert wait_for(platform, cpu_job.id, DONE).state is JobState.SUCCEEDED
    time.sleep(0.5)
    assert platform.store.get(gpu_job.id).state is JobState.QUEUED  # not claimed, not lost
    platform.store.cancel(gpu_job.id)


def test_bad_input_inside_a_job_is_not_retried(platform):
    job = submit(platform, "sleep", seconds=0, bad_input=True, max_attempts=5)
    dead = wait_for(platform, job.id, DONE)
    assert (dead.state, dead.attempt) == (JobState.DEAD, 1)
    assert "DataError" in dead.error
    assert platform.store.events(job.id)[-1].message == "bad input: retrying cannot help"


def test_map_spreads_parts_over_workers_and_counts_their_cpu(platform):
    job = submit(platform, "burn", seconds=0.4, parts=4)
    done = wait_for(platform, job.id, DONE, timeout=60)
    assert done.state is JobState.SUCCEEDED, done.error
    workers = set(platform.executor.worker_processes().values())
    assert set(done.result["pids"]) == workers  # both worker processes ran parts
    assert done.cpu_seconds >= 4 * 0.4 * 0.9  # parts run elsewhere are counted too
    assert done.progress["done"] == done.progress["total"] == 4


def test_map_parts_stop_when_the_job_is_cancelled(platform):
    job = submit(platform, "burn", seconds=3.0, parts=8)
    wait_for(platform, job.id, {JobState.RUNNING})
    time.sleep(1.0)
    platform.store.cancel(job.id)
    # the remaining parts are cancelled: both slots take new work within a heartbeat or two
    quick = [submit(platform, "sleep", seconds=0.1) for _ in range(2)]
    t0 = time.monotonic()
    for q in quick:
        assert wait_for(platform, q.id, DONE, timeout=15).state is JobState.SUCCEEDED
    assert time.monotonic() - t0 < 8  # not the 8 x 3 s of parts
    assert platform.store.get(job.id).state is JobState.CANCELLED


def test_workers_chain_short_jobs_exactly_once_in_queue_order(platform):
    jobs = [submit(platform, "echo", n=i) for i in range(40)]
    done = [wait_for(platform, j.id, DONE) for j in jobs]
    assert all(d.state is JobState.SUCCEEDED and d.attempt == 1 for d in done)
    assert [d.result["n"] for d in done] == list(range(40))
    chained = 0
    for job in jobs:
        events = platform.store.events(job.id)
        assert sum(e.to_state is JobState.SUCCEEDED for e in events) == 1
        chained += any("chained on" in e.message for e in events)
    assert chained > 0  # most never went through the scheduler and Dask


def test_a_chained_job_can_be_cancelled(platform):
    busy = [submit(platform, "sleep", seconds=0.5) for _ in range(2)]  # both slots taken
    for job in busy:
        wait_for(platform, job.id, {JobState.RUNNING})
    long = submit(platform, "sleep", seconds=60)
    wait_for(platform, long.id, {JobState.RUNNING})
    # no slot was free when it arrived: a finishing worker chained it
    claimed = [e for e in platform.store.events(long.id) if e.to_state is JobState.RUNNING]
    assert "chained on" in claimed[-1].message
    while platform.store.get(long.id).worker is None:
        time.sleep(0.05)
    platform.store.cancel(long.id)
    deadline = time.monotonic() + 3  # its task ends at the next heartbeat, freeing the slot
    while platform.scheduler.in_flight and time.monotonic() < deadline:
        time.sleep(0.05)
    assert platform.scheduler.in_flight == 0
    assert platform.store.get(long.id).state is JobState.CANCELLED
