"""The whole path with real Dask worker processes: scheduler → Dask → runner → store.

Outcomes are forced, not raced: a job that must still be running, or slots that must be
busy, waits at a gate the test opens (``gate.py``), and a job that must not start lacks the
resources to. Every wait is for a state, with a timeout that only bounds a hang; leases are
long (30 s) so a slow machine never loses one by accident.
"""

from __future__ import annotations

import os
import re
import signal
from collections.abc import Callable

import pytest

from tests.conftest import wait_for
from tests.integration.platform.gate import GATE, MAP, Gate, LoadGateKinds, started_parts
from zhuge.config import Settings
from zhuge.errors import InvalidRequest
from zhuge.jobs.model import Job, Principal
from zhuge.jobs.service import submit_job, submit_jobs
from zhuge.jobs.states import JobState
from zhuge.jobs.store import JobRequest
from zhuge.platform import Platform

pytestmark = pytest.mark.slow

WORKERS = 2
MEMBER = Principal(token_id="tok_t", tenant="t")  # who submits the jobs here


@pytest.fixture(scope="module")
def platform(tmp_path_factory, gate_kinds):
    settings = Settings(
        home=tmp_path_factory.mktemp("home"),
        workers=WORKERS,
        lease_seconds=30.0,
        heartbeat_seconds=0.2,  # how soon a running job learns it was cancelled
        retry_base_seconds=0.05,
        retry_max_seconds=0.2,
        poll_seconds=0.1,
        # A worker whose job ends takes the next queued job itself whenever there is one, so
        # which jobs are chained depends on the queue, not on how fast the machine is.
        chain_seconds=3600.0,
    )
    with Platform(settings) as p:
        p.executor.client.register_plugin(LoadGateKinds())
        yield p


@pytest.fixture
def gates(tmp_path) -> Callable[[], Gate]:
    """Make gates; any left closed are opened after the test, so its jobs can end."""
    made: list[Gate] = []

    def gate() -> Gate:
        made.append(Gate(tmp_path / f"gate-{len(made)}"))
        return made[-1]

    yield gate
    for g in made:
        g.open()


def _dask_tasks(dask_scheduler) -> dict[str, str]:
    return {str(key): ts.state for key, ts in dask_scheduler.tasks.items()}


def dask_tasks(p: Platform) -> dict[str, str]:
    """Every task the Dask scheduler knows, with its state."""
    return p.executor.client.run_on_scheduler(_dask_tasks)


@pytest.fixture(autouse=True)
def settled(platform):
    """Each test starts on a quiet platform: every job finished (a test cancels what it leaves
    waiting, and its gates are open by now), no Dask task, every worker back (a test may kill
    one)."""
    yield
    wait_for(
        lambda: [j.id for j in platform.store.list(limit=1000) if not j.is_terminal],
        until=lambda unfinished: not unfinished,
        what="every job to finish",
    )
    wait_for(
        lambda: (
            platform.scheduler.in_flight,
            dask_tasks(platform),
            platform.executor.capacity().cpu,
        ),
        until=lambda seen: seen == (0, {}, WORKERS),
        what="the platform to settle (in flight, Dask tasks, CPU slots)",
    )


def submit(
    p: Platform,
    kind: str,
    *,
    priority: int = 0,
    resources=None,
    max_attempts: int = 3,
    gang: int = 1,
    **params,
) -> Job:
    job, _ = submit_job(
        p.store,
        principal=MEMBER,
        settings=p.settings,
        kind=kind,
        params=params,
        priority=priority,
        resources=resources,
        max_attempts=max_attempts,
        gang=gang,
    )
    p.scheduler.notify()
    return job


def wait_job(p: Platform, job_id: int, accept: Callable[[Job], bool], what: str) -> Job:
    return wait_for(lambda: p.store.get(job_id), until=accept, what=f"job {job_id} {what}")


def finished(p: Platform, job_id: int) -> Job:
    return wait_job(p, job_id, lambda j: j.is_terminal, "to finish")


def started(p: Platform, job_id: int) -> Job:
    """Running on a worker (not only claimed by the scheduler)."""
    return wait_job(
        p, job_id, lambda j: j.state is JobState.RUNNING and j.worker is not None, "to start"
    )


def hold_every_slot(p: Platform, gates) -> list[tuple[Job, Gate]]:
    """One gated job started on each worker: no slot is free until a gate opens."""
    held = [(submit(p, GATE, **g.params), g) for g in (gates() for _ in range(WORKERS))]
    for job, _ in held:
        started(p, job.id)
    assert len({p.store.get(job.id).worker for job, _ in held}) == WORKERS
    return held


def succeeded_events(p: Platform, job_id: int) -> int:
    return sum(e.to_state is JobState.SUCCEEDED for e in p.store.events(job_id))


def test_job_runs_on_a_worker_and_records_its_cpu_seconds(platform):
    done = finished(platform, submit(platform, "burn", seconds=0.5).id)
    assert done.state is JobState.SUCCEEDED
    assert done.worker in {w.address for w in platform.executor.workers()}
    # The job's own CPU: at least what it burnt; not the seconds a fresh worker spends
    # importing every kind's module before it can run the first job.
    assert 0.45 <= done.cpu_seconds < 1.5
    assert done.started_at >= done.created_at


def test_retries_with_backoff_then_succeeds(platform):
    done = finished(platform, submit(platform, "sleep", seconds=0, fail_times=2).id)
    assert (done.state, done.attempt, done.failures, done.lost) == (JobState.SUCCEEDED, 3, 2, 0)
    events = platform.store.events(done.id)
    failed = [e for e in events if e.to_state is JobState.FAILED]
    assert len(failed) == 2 and "on purpose" in failed[0].message
    backoffs = [e.message for e in events if e.from_state is JobState.FAILED]
    assert [m.split(" in ")[0] for m in backoffs] == ["retry 2 of 3", "retry 3 of 3"]


def test_exhausted_retries_make_a_dead_job_with_traceback(platform):
    job = submit(platform, "sleep", seconds=0, fail_times=9, max_attempts=2)
    dead = finished(platform, job.id)
    assert dead.state is JobState.DEAD and dead.attempt == 2
    assert "SleepFailure" in dead.error and "Traceback" in dead.traceback


def test_bad_input_inside_a_job_is_not_retried(platform):
    job = submit(platform, "sleep", seconds=0, bad_input=True, max_attempts=5)
    dead = finished(platform, job.id)
    assert (dead.state, dead.attempt) == (JobState.DEAD, 1)
    assert "DataError" in dead.error
    assert platform.store.events(job.id)[-1].message == "bad input: retrying cannot help"


def test_cancel_running_job_frees_its_worker(platform, gates):
    job = submit(platform, GATE, **gates().params)  # never opened while the test runs
    started(platform, job.id)
    assert platform.store.cancel(job.id).state is JobState.CANCELLED
    # Both slots run new work at the same time only once the cancelled job's code stopped:
    # until then its worker's one thread is taken and a second job could not start.
    for new in [submit(platform, GATE, **gates().params) for _ in range(WORKERS)]:
        started(platform, new.id)
    after = platform.store.get(job.id)
    assert after.state is JobState.CANCELLED and succeeded_events(platform, job.id) == 0


def test_sigkilled_worker_loses_the_attempt_and_the_job_runs_again(platform, gates):
    gate = gates()
    job = submit(platform, GATE, **gate.params)
    victim = started(platform, job.id).worker
    os.kill(platform.executor.worker_processes()[victim], signal.SIGKILL)
    # The attempt cannot have ended by itself: its gate is closed.
    again = wait_job(
        platform,
        job.id,
        lambda j: j.attempt >= 2 and j.state is JobState.RUNNING and j.worker is not None,
        "to start again after its worker was killed",
    )
    assert again.worker != victim
    gate.open()
    done = finished(platform, job.id)
    assert done.state is JobState.SUCCEEDED and done.result["attempt"] == done.attempt
    # lost, not failed: the worker died, the job's code did nothing wrong
    assert (done.failures, done.lost) == (0, done.attempt - 1)
    lost = [e for e in platform.store.events(job.id) if e.to_state is JobState.LOST]
    assert lost[0].attempt == 1 and lost[0].reason in ("worker_died", "lease_lost")
    assert succeeded_events(platform, job.id) == 1


def test_queued_jobs_start_in_priority_order_when_a_slot_frees(platform, gates):
    (first, first_gate), _ = hold_every_slot(platform, gates)
    low = submit(platform, "echo", n="low", priority=0)
    high = submit(platform, "echo", n="high", priority=9)
    first_gate.open()  # exactly one slot frees: it takes the queue's head, then the next
    low_done, high_done = finished(platform, low.id), finished(platform, high.id)
    assert high_done.started_at < low_done.started_at
    assert high_done.worker == low_done.worker == platform.store.get(first.id).worker


def test_a_job_asking_for_what_no_worker_offers_is_refused_naming_the_offer(platform):
    before = len(platform.store.list(limit=1000))
    for resources, problem in (
        ({"GPU": 1.0}, "no worker offers GPU"),
        ({"CPU": 1.0, "FOO": 1.0}, "no worker offers FOO"),
        ({"CPU": 4.0}, "CPU=4 is more than any worker offers (CPU=1)"),
    ):
        with pytest.raises(InvalidRequest, match=re.escape(problem)) as refused:
            submit(platform, "echo", resources=resources)
        assert "the cluster offers CPU=1" in refused.value.message
    assert len(platform.store.list(limit=1000)) == before  # nothing stored


def test_a_job_no_live_worker_can_hold_waits_without_a_slot_and_says_why(platform):
    # Accepted before any worker was recorded (a server whose workers are still joining):
    # the store takes it as submit would have with an empty census.
    gpu, _ = platform.store.submit(tenant="t", kind="echo", params={}, resources={"GPU": 1.0})
    foo, _ = platform.store.submit(
        tenant="t", kind="echo", params={}, resources={"CPU": 1.0, "FOO": 1.0}
    )
    platform.scheduler.notify()
    # admission never claims a job no live worker can hold, and says why in words
    waiting = wait_for(lambda: platform.store.get(gpu.id).pending_reason, what="gpu's reason")
    assert waiting == "no worker offers GPU"
    waiting = wait_for(lambda: platform.store.get(foo.id).pending_reason, what="foo's reason")
    assert waiting == "no worker offers FOO"
    for job_id, attempts in ((gpu.id, 0), (foo.id, 0)):
        job = platform.store.get(job_id)
        assert (job.state, job.attempt, job.failures, job.lost) == (
            JobState.QUEUED,
            attempts,
            0,
            0,
        )
        assert job.worker is None
    # and every slot is still free for work that fits
    assert finished(platform, submit(platform, "echo", n=1).id).state is JobState.SUCCEEDED
    platform.store.cancel(gpu.id)
    platform.store.cancel(foo.id)


def test_map_counts_the_cpu_of_parts_wherever_they_ran(platform):
    job = submit(platform, "burn", seconds=0.4, parts=4)
    done = finished(platform, job.id)
    assert done.state is JobState.SUCCEEDED, done.error
    assert set(done.result["pids"]) <= set(platform.executor.worker_processes().values())
    assert done.cpu_seconds >= 4 * 0.4 * 0.9  # parts run in other processes are counted too
    assert done.progress["done"] == done.progress["total"] == 4


def test_map_spreads_a_gangs_parts_over_its_workers(platform, tmp_path):
    # Each part waits until parts have started in two processes: it can finish only if the
    # parts were spread over both workers, which the job booked as a gang.
    markers = tmp_path / "markers"
    job = submit(platform, MAP, markers=str(markers), parts=4, processes=WORKERS, gang=WORKERS)
    done = finished(platform, job.id)
    assert done.state is JobState.SUCCEEDED, done.error
    assert done.result["met"], "a part gave up waiting for parts in another process"
    workers = set(platform.executor.worker_processes().values())
    assert set(done.result["pids"]) == workers and len(workers) == WORKERS


def test_map_parts_of_a_one_worker_job_stay_within_its_booking(platform, tmp_path):
    """Parts count against the job's tenant: they run only on the worker admission placed
    the job on, one at a time for a job that booked one CPU, so a second, idle worker gets
    none of them."""
    job = submit(platform, MAP, markers=str(tmp_path / "markers"), parts=4)
    done = finished(platform, job.id)
    assert done.state is JobState.SUCCEEDED, done.error
    pids = platform.executor.worker_processes()
    assert set(done.result["pids"]) == {pids[done.worker]}


def test_map_parts_not_started_are_dropped_when_the_job_is_cancelled(platform, gates, tmp_path):
    markers, gate = tmp_path / "markers", gates()
    job = submit(platform, MAP, markers=str(markers), parts=8, gate=str(gate.path))
    started(platform, job.id)
    wait_for(lambda: started_parts(markers), what="a part to start")
    platform.store.cancel(job.id)

    def said_dropped() -> list[str]:
        return [x.line for x in platform.store.logs(job.id) if "parts unfinished" in x.line]

    wait_for(said_dropped, what="the job to cancel its unfinished parts")
    gate.open()  # the parts already running may finish now; the dropped ones never run
    wait_for(lambda: dask_tasks(platform), until=lambda tasks: not tasks, what="Dask to be idle")
    ran = started_parts(markers)
    # While the gate was closed, each worker had at most one part running and one queued.
    assert 1 <= len(ran) <= 2 * WORKERS < 8
    assert platform.store.get(job.id).state is JobState.CANCELLED
    assert succeeded_events(platform, job.id) == 0


def test_workers_chain_queued_jobs_exactly_once_in_queue_order(platform, gates):
    held = hold_every_slot(platform, gates)
    results = submit_jobs(
        platform.store,
        principal=MEMBER,
        settings=platform.settings,
        requests=[JobRequest(kind="echo", params={"n": i}) for i in range(40)],
    )
    jobs = [job for job, _ in results]
    platform.scheduler.notify()  # no slot is free: nothing is admitted
    for _, gate in held:
        gate.open()
    done = [finished(platform, j.id) for j in jobs]
    assert all(d.state is JobState.SUCCEEDED and d.attempt == 1 for d in done)
    assert [d.result["n"] for d in done] == list(range(40))
    by_start = sorted(done, key=lambda d: (d.started_at, d.id))
    assert [d.id for d in by_start] == [d.id for d in done]  # claimed oldest first
    for job in jobs:
        events = platform.store.events(job.id)
        assert sum(e.to_state is JobState.SUCCEEDED for e in events) == 1
        (claimed,) = [e for e in events if e.to_state is JobState.RUNNING]
        # taken by a worker whose job had ended, never through the scheduler and Dask
        assert "chained on" in claimed.message


def test_a_chained_job_can_be_cancelled(platform, gates):
    (first, first_gate), (second, _) = hold_every_slot(platform, gates)
    long = submit(platform, GATE, **gates().params)  # no slot is free: it waits in the queue
    first_gate.open()
    started(platform, long.id)
    claimed = [e for e in platform.store.events(long.id) if e.to_state is JobState.RUNNING]
    assert "chained on" in claimed[-1].message
    platform.store.cancel(long.id)
    # Its task ends once it sees the cancel, so the first job's slot is free again: a new job
    # starts there while the second job still holds the other slot.
    wait_for(lambda: platform.scheduler.in_flight == 1, what="the chain's Dask task to end")
    new = submit(platform, GATE, **gates().params)
    assert started(platform, new.id).worker == platform.store.get(first.id).worker
    assert platform.store.get(second.id).state is JobState.RUNNING
    assert platform.store.get(long.id).state is JobState.CANCELLED
