"""The runner in this process, without Dask: chains timed on a clock the test controls, and a
cancelled job stopped by its heartbeat."""

from __future__ import annotations

import threading

from tests.conftest import wait_for
from tests.integration.platform.gate import GATE, Gate
from zhuge.jobs.model import Worker
from zhuge.jobs.runner import AttemptSpec, _worker_name, run_attempt
from zhuge.jobs.states import JobState
from zhuge.jobs.store import store_for

CPU = {"CPU": 1.0}


def queue_of_echo_jobs(store, n: int):
    return [store.submit(tenant="t", kind="echo", params={"n": i})[0] for i in range(n)]


def first_attempt(db_url, artifacts, store, *, chain_seconds: float, heartbeat: float = 5.0):
    """Claim the head of the queue as scheduler "s" would, and the spec it hands to Dask; the
    worker this process is (outside Dask) is in the census, one CPU, so chains are admitted."""
    store.record_workers("s", [Worker(_worker_name(), CPU, 0.0)])
    (job,) = store.claim(limit=1, owner="s", lease_seconds=30)
    return AttemptSpec(
        db_url,
        artifacts,
        job.id,
        job.attempt,
        lease_seconds=30,
        heartbeat_seconds=heartbeat,
        owner="s",
        resources=CPU,
        chain_seconds=chain_seconds,
    )


def test_a_chain_runs_the_queue_in_order_until_it_is_empty(db_url, tmp_path):
    store = store_for(db_url)
    jobs = queue_of_echo_jobs(store, 4)
    spec = first_attempt(db_url, tmp_path.as_uri(), store, chain_seconds=10)
    outcome = run_attempt(spec, clock=lambda: 0.0)  # the chain's time never runs out
    assert (outcome["outcome"], outcome["chained"]) == ("succeeded", 3)
    done = [store.get(j.id) for j in jobs]
    assert [d.result["n"] for d in done] == [0, 1, 2, 3]
    assert all(d.state is JobState.SUCCEEDED for d in done)
    assert [d.started_at for d in done] == sorted(d.started_at for d in done)
    for job in jobs[1:]:
        (claimed,) = [e for e in store.events(job.id) if e.to_state is JobState.RUNNING]
        assert claimed.message.startswith("claimed by s, chained on ")


def test_a_chain_ends_when_its_time_is_up_on_its_clock(db_url, tmp_path):
    store = store_for(db_url)
    jobs = queue_of_echo_jobs(store, 3)
    spec = first_attempt(db_url, tmp_path.as_uri(), store, chain_seconds=10)
    # read when the chain starts (deadline 10), then after each job
    ticks = iter([0.0, 9.9, 10.0])
    outcome = run_attempt(spec, clock=lambda: next(ticks))
    assert outcome["chained"] == 1
    states = [store.get(j.id).state for j in jobs]
    assert states == [JobState.SUCCEEDED, JobState.SUCCEEDED, JobState.QUEUED]


def test_no_chain_when_chain_seconds_is_zero(db_url, tmp_path):
    store = store_for(db_url)
    jobs = queue_of_echo_jobs(store, 2)
    spec = first_attempt(db_url, tmp_path.as_uri(), store, chain_seconds=0)
    assert run_attempt(spec, clock=lambda: 0.0)["chained"] == 0
    assert store.get(jobs[1].id).state is JobState.QUEUED


def test_a_running_job_stops_at_its_next_heartbeat_once_cancelled(db_url, tmp_path, gate_kinds):
    store = store_for(db_url)
    gate = Gate(tmp_path / "gate")  # never opened: only the cancel can end the job
    job, _ = store.submit(tenant="t", kind=GATE, params=gate.params)
    spec = first_attempt(db_url, tmp_path.as_uri(), store, chain_seconds=0, heartbeat=0.05)
    outcome = {}
    runner = threading.Thread(target=lambda: outcome.update(run_attempt(spec)), daemon=True)
    runner.start()
    wait_for(lambda: store.get(job.id).worker, what="the job to start")
    store.cancel(job.id)
    runner.join(timeout=120)
    assert not runner.is_alive(), "the runner did not notice the cancel"
    assert outcome["outcome"] == "cancelled"
    assert store.get(job.id).state is JobState.CANCELLED
    assert [line.line for line in store.logs(job.id)] == [f"waiting for {gate.path}"]


def _failing_commits(monkeypatch, times: int) -> list[int]:
    """The store's commit of a finished attempt raises its first ``times`` calls (the
    database restarting, a deadlock), then works; the calls are counted."""
    from sqlalchemy.exc import OperationalError

    from zhuge.jobs import runner
    from zhuge.jobs.store import JobStore

    calls: list[int] = []
    real = JobStore.complete

    def complete(self, *args, **kwargs):
        calls.append(1)
        if len(calls) <= times:
            raise OperationalError("UPDATE jobs", {}, Exception("server closed the connection"))
        return real(self, *args, **kwargs)

    monkeypatch.setattr(JobStore, "complete", complete)
    monkeypatch.setattr(runner, "COMMIT_RETRY_SECONDS", 0.0)
    return calls


def test_a_commit_the_store_refuses_is_tried_again_and_spends_no_attempt(
    db_url, tmp_path, monkeypatch
):
    store = store_for(db_url)
    (job,) = queue_of_echo_jobs(store, 1)
    spec = first_attempt(db_url, tmp_path.as_uri(), store, chain_seconds=0)
    calls = _failing_commits(monkeypatch, times=2)
    assert run_attempt(spec)["outcome"] == "succeeded"
    assert len(calls) == 3
    done = store.get(job.id)
    assert (done.state, done.attempt, done.failures, done.result) == (
        JobState.SUCCEEDED,
        1,
        0,
        {"n": 0},
    )


def test_a_commit_that_keeps_failing_ends_the_task_and_fails_nothing(db_url, tmp_path, monkeypatch):
    """The job's code succeeded; the platform could not record it. That is the platform's
    failure: the task ends with CommitFailed (the scheduler then loses the attempt, which
    runs again) and the job spends none of its attempts."""
    import pytest

    from zhuge.jobs.runner import COMMIT_TRIES, CommitFailed

    store = store_for(db_url)
    (job,) = queue_of_echo_jobs(store, 1)
    spec = first_attempt(db_url, tmp_path.as_uri(), store, chain_seconds=0)
    calls = _failing_commits(monkeypatch, times=COMMIT_TRIES)
    with pytest.raises(CommitFailed, match="could not be committed"):
        run_attempt(spec)
    assert len(calls) == COMMIT_TRIES
    still = store.get(job.id)
    assert (still.state, still.attempt, still.failures) == (JobState.RUNNING, 1, 0)
