"""The job store's semantics, on SQLite and on a real PostgreSQL."""

from __future__ import annotations

import threading

import pytest

from zhuge.errors import IdempotencyConflict, InvalidTransition, JobNotFound
from zhuge.jobs.model import Worker
from zhuge.jobs.states import JobState, LostReason
from zhuge.jobs.store import JobStore


def submit(store: JobStore, **kw):
    args = {"tenant": "t1", "kind": "sleep", "params": {"seconds": 1}} | kw
    return store.submit(**args)[0]


def claim_one(store: JobStore, owner: str = "s1"):
    (job,) = store.claim(limit=1, owner=owner, lease_seconds=30)
    return job


def test_submit_then_get_round_trips(store):
    job = submit(store, priority=5, resources={"CPU": 2.0}, max_attempts=4)
    got = store.get(job.id)
    assert got == job
    assert got.state is JobState.QUEUED
    assert (got.priority, got.resources, got.max_attempts, got.attempt) == (5, {"CPU": 2.0}, 4, 0)


def test_get_is_scoped_to_tenant(store):
    job = submit(store)
    assert store.get(job.id, tenant="t1").id == job.id
    with pytest.raises(JobNotFound):
        store.get(job.id, tenant="someone-else")
    with pytest.raises(JobNotFound):
        store.get(10**12)


def test_idempotency_same_request_returns_same_job_without_new_row(store):
    first, created1 = store.submit(tenant="t1", kind="echo", params={"a": 1}, idempotency_key="k")
    again, created2 = store.submit(tenant="t1", kind="echo", params={"a": 1}, idempotency_key="k")
    assert (created1, created2) == (True, False)
    assert again.id == first.id
    assert len(store.list(tenant="t1")) == 1


def test_idempotency_different_request_conflicts_and_writes_nothing(store):
    store.submit(tenant="t1", kind="echo", params={"a": 1}, idempotency_key="k")
    with pytest.raises(IdempotencyConflict, match="different request"):
        store.submit(tenant="t1", kind="echo", params={"a": 2}, idempotency_key="k")
    assert len(store.list(tenant="t1")) == 1


def test_idempotency_keys_are_per_tenant(store):
    a, _ = store.submit(tenant="t1", kind="echo", params={}, idempotency_key="k")
    b, created = store.submit(tenant="t2", kind="echo", params={"x": 1}, idempotency_key="k")
    assert created and a.id != b.id


def test_claim_takes_highest_priority_first_then_oldest(store):
    low = submit(store, priority=0)
    high = submit(store, priority=10)
    low2 = submit(store, priority=0)
    claimed = store.claim(limit=3, owner="s1", lease_seconds=30)
    assert [j.id for j in claimed] == [high.id, low.id, low2.id]
    assert all(j.state is JobState.RUNNING and j.attempt == 1 for j in claimed)


def test_claim_respects_not_before_and_resource_class(store, clock):
    gpu = submit(store, resources={"GPU": 1.0})
    cpu = submit(store)
    claim_one(store)
    backing_off = store.fail_attempt(cpu.id, 1, error="boom", traceback=None)
    assert backing_off.not_before > clock.now  # queued again, but not before its backoff
    clock.now = backing_off.not_before - 0.001
    assert store.claim(limit=5, owner="s", lease_seconds=30, resource_classes=["cpu"]) == []
    clock.now = backing_off.not_before
    (again,) = store.claim(limit=5, owner="s", lease_seconds=30, resource_classes=["cpu"])
    assert (again.id, again.attempt) == (cpu.id, 2)  # the GPU job is not a CPU job
    (got,) = store.claim(limit=5, owner="s", lease_seconds=30, resource_classes=["gpu"])
    assert got.id == gpu.id


def test_concurrent_claims_never_hand_out_a_job_twice(store):
    ids = {submit(store).id for _ in range(40)}
    got: list[int] = []
    lock = threading.Lock()

    def worker(name: str) -> None:
        while True:
            jobs = store.claim(limit=3, owner=name, lease_seconds=30)
            if not jobs:
                return
            with lock:
                got.extend(j.id for j in jobs)

    threads = [threading.Thread(target=worker, args=(f"s{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(got) == sorted(ids)  # each exactly once


def test_only_the_current_attempt_can_commit(store, clock):
    job = submit(store)
    first = claim_one(store)
    assert store.start_attempt(job.id, 1, worker="w1", lease_seconds=5) is not None
    clock.advance(5)  # worker w1 goes silent; its lease runs out once it is passed
    assert store.expire_leases() == []
    clock.advance(1)
    (expired,) = store.expire_leases()
    assert expired.state is JobState.QUEUED
    assert (expired.failures, expired.lost) == (0, 1)  # lost, not failed
    assert store.events(job.id)[-1].reason == "lease_lost"
    clock.advance(100)
    second = claim_one(store)
    assert second.attempt == first.attempt + 1
    # the old attempt wakes up and tries to commit: rejected, nothing written
    assert store.complete(job.id, first.attempt, result={"from": "old"}) is False
    assert not store.heartbeat(job.id, first.attempt, lease_seconds=5)
    assert store.complete(job.id, second.attempt, result={"from": "new"}) is True
    final = store.get(job.id)
    assert final.state is JobState.SUCCEEDED and final.result == {"from": "new"}
    # and a second commit of the winner is also refused: one outcome only
    assert store.complete(job.id, second.attempt, result={"again": True}) is False
    succeeded = [e for e in store.events(job.id) if e.to_state is JobState.SUCCEEDED]
    assert len(succeeded) == 1


def test_start_attempt_is_once_only(store):
    job = submit(store)
    claim_one(store)
    assert store.start_attempt(job.id, 1, worker="w1", lease_seconds=5) is not None
    assert store.start_attempt(job.id, 1, worker="w2", lease_seconds=5) is None
    assert store.get(job.id).worker == "w1"


def test_failures_back_off_then_go_dead_keeping_error_and_traceback(store, clock):
    job = submit(store, max_attempts=2)
    claim_one(store)
    after1 = store.fail_attempt(job.id, 1, error="boom 1", traceback="tb 1")
    assert after1.state is JobState.QUEUED and after1.failures == 1
    assert 5.0 <= after1.not_before - clock.now <= 10.0  # base 10 s, equal jitter
    assert store.claim(limit=1, owner="s", lease_seconds=30) == []  # still backing off
    clock.advance(10.01)
    claim_one(store)
    after2 = store.fail_attempt(job.id, 2, error="boom 2", traceback="tb 2")
    assert after2.state is JobState.DEAD
    assert (after2.error, after2.traceback) == ("boom 2", "tb 2")
    states = [e.to_state for e in store.events(job.id)]
    assert states == [
        JobState.QUEUED,
        JobState.RUNNING,
        JobState.FAILED,
        JobState.QUEUED,
        JobState.RUNNING,
        JobState.FAILED,
        JobState.DEAD,
    ]


def test_requeue_dead_by_hand_resets_failures(store):
    job = submit(store, max_attempts=1)
    claim_one(store)
    store.fail_attempt(job.id, 1, error="x", traceback=None)
    again = store.requeue_dead(job.id)
    assert again.state is JobState.QUEUED and again.failures == 0
    with pytest.raises(InvalidTransition, match="only dead jobs"):
        store.requeue_dead(job.id)


def test_release_returns_running_jobs_without_counting_a_failure(store):
    mine, theirs = submit(store), submit(store)
    store.claim(limit=1, owner="me", lease_seconds=30)
    store.claim(limit=1, owner="other", lease_seconds=30)
    assert store.release("me") == 1
    assert store.get(mine.id).state is JobState.QUEUED
    assert store.get(mine.id).failures == 0
    assert store.get(theirs.id).state is JobState.RUNNING


def test_cancel_queued_and_running_and_refuse_finished(store):
    queued = submit(store)
    running = submit(store)
    assert store.cancel(queued.id).state is JobState.CANCELLED
    claim_one(store)
    assert store.cancel(running.id).state is JobState.CANCELLED
    assert not store.heartbeat(running.id, 1, lease_seconds=5)  # the worker learns
    assert store.complete(running.id, 1, result=1) is False
    assert store.cancel(running.id).state is JobState.CANCELLED  # idempotent
    done = submit(store)
    claim_one(store)
    store.complete(done.id, 1, result=None)
    with pytest.raises(InvalidTransition):
        store.cancel(done.id)


def test_heartbeat_extends_lease_so_it_does_not_expire(store, clock):
    job = submit(store)
    claim_one(store)
    store.start_attempt(job.id, 1, worker="w", lease_seconds=5)
    for _ in range(4):
        clock.advance(3)
        assert store.heartbeat(job.id, 1, lease_seconds=5, progress={"done": 1, "total": 2})
        assert store.expire_leases() == []
    assert store.get(job.id).progress == {"done": 1, "total": 2}


def test_cpu_seconds_and_timestamps_recorded(store, clock):
    job = submit(store)
    claim_one(store)
    store.start_attempt(job.id, 1, worker="w9", lease_seconds=5)
    clock.advance(2.5)
    store.complete(job.id, 1, result={}, cpu_seconds=1.25)
    done = store.get(job.id)
    assert done.cpu_seconds == pytest.approx(1.25)
    assert done.duration_seconds == pytest.approx(2.5)
    assert done.worker == "w9" and done.created_at <= done.started_at < done.finished_at


def test_logs_page_in_order(store):
    job = submit(store)
    store.append_logs(job.id, 1, [(1.0, "a"), (2.0, "b"), (3.0, "c")])
    first = store.logs(job.id, limit=2)
    assert [line.line for line in first] == ["a", "b"]
    rest = store.logs(job.id, after_seq=first[-1].seq)
    assert [line.line for line in rest] == ["c"]


def test_tokens_map_to_tenants_and_only_hashes_are_stored(store):
    token = store.issue_token("acme")
    assert store.tenant_for_token(token) == "acme"
    assert store.tenant_for_token(token + "x") is None
    with store.engine.connect() as conn:
        stored = [r[0] for r in conn.exec_driver_sql("select token_sha256 from tokens")]
    assert token not in stored and len(stored) == 1


def test_counts_and_duration_histogram(store, clock):
    for _ in range(3):
        job = submit(store, kind="echo")
        claim_one(store)
        store.start_attempt(job.id, 1, worker="w", lease_seconds=5)
        clock.advance(0.2)
        store.complete(job.id, 1, result={})
    submit(store)
    assert store.counts() == {("echo", "succeeded"): 3, ("sleep", "queued"): 1}
    cumulative, total, count = store.duration_histogram()["echo"]
    assert count == 3 and total == pytest.approx(0.6)
    assert cumulative[0] == 0 and cumulative[2] == 3  # 0.05 s bucket empty, 0.25 s has all


def test_a_rerun_of_a_started_attempt_loses_it_at_once(db_url, tmp_path):
    """Dask re-runs a task only after the worker holding it died: the re-run must not run
    the job under the old attempt number, and must free the job for a fresh attempt."""
    from zhuge.jobs.runner import AttemptSpec, run_attempt
    from zhuge.jobs.store import store_for

    store = store_for(db_url, retry_base_seconds=0.01, retry_max_seconds=0.01)
    job, _ = store.submit(tenant="t", kind="echo", params={"x": 1})
    (claimed,) = store.claim(limit=1, owner="s", lease_seconds=30)
    store.start_attempt(job.id, claimed.attempt, worker="dead-worker", lease_seconds=30)
    spec = AttemptSpec(db_url, tmp_path.as_uri(), job.id, claimed.attempt, 30, 5)
    assert run_attempt(spec)["outcome"] == "stale"
    after = store.get(job.id)
    assert after.state is JobState.QUEUED
    assert (after.failures, after.lost) == (0, 1)
    assert "worker_died" in after.error
    assert [e.reason for e in store.events(job.id)][-2:] == ["worker_died", "worker_died"]


# -- one rule for lost attempts ------------------------------------------------------------


def _lose(store, job, reason, clock=None):
    (claimed,) = store.claim(limit=1, owner="s", lease_seconds=30)
    assert claimed.id == job.id
    store.start_attempt(job.id, claimed.attempt, worker="w", lease_seconds=30)
    after = store.lose_attempt(job.id, claimed.attempt, reason, "test")
    if clock is not None:
        clock.advance(10_000)  # past any backoff
    return after


def test_lost_attempts_spend_no_max_attempts_and_end_at_max_lost(store, clock):
    job = submit(store, max_attempts=1, max_lost=3)
    for n in (1, 2):
        after = _lose(store, job, LostReason.WORKER_DIED, clock)
        assert (after.state, after.failures, after.lost) == (JobState.QUEUED, 0, n)
    after = _lose(store, job, LostReason.LEASE_LOST, clock)
    assert (after.state, after.lost) == (JobState.DEAD, 3)
    assert after.error.startswith("attempt lost (lease_lost)")
    last = store.events(job.id)[-1]
    assert (last.from_state, last.to_state, last.reason) == (
        JobState.LOST,
        JobState.DEAD,
        "lease_lost",
    )
    assert "max_lost is 3" in last.message


def test_interruptions_count_against_nothing(store, clock):
    job = submit(store, max_attempts=1, max_lost=1)
    for reason in (LostReason.PREEMPTED, LostReason.DRAINED, LostReason.PREEMPTED):
        after = _lose(store, job, reason, clock)
        assert (after.state, after.failures, after.lost) == (JobState.QUEUED, 0, 0)
    assert {e.reason for e in store.events(job.id) if e.to_state is JobState.LOST} == {
        "preempted",
        "drained",
    }


def test_a_code_error_still_spends_an_attempt_after_losses(store, clock):
    job = submit(store, max_attempts=2)
    _lose(store, job, LostReason.WORKER_DIED, clock)
    (claimed,) = store.claim(limit=1, owner="s", lease_seconds=30)
    after = store.fail_attempt(job.id, claimed.attempt, error="ValueError: x", traceback="tb")
    assert (after.state, after.failures, after.lost) == (JobState.QUEUED, 1, 1)
    clock.advance(10_000)
    (claimed,) = store.claim(limit=1, owner="s", lease_seconds=30)
    after = store.fail_attempt(job.id, claimed.attempt, error="ValueError: x", traceback="tb")
    assert (after.state, after.failures) == (JobState.DEAD, 2)
    # retried by hand: a fresh set of attempts and of losses
    again = store.requeue_dead(job.id)
    assert (again.state, again.failures, again.lost) == (JobState.QUEUED, 0, 0)


def test_release_at_shutdown_is_a_drained_interruption(store):
    job = submit(store, max_lost=1)
    store.claim(limit=1, owner="sched", lease_seconds=30)
    assert store.release("sched") == 1
    after = store.get(job.id)
    assert (after.state, after.lost, after.failures) == (JobState.QUEUED, 0, 0)
    assert store.events(job.id)[-1].reason == "drained"


def test_max_lost_enters_the_idempotency_fingerprint_only_when_not_default(store):
    a, _ = store.submit(tenant="t1", kind="echo", params={}, idempotency_key="k", max_lost=10)
    b, created = store.submit(tenant="t1", kind="echo", params={}, idempotency_key="k")
    assert (b.id, created) == (a.id, False)
    with pytest.raises(IdempotencyConflict):
        store.submit(tenant="t1", kind="echo", params={}, idempotency_key="k", max_lost=2)


def live_worker(store, address: str, **resources: float) -> None:
    """A worker a scheduler saw just now: what admission places on."""
    store.record_workers(f"scheduler-of-{address}", [Worker(address, resources, 0.0)])


def test_claim_next_starts_the_head_of_the_queue_on_the_worker(store, clock):
    live_worker(store, "w1", CPU=1.0)
    low = submit(store, priority=0)
    high = submit(store, priority=10)
    job = store.claim_next(owner="s1", worker="w1", lease_seconds=30, resources={"CPU": 1.0})
    assert job.id == high.id
    assert (job.state, job.attempt, job.worker, job.started_at) == (
        JobState.RUNNING,
        1,
        "w1",
        clock.now,
    )
    # started already: a scheduler's start_attempt for it finds nothing to do
    assert store.start_attempt(job.id, 1, worker="w2", lease_seconds=30) is None
    # the lease is the scheduler's: its clean shutdown gives the job back like any other
    assert store.release("s1") == 1
    assert store.get(high.id).state is JobState.QUEUED
    assert store.get(low.id).state is JobState.QUEUED
    (event,) = [e for e in store.events(high.id) if e.to_state is JobState.RUNNING]
    assert event.message == "claimed by s1, chained on w1"


def test_claim_next_takes_only_what_admission_starts_on_this_worker_with_these_resources(
    store, clock
):
    live_worker(store, "w", CPU=2.0)
    big = submit(store, priority=5, resources={"CPU": 2.0})
    small = submit(store, priority=0)
    # admission would start `big` on w, which is not a task holding CPU=1: nothing claimed,
    # and `small` does not jump ahead of it (big takes the whole worker)
    assert store.claim_next(owner="s", worker="w", lease_seconds=30, resources={"CPU": 1.0}) is None
    assert store.get(big.id).state is JobState.QUEUED
    assert store.get(small.id).state is JobState.QUEUED
    got = store.claim_next(owner="s", worker="w", lease_seconds=30, resources={"CPU": 2.0})
    assert (got.id, got.assigned_workers) == (big.id, ["w"])
    # big holds both CPUs of w: nothing fits there until it ends
    assert store.claim_next(owner="s", worker="w", lease_seconds=30, resources={"CPU": 1.0}) is None
    assert store.complete(big.id, got.attempt, result=None)
    gpu = submit(store, priority=9, resources={"GPU": 1.0})
    nxt = store.claim_next(owner="s", worker="w", lease_seconds=30, resources={"CPU": 1.0})
    assert nxt.id == small.id  # no worker offers a GPU: that job does not hold the line
    assert store.get(gpu.id).state is JobState.QUEUED
    # an unknown worker (not live in any scheduler's census) is given nothing
    assert (
        store.claim_next(owner="s", worker="gone", lease_seconds=30, resources={"CPU": 1.0}) is None
    )


def test_demand_counts_the_shapes_that_wait_only_for_capacity(store, clock):
    live_worker(store, "w", CPU=2.0)
    big = [submit(store, resources={"CPU": 2.0}) for _ in range(3)]
    submit(store, resources={"GPU": 1.0})
    submit(store, tenant="t2", resources={"CPU": 4.0})

    def shapes():
        return {(tuple(sorted(d.resources.items())), d.gang): d.count for d in store.demand()}

    # one CPU=2 job fits the worker now; two more, the GPU job and the CPU=4 job would
    # start if there were room
    assert shapes() == {
        ((("CPU", 2.0),), 1): 2,
        ((("CPU", 4.0),), 1): 1,
        ((("GPU", 1.0),), 1): 1,
    }
    assert all(store.get(j.id).state is JobState.QUEUED for j in big)  # nothing claimed
    # with a quota that stops t1 at 2 CPU, its extra CPU=2 jobs wait for quota: no room
    # would start them, so they are not demand
    store.queues.apply("tenants: {t1: {nominal: {CPU: 2}, borrowing_limit: {CPU: 0}}}")
    assert ((("CPU", 2.0),), 1) not in shapes()


def test_claim_next_waits_for_not_before(store, clock):
    live_worker(store, "w", CPU=1.0)
    job = submit(store)
    store.claim(limit=1, owner="s", lease_seconds=30)
    store.fail_attempt(job.id, 1, error="boom", traceback=None)  # back to queued, with backoff
    assert store.claim_next(owner="s", worker="w", lease_seconds=30, resources={"CPU": 1.0}) is None
    clock.advance(1000)
    live_worker(store, "w", CPU=1.0)  # still there: its scheduler saw it again
    again = store.claim_next(owner="s", worker="w", lease_seconds=30, resources={"CPU": 1.0})
    assert (again.id, again.attempt) == (job.id, 2)


def test_cancelled_attempts_names_only_cancelled_jobs(store):
    submit(store)
    a = claim_one(store)
    b = submit(store)
    store.cancel(a.id)
    assert store.cancelled_attempts([(a.id, a.attempt), (b.id, 0)]) == {(a.id, a.attempt)}
    assert store.cancelled_attempts([]) == set()


def test_list_filters_by_state_and_kind_and_pages_newest_first(store):
    echoes = [submit(store, kind="echo") for _ in range(5)]
    sleep = submit(store)
    submit(store, tenant="t2", kind="echo")
    store.cancel(echoes[1].id)
    assert [j.id for j in store.list(tenant="t1")] == [sleep.id] + [e.id for e in echoes[::-1]]
    queued_echoes = store.list(tenant="t1", kind="echo", state=JobState.QUEUED)
    assert [j.id for j in queued_echoes] == [echoes[i].id for i in (4, 3, 2, 0)]
    first = store.list(tenant="t1", kind="echo", limit=2)
    rest = store.list(tenant="t1", kind="echo", limit=2, before_id=first[-1].id)
    last = store.list(tenant="t1", kind="echo", limit=2, before_id=rest[-1].id)
    pages = [[j.id for j in page] for page in (first, rest, last)]
    assert pages == [[echoes[4].id, echoes[3].id], [echoes[2].id, echoes[1].id], [echoes[0].id]]


def test_unstarted_attempts_keep_their_lease_only_while_their_scheduler_renews_it(store, clock):
    job = submit(store)
    claim_one(store, owner="s1")
    clock.advance(20)
    assert store.renew_unstarted("s2", lease_seconds=30) == 0  # not its attempt
    assert store.renew_unstarted("s1", lease_seconds=30) == 1
    clock.advance(20)  # 40 s after the claim, 20 s after the renewal
    assert store.expire_leases() == []
    store.start_attempt(job.id, 1, worker="w", lease_seconds=30)
    assert store.renew_unstarted("s1", lease_seconds=30) == 0  # started: its heartbeat renews
    clock.advance(31)
    (lost,) = store.expire_leases()
    assert (lost.id, lost.lost, lost.failures) == (job.id, 1, 0)


def test_what_the_cluster_offers_is_read_again_after_workers_change_here(store, db_url):
    """``offered`` (what a submission's resources are checked against) is kept for up to
    ``OFFER_SECONDS``, but recording or forgetting workers through this store forgets it at
    once, and an empty cluster is never kept: a worker another process records is seen by the
    next submission, with no wait."""
    assert store.offered() == {}
    other = JobStore.open(db_url)  # another process's store, on the same database
    try:
        other.record_workers("elsewhere", [Worker("tcp://a", {"CPU": 4.0}, 0.0)])
        assert store.offered() == {"CPU": 4.0}
        store.record_workers("here", [Worker("tcp://b", {"CPU": 2.0, "GPU": 1.0}, 0.0)])
        assert store.offered() == {"CPU": 4.0, "GPU": 1.0}
        store.forget_workers("here")
        assert store.offered() == {"CPU": 4.0}
    finally:
        other.dispose()
