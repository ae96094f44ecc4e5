"""Job dependencies on the store (``zhuge.jobs.dependencies``), on SQLite and PostgreSQL:
diamonds, failure propagation, retry of an upstream job, refusals, and a blocked job that
no queue depth, demand or metric counts."""

from __future__ import annotations

import threading

import pytest
from prometheus_client import generate_latest

from zhuge.api.metrics import registry_for
from zhuge.errors import IdempotencyConflict, InvalidRequest
from zhuge.jobs.model import Worker
from zhuge.jobs.states import JobState
from zhuge.jobs.store import JobRequest, JobStore


def submit(store: JobStore, after=(), **kw):
    args = {"tenant": "t1", "kind": "sleep", "params": {"seconds": 1}, "after": after} | kw
    return store.submit(**args)[0]


def run_to_success(store: JobStore, job_id: int) -> None:
    owner = f"run-{job_id}"
    claimed = store.claim(limit=100, owner=owner, lease_seconds=30)
    (job,) = [j for j in claimed if j.id == job_id]
    assert store.complete(job.id, job.attempt, result={"ok": True})
    store.release(owner)  # put back what this test did not mean to run


def kill(store: JobStore, job_id: int) -> None:
    """Run ``job_id`` to ``dead``: one attempt whose bad input no retry can help."""
    owner = f"kill-{job_id}"
    (job,) = [j for j in store.claim(limit=100, owner=owner, lease_seconds=30) if j.id == job_id]
    dead = store.fail_attempt(job.id, job.attempt, error="boom", traceback=None, retryable=False)
    assert dead is not None and dead.state is JobState.DEAD
    store.release(owner)


def states(store: JobStore, *jobs) -> list[str]:
    return [store.get(j.id).state.value for j in jobs]


def has_dependents(store: JobStore, *jobs) -> list[bool]:
    import sqlalchemy as sa

    from zhuge.jobs.schema import jobs as J

    with store.engine.connect() as conn:
        rows = dict(conn.execute(sa.select(J.c.id, J.c.has_dependents)).all())
    return [bool(rows[j.id]) for j in jobs]


def test_only_a_job_something_waits_for_is_marked_as_having_dependents(store):
    """``jobs.has_dependents`` is what lets a success skip looking for dependents: set with
    the first edge to a job (by a submission or a batch), never on others."""
    a, b = submit(store), submit(store)
    assert has_dependents(store, a, b) == [False, False]
    c = submit(store, after=[a.id])
    (d, _), (e, _) = store.submit_many(
        tenant="t1",
        requests=[JobRequest("sleep", {"seconds": 1}, after=(c.id,)), JobRequest("sleep", {})],
    )
    assert has_dependents(store, a, b, c, d, e) == [True, False, True, False, False]
    run_to_success(store, a.id)  # its dependent is released, as before the flag
    assert states(store, c) == ["queued"]


def test_a_diamond_runs_each_job_after_all_its_upstream_jobs(store):
    a = submit(store)
    b, c = submit(store, after=[a.id]), submit(store, after=[a.id])
    d = submit(store, after=[b.id, c.id])
    assert states(store, a, b, c, d) == ["queued", "blocked", "blocked", "blocked"]
    assert [j.id for j in store.claim(limit=10, owner="s", lease_seconds=30)] == [a.id]
    store.release("s")

    run_to_success(store, a.id)
    assert states(store, b, c, d) == ["queued", "queued", "blocked"]
    run_to_success(store, b.id)
    assert states(store, d) == ["blocked"]  # c has not succeeded yet
    run_to_success(store, c.id)
    assert states(store, d) == ["queued"]
    events = store.events(d.id)
    assert events[0].message == f"submitted after job {b.id}, {c.id}"
    assert (events[-1].from_state, events[-1].to_state) == (JobState.BLOCKED, JobState.QUEUED)
    assert f"the last: job {c.id}" in events[-1].message
    assert store.upstream([d.id]) == {d.id: [b.id, c.id]}


def test_a_job_after_succeeded_jobs_is_queued_at_once(store):
    a = submit(store)
    run_to_success(store, a.id)
    assert submit(store, after=[a.id]).state is JobState.QUEUED


def test_a_dead_upstream_cancels_its_dependents_transitively(store):
    a, unrelated = submit(store), submit(store)
    b = submit(store, after=[a.id])
    c = submit(store, after=[b.id, unrelated.id])
    kill(store, a.id)
    assert states(store, b, c, unrelated) == ["cancelled", "cancelled", "queued"]
    assert store.get(b.id).cancelled_by == a.id and store.get(c.id).cancelled_by == a.id
    assert store.events(b.id)[-1].message == f"upstream job {a.id} is dead"
    assert store.events(c.id)[-1].message == (
        f"upstream job {b.id} was cancelled (job {a.id} is dead)"
    )
    assert "upstream job" in store.get(c.id).error


def test_a_cancelled_upstream_cancels_its_dependents(store):
    a = submit(store)
    b = submit(store, after=[a.id])
    c = submit(store, after=[b.id])
    store.cancel(a.id)
    assert states(store, b, c) == ["cancelled", "cancelled"]
    assert store.events(b.id)[-1].message == f"upstream job {a.id} is cancelled"


def test_cancelling_a_blocked_job_cancels_its_dependents_only(store):
    a = submit(store)
    b = submit(store, after=[a.id])
    c = submit(store, after=[b.id])
    store.cancel(b.id)
    assert states(store, a, b, c) == ["queued", "cancelled", "cancelled"]


def test_retrying_a_dead_upstream_requeues_the_dependents_it_cancelled(store):
    a = submit(store)
    b = submit(store, after=[a.id])
    c = submit(store, after=[b.id])
    kill(store, a.id)
    store.requeue_dead(a.id)
    assert states(store, a, b, c) == ["queued", "blocked", "blocked"]
    assert store.get(b.id).cancelled_by is None and store.get(b.id).error is None
    assert store.events(b.id)[-1].message == f"upstream job {a.id} retried"
    run_to_success(store, a.id)
    run_to_success(store, b.id)
    assert states(store, c) == ["queued"]


def test_retry_leaves_cancelled_a_dependent_another_dead_upstream_still_holds(store):
    a, x = submit(store), submit(store)
    d = submit(store, after=[a.id, x.id])
    kill(store, a.id)  # cancels d
    kill(store, x.id)  # d already cancelled
    store.requeue_dead(a.id)
    assert states(store, a, d) == ["queued", "cancelled"]


def test_refused_after_an_unknown_or_other_tenants_job_with_nothing_stored(store):
    theirs = submit(store, tenant="t2")
    before = len(store.list())
    with pytest.raises(InvalidRequest, match=f"job {theirs.id} does not exist"):
        submit(store, after=[theirs.id])
    with pytest.raises(InvalidRequest, match="job 999999 does not exist"):
        submit(store, after=[999999])
    with pytest.raises(InvalidRequest, match="not a job id"):
        submit(store, after=["x"])
    assert len(store.list()) == before


def test_refused_after_a_dead_job(store):
    a = submit(store)
    kill(store, a.id)
    before = len(store.list())
    with pytest.raises(InvalidRequest, match=f"job {a.id} is dead"):
        submit(store, after=[a.id])
    assert len(store.list()) == before


def test_idempotency_key_tells_different_upstream_jobs_apart(store):
    a, b = submit(store), submit(store)
    first = submit(store, after=[a.id], idempotency_key="k")
    again, created = store.submit(
        tenant="t1", kind="sleep", params={"seconds": 1}, after=[a.id], idempotency_key="k"
    )
    assert (again.id, created) == (first.id, False)
    with pytest.raises(IdempotencyConflict):
        submit(store, after=[b.id], idempotency_key="k")


def test_a_blocked_job_is_never_claimed_nor_counted_as_queued(store):
    store.record_workers("s1", [Worker("w1", {"CPU": 4.0}, 0.0)])
    a = submit(store)
    run_to_success(store, a.id)
    running = submit(store)
    store.claim(limit=1, owner="s1", lease_seconds=30)
    blocked = [submit(store, after=[running.id]) for _ in range(3)]

    assert store.counts()[("sleep", "blocked")] == 3
    assert ("sleep", "queued") not in store.counts()
    assert store.demand() == []
    assert store.admit(owner="s1", workers=store.workers(), lease_seconds=30).started == []
    status = store.queues.status()
    assert status.cluster.queued == 0
    assert [t.queued for t in status.tenants] == [0]
    metrics = generate_latest(registry_for(store)).decode()
    assert "zhuge_queue_depth 0.0" in metrics
    assert 'zhuge_jobs{kind="sleep",state="blocked"} 3.0' in metrics
    why = store.queues.why(blocked[0].id)
    assert why.summary == f"job {blocked[0].id} is blocked: it waits for job {running.id} (running)"


ROUNDS = 15


def _together(*actions) -> None:
    """Run ``actions`` in threads released at once by a barrier; re-raise what they raised."""
    barrier = threading.Barrier(len(actions))
    errors: list[BaseException] = []

    def run(action) -> None:
        barrier.wait()
        try:
            action()
        except BaseException as exc:  # reported to the test below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(a,)) for a in actions]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


def test_two_upstream_jobs_succeeding_at_once_always_release_their_dependent(store):
    for _ in range(ROUNDS):
        x, y = submit(store), submit(store)
        d = submit(store, after=[x.id, y.id])
        running = {j.id: j for j in store.claim(limit=2, owner="s", lease_seconds=30)}
        _together(
            *(
                lambda job=job: store.complete(job.id, job.attempt, result={})
                for job in running.values()
            )
        )
        assert states(store, d) == ["queued"]
        store.cancel(d.id)


def test_a_dependent_submitted_as_its_upstream_succeeds_is_never_left_blocked(store):
    for _ in range(ROUNDS):
        x = submit(store)
        (job,) = store.claim(limit=1, owner="s", lease_seconds=30)
        made: list = []
        _together(
            lambda made=made, x=x: made.append(submit(store, after=[x.id])),
            lambda job=job: store.complete(job.id, job.attempt, result={}),
        )
        assert states(store, *made) == ["queued"]
        store.cancel(made[0].id)
