"""The scheduler's loop driven by hand: a fake Dask executor, and one fake clock for the
scheduler and the store, so lease expiry, backoff and ``not_before`` happen when the test
advances the clock, never by waiting."""

from __future__ import annotations

import dataclasses

import pytest

from tests.integration.platform.fakes import FakeExecutor
from tests.integration.platform.test_chain_races import taken_by_a_chain_after_the_decision
from zhuge.config import Settings
from zhuge.jobs.claims import CANDIDATES_PER_TENANT
from zhuge.jobs.executor import Capacity
from zhuge.jobs.scheduler import HOUSEKEEPING_SECONDS, Scheduler
from zhuge.jobs.states import JobState

LEASE = 30.0


@pytest.fixture
def settings(tmp_path, db_url) -> Settings:
    return Settings(home=tmp_path, db_url=db_url, lease_seconds=LEASE, heartbeat_seconds=5.0)


def scheduler_for(store, settings, clock, *, cpu: int = 1, gpu: int = 0, name: str = "s1"):
    return Scheduler(store, FakeExecutor(cpu=cpu, gpu=gpu), settings, name=name, clock=clock)


def submit(store, **kw):
    args = {"tenant": "t", "kind": "echo", "params": {}} | kw
    return store.submit(**args)[0]


def test_admits_as_many_as_there_are_slots_in_queue_order(store, settings, clock):
    low, high, later = submit(store), submit(store, priority=5), submit(store)
    s = scheduler_for(store, settings, clock, cpu=2)
    assert s.run_once() is True
    assert list(s.executor.futures) == [(high.id, 1), (low.id, 1)]
    assert s.run_once() is False  # no slot free: nothing more, however often it looks
    assert store.get(later.id).state is JobState.QUEUED
    store.complete(high.id, 1, result={})
    s.executor.futures[(high.id, 1)].finish()
    assert s.run_once() is True
    assert (later.id, 1) in s.executor.futures and s.in_flight == 2


def test_a_gang_is_admitted_on_distinct_workers_and_its_parts_pinned_to_them(
    store, settings, clock
):
    gang = submit(store, kind="tune", params={}, gang=2)  # tune's search runs in ctx.map parts
    alone = submit(store)
    s = scheduler_for(store, settings, clock, cpu=3)
    assert s.run_once() is True
    placed = store.get(gang.id).assigned_workers
    assert len(set(placed)) == 2  # two copies, two workers
    (spec,) = [x for x in s.executor.specs if x.job_id == gang.id]
    assert list(spec.workers) == placed  # the search's parts run on the booked workers
    assert s.executor.pinned[(gang.id, 1)] == placed[:1]  # the job itself on the first
    assert spec.chain_seconds == 0  # a gang's place is not chained to other jobs
    # the one-worker job took the third worker; its parts run there, within its booking
    (other,) = [x for x in s.executor.specs if x.job_id == alone.id]
    assert list(other.workers) == store.get(alone.id).assigned_workers
    assert other.workers[0] not in placed


def test_a_gang_no_worker_starts_in_time_gives_its_workers_back_and_waits_its_backoff(
    store, settings, clock
):
    settings = dataclasses.replace(settings, gang_ready_seconds=60.0)
    stuck = submit(store, kind="tune", params={}, gang=2)
    s = scheduler_for(store, settings, clock, cpu=2)
    assert s.run_once() is True
    clock.advance(59.0)
    s.run_once()
    assert store.get(stuck.id).state is JobState.RUNNING  # not yet: 60 s is the limit
    clock.advance(1.0)
    s.run_once()
    lost = store.get(stuck.id)
    assert (lost.state, lost.failures, lost.lost) == (JobState.QUEUED, 0, 1)
    assert [e.reason for e in store.events(stuck.id)][-2:] == ["gang_not_ready"] * 2
    assert s.executor.futures[(stuck.id, 1)].status == "cancelled"  # its workers are free
    assert lost.not_before > clock.now  # queued again with backoff, not at once
    clock.now = lost.not_before
    s.run_once()
    assert (stuck.id, 2) in s.executor.futures


def test_a_gang_that_started_is_not_timed_out_by_its_readiness_limit(store, settings, clock):
    settings = dataclasses.replace(settings, gang_ready_seconds=60.0)
    gang = submit(store, kind="tune", params={}, gang=2)
    s = scheduler_for(store, settings, clock, cpu=2)
    s.run_once()
    store.start_attempt(gang.id, 1, worker="w", lease_seconds=LEASE)
    for _ in range(3):  # heartbeats keep its lease; only readiness is at stake here
        clock.advance(25.0)
        store.heartbeat(gang.id, 1, lease_seconds=LEASE)
        s.run_once()
    job = store.get(gang.id)
    assert (job.state, job.attempt, job.lost) == (JobState.RUNNING, 1, 0)
    assert s.executor.futures[(gang.id, 1)].status == "pending"


def test_housekeeping_expires_a_silent_workers_lease_on_the_clock(store, settings, clock):
    job = submit(store)
    s = scheduler_for(store, settings, clock, cpu=2)
    s.run_once()
    store.start_attempt(job.id, 1, worker="w", lease_seconds=LEASE)
    clock.advance(LEASE)  # the lease runs out only once it is passed
    s.run_once()
    assert store.get(job.id).state is JobState.RUNNING
    clock.advance(HOUSEKEEPING_SECONDS / 2)
    s.run_once()  # past the lease, but housekeeping ran less than its interval ago
    assert store.get(job.id).state is JobState.RUNNING
    clock.advance(HOUSEKEEPING_SECONDS / 2)
    s.run_once()
    lost = store.get(job.id)
    assert (lost.state, lost.failures, lost.lost) == (JobState.QUEUED, 0, 1)
    assert [e.reason for e in store.events(job.id)][-2:] == ["lease_lost", "lease_lost"]
    clock.now = lost.not_before  # the backoff of a lost attempt, then it runs again
    s.run_once()
    assert (job.id, 2) in s.executor.futures
    assert store.get(job.id).attempt == 2


def test_a_failed_job_is_not_admitted_before_its_not_before(store, settings, clock):
    job = submit(store)
    s = scheduler_for(store, settings, clock)
    s.run_once()
    store.start_attempt(job.id, 1, worker="w", lease_seconds=LEASE)
    failed = store.fail_attempt(job.id, 1, error="boom", traceback=None)
    s.executor.futures[(job.id, 1)].finish()  # the runner wrote the outcome itself
    assert failed.not_before > clock.now
    clock.now = failed.not_before - 0.001
    assert s.run_once() is False
    assert store.get(job.id).state is JobState.QUEUED
    clock.now = failed.not_before
    assert s.run_once() is True
    assert store.get(job.id).attempt == 2


def test_its_scheduler_keeps_the_lease_of_an_attempt_no_worker_started(store, settings, clock):
    job = submit(store)
    s = scheduler_for(store, settings, clock)
    s.run_once()  # handed to Dask; no worker has started it
    for _ in range(3):
        clock.advance(LEASE * 0.9)
        s.run_once()
        assert store.get(job.id).state is JobState.RUNNING
    # the scheduler dies: nobody vouches for the attempt, another scheduler expires it
    other = scheduler_for(store, settings, clock, name="s2")
    clock.advance(LEASE + 1)
    other.run_once()
    assert store.events(job.id)[-1].reason == "lease_lost"
    assert store.get(job.id).lost == 1


def test_a_task_that_died_without_a_result_loses_its_attempt_at_once(store, settings, clock):
    job = submit(store)
    s = scheduler_for(store, settings, clock)
    s.run_once()
    store.start_attempt(job.id, 1, worker="w", lease_seconds=LEASE)
    s.executor.futures[(job.id, 1)].finish(error=RuntimeError("KilledWorker"))
    s.run_once()  # the clock did not move: this is not lease expiry
    after = store.get(job.id)
    assert (after.state, after.failures, after.lost) == (JobState.QUEUED, 0, 1)
    assert "KilledWorker" in after.error
    assert store.events(job.id)[-1].reason == "worker_died"


def test_a_cancelled_jobs_task_is_cancelled_at_the_next_housekeeping(store, settings, clock):
    job = submit(store)
    s = scheduler_for(store, settings, clock)
    s.run_once()
    store.cancel(job.id)
    future = s.executor.futures[(job.id, 1)]
    s.run_once()
    assert future.status == "pending" and s.in_flight == 1  # not looked at yet
    clock.advance(HOUSEKEEPING_SECONDS)
    s.run_once()
    assert future.status == "cancelled" and s.in_flight == 0


def test_gpu_jobs_wait_until_a_gpu_slot_exists(store, settings, clock):
    gpu = submit(store, priority=9, resources={"GPU": 1.0})
    cpu = submit(store)
    s = scheduler_for(store, settings, clock, cpu=1, gpu=0)
    s.run_once()
    assert list(s.executor.futures) == [(cpu.id, 1)]
    assert store.get(gpu.id).state is JobState.QUEUED
    s.executor.slots = Capacity(cpu=1, gpu=1)  # a GPU worker joins
    s.run_once()
    assert (gpu.id, 1) not in s.executor.futures  # capacity is read at housekeeping
    clock.advance(HOUSEKEEPING_SECONDS)
    s.run_once()
    assert (gpu.id, 1) in s.executor.futures
    assert s.executor.specs[-1].resources == {"GPU": 1.0}


def test_stop_releases_running_jobs_as_drained_and_cancels_their_tasks(store, settings, clock):
    jobs = [submit(store), submit(store)]
    s = scheduler_for(store, settings, clock, cpu=2)
    s.run_once()
    s.stop(release=True)
    for job in jobs:
        after = store.get(job.id)
        assert (after.state, after.failures, after.lost) == (JobState.QUEUED, 0, 0)
        assert store.events(job.id)[-1].reason == "drained"
    assert {f.status for f in s.executor.futures.values()} == {"cancelled"}


def test_a_submission_no_worker_has_room_for_does_not_force_a_turn(store, settings, clock):
    """``notify`` with the submitted jobs' resources wakes the loop only if the last turn
    left a worker room for one of them (a turn could start it); with no resources (a cancel,
    a retry) it always does. A busy cluster is then not re-decided once per submission."""
    submit(store)
    s = scheduler_for(store, settings, clock, cpu=1)
    s.notify([{"CPU": 1.0}])
    assert s.wake.is_set()  # before the first turn nothing is known: look
    s.wake.clear()
    assert s.run_once() is True  # the one CPU is taken
    assert s.run_once() is False
    assert set(s._room or {}) == {w.address for w in s.executor.workers()}
    s.notify([{"CPU": 1.0}])
    assert not s.wake.is_set()  # no room for it: the next regular turn decides it
    s.notify([{"GPU": 1.0}, {"CPU": 1.0}])
    assert not s.wake.is_set()
    s.notify([{"CPU": 0.0}])  # asks for nothing the worker lacks: it fits
    assert s.wake.is_set()
    s.wake.clear()
    s.notify()
    assert s.wake.is_set()


def test_a_submission_with_no_worker_known_always_wakes_the_loop(store, settings, clock):
    """A turn that saw no worker leaves no room to check against: a submission then always
    looks (a worker may be joining), whatever it asks for."""
    s = scheduler_for(store, settings, clock, cpu=0)
    submit(store)
    assert s.run_once() is False  # no worker: nothing starts
    assert s._room == {}
    s.notify([{"CPU": 1.0}])
    assert s.wake.is_set()


def test_a_submission_that_fits_an_idle_cluster_skips_the_idle_gap(store, settings, clock):
    """After a turn that left nothing waiting, a job a worker has room for is served at once
    (``_prompt``); while jobs wait (a burst, a tenant at its quota) turns keep their gap."""
    s = scheduler_for(store, settings, clock, cpu=2)
    assert s.run_once() is False  # nothing queued, both CPUs free
    s.notify([{"CPU": 1.0}])
    assert s.wake.is_set() and s._prompt
    s.wake.clear()
    s._prompt = False
    submit(store, resources={"CPU": 4.0})  # fits no worker: it waits
    assert s.run_once() is False
    s.notify([{"CPU": 1.0}])
    assert s.wake.is_set() and not s._prompt


def test_a_turn_is_followed_at_once_only_if_it_may_have_left_work_unseen(store, settings, clock):
    """Each turn holds the admission lock the workers' chains wait for: one that saw the
    whole queue is not repeated at once (the next comes when an attempt ends or at the
    poll); one that read only a tenant's first candidates and left workers room is."""
    for _ in range(3):
        submit(store)
    s = scheduler_for(store, settings, clock, cpu=2)
    assert s.run_once() is True and s._look_again is False
    assert all(room == {"CPU": 0.0} for room in (s._room or {}).values())
    deep = CANDIDATES_PER_TENANT + 10
    for _ in range(deep):
        submit(store)
    big = scheduler_for(store, settings, clock, cpu=deep + 20, name="s2")
    assert big.run_once() is True and big._look_again is True
    first = len(big.executor.futures)
    assert first == CANDIDATES_PER_TENANT  # one tenant's window
    assert big.run_once() is True
    assert len(big.executor.futures) == deep + 1 and big._look_again is False


def test_a_turn_whose_only_job_went_to_a_chain_is_followed_at_once(
    store, settings, clock, monkeypatch
):
    """It started nothing, yet its worker may still be free: the next turn comes at once,
    not at the next poll."""
    submit(store)
    s = scheduler_for(store, settings, clock, cpu=1)
    taken_by_a_chain_after_the_decision(monkeypatch, store)
    assert s.run_once() is False and s._look_again is True
