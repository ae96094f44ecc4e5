"""A busy queue's races between a scheduler's turn and the workers' chains, on SQLite and on
a real PostgreSQL: a chain takes the head of the queue without the admission lock, so a
decision made under the lock may find the job it chose gone by the time it claims it.

Each race is staged in the transaction itself (the job is taken through the decision's own
connection, between the decision and its claim), so nothing depends on timing."""

from __future__ import annotations

import sqlalchemy as sa

from tests.conftest import empty_store, wait_for
from zhuge.jobs import schema
from zhuge.jobs.admission import Decision, Preempt
from zhuge.jobs.claims import CHAIN_PLAN_DEPTH, ChainPlan
from zhuge.jobs.model import Worker
from zhuge.jobs.states import JobState
from zhuge.jobs.store import JobRequest, JobStore

J = schema.jobs


def live(store: JobStore, *addresses: str) -> list[Worker]:
    workers = [Worker(a, {"CPU": 1.0}, 0.0) for a in addresses]
    store.record_workers("s", workers)
    return workers


def queue(store: JobStore, n: int, **kw) -> list[int]:
    jobs = store.submit_many(tenant="t", requests=[JobRequest("echo", {}, **kw) for _ in range(n)])
    return [j.id for j, _ in jobs]


def taken_by_a_chain_after_the_decision(monkeypatch, store: JobStore, how_many: int = 1):
    """Every decision from now on is followed, in its own transaction, by a chain on another
    worker taking the first ``how_many`` jobs it starts: what a chain that committed between
    the decision and the claim leaves behind. Returns the ids taken."""
    taken: list[int] = []
    decide = store.claims._decide

    def deciding(conn, *args, **kwargs):
        decision, reasons, seen = decide(conn, *args, **kwargs)
        for start in decision.start[:how_many]:
            conn.execute(
                J.update()
                .where(J.c.id == start.job_id)
                .values(state=JobState.RUNNING.value, attempt=1, worker="chain", lease_owner="s")
            )
            taken.append(start.job_id)
        return decision, reasons, seen

    monkeypatch.setattr(store.claims, "_decide", deciding)
    return taken


def test_a_turn_starts_a_twin_of_a_job_a_chain_took_meanwhile(store, clock, monkeypatch):
    workers = live(store, "w1")
    first, second, *_ = queue(store, 4)
    taken = taken_by_a_chain_after_the_decision(monkeypatch, store)
    admitted = store.admit(owner="s", workers=workers, lease_seconds=30)
    assert taken == [first]
    # the next job of the same tenant and shape starts where the decision placed the first
    assert [(j.id, j.assigned_workers) for j in admitted.started] == [(second, ["w1"])]
    assert not (admitted.unseen or admitted.raced)  # it saw the whole queue and started it


def test_a_twin_must_be_indistinguishable_and_a_turn_without_one_looks_again(
    store, clock, monkeypatch
):
    workers = live(store, "w1")
    (first,) = queue(store, 1)
    bigger = queue(store, 1, resources={"CPU": 0.5})  # not its twin: another shape
    taken = taken_by_a_chain_after_the_decision(monkeypatch, store)
    admitted = store.admit(owner="s", workers=workers, lease_seconds=30)
    assert taken == [first]
    assert admitted.started == []
    assert store.get(bigger[0]).state is JobState.QUEUED
    # nothing took its place: the scheduler is told its worker may still be free
    assert admitted.raced and not admitted.unseen


def test_a_chains_decision_takes_a_twin_when_another_chain_took_its_job(store, clock, monkeypatch):
    live(store, "w1")
    first, second, *_ = queue(store, 3)
    taken = taken_by_a_chain_after_the_decision(monkeypatch, store)
    job = store.claim_next(owner="s", worker="w1", lease_seconds=30, resources={"CPU": 1.0})
    assert taken == [first]
    assert (job.id, job.worker) == (second, "w1")


def test_a_chain_whose_plan_is_spent_decides_in_the_transaction_that_ends_its_job(
    store, clock, monkeypatch
):
    """No turn may see the worker free between two jobs of a chain: the next job is
    decided before the finished one is committed."""
    live(store, "w1")
    queue(store, 1)
    job = store.claim_next(owner="s", worker="w1", lease_seconds=30, resources={"CPU": 1.0})
    later = queue(store, 1)[0]  # not in the job's chain plan: a decision must find it
    seen_from_outside = []
    claim_next = store.claims.claim_next

    outside = sa.create_engine(store.engine.url)  # a plain reader, not the store's writer

    def deciding(conn, **kwargs):
        with outside.connect() as other:
            seen_from_outside.append(
                other.execute(sa.select(J.c.state).where(J.c.id == job.id)).scalar()
            )
            other.rollback()
        return claim_next(conn, **kwargs)

    monkeypatch.setattr(store.claims, "claim_next", deciding)
    committed, nxt = store.complete_and_claim_next(
        job.id,
        job.attempt,
        result=None,
        owner="s",
        worker="w1",
        lease_seconds=30,
        resources={"CPU": 1.0},
    )
    assert committed and nxt.id == later and nxt.worker == "w1"
    # while the decision ran, the finished job was not yet committed for anyone else
    assert seen_from_outside == [JobState.RUNNING.value]
    assert store.get(job.id).state is JobState.SUCCEEDED
    outside.dispose()


def test_a_turn_does_not_wait_for_a_victim_a_chain_holds(postgres_url, clock):
    """PostgreSQL (SQLite serialises writers: no other transaction holds a row): asking an
    attempt to yield skips it while another transaction holds its row (its chain ending
    it, perhaps waiting for the admission lock this turn holds)."""
    store = JobStore.open(empty_store(postgres_url), clock=clock)
    live(store, "w1")
    (victim,) = queue(store, 1)
    store.claim(limit=1, owner="s", lease_seconds=30)
    decision = Decision(preempt=[Preempt(victim, 0, "reclaimed")])
    with store.engine.connect() as chain:
        chain.execute(sa.select(J.c.id).where(J.c.id == victim).with_for_update())
        with store.engine.begin() as turn:
            turn.exec_driver_sql("SET LOCAL lock_timeout = '5s'")  # a wait fails, not hangs
            assert store.claims._ask_to_yield(turn, decision, clock()) == []
        chain.rollback()
    with store.engine.begin() as turn:
        assert store.claims._ask_to_yield(turn, decision, clock()) == [victim]
    store.dispose()


def test_statistics_are_refreshed_after_a_burst_of_submissions(store):
    if not store.is_postgres:
        assert store.refresh_statistics() is False  # SQLite plans without them
        return
    with store.engine.begin() as conn:
        # autovacuum's own ANALYZE, whenever it comes, would reset what this test counts
        conn.exec_driver_sql("ALTER TABLE jobs SET (autovacuum_enabled = false)")
        conn.exec_driver_sql("ANALYZE jobs")  # of the emptied table: the burst comes next
    queue(store, 300)
    changed = sa.text(
        "SELECT n_mod_since_analyze FROM pg_stat_user_tables WHERE relid = CAST('jobs' AS regclass)"
    )

    def counted() -> int:  # a backend reports its counts when idle, at most once a second
        with store.engine.connect() as conn:
            conn.exec_driver_sql("SELECT pg_stat_clear_snapshot()")
            return conn.execute(changed).scalar()

    wait_for(counted, until=lambda n: n >= 300, what="the inserts in the statistics")
    try:
        assert store.refresh_statistics() is True
        assert store.refresh_statistics() is False  # nothing changed since
    finally:
        with store.engine.begin() as conn:
            conn.exec_driver_sql("ALTER TABLE jobs RESET (autovacuum_enabled)")


def _plan(store: JobStore, job_id: int) -> ChainPlan | None:
    with store.engine.connect() as conn:
        stored = conn.execute(sa.select(J.c.chain_plan).where(J.c.id == job_id)).scalar()
    return ChainPlan.load(stored)


def _end_and_follow(store: JobStore, job, worker: str):
    committed, nxt = store.complete_and_claim_next(
        job.id, job.attempt, result=None, owner="s", worker=worker, lease_seconds=30,
        resources={"CPU": 1.0},
    )  # fmt: skip
    assert committed
    return nxt


def test_a_chains_decision_plans_for_every_chain_of_its_shape(store, clock, monkeypatch):
    """Two chains of one shape take jobs from the same head of the queue: one plan for both
    (on both rows), which they follow in turn, no decision between, until it is spent."""
    live(store, "w1", "w2")
    queue(store, 60)
    a = store.claim_next(owner="s", worker="w1", lease_seconds=30, resources={"CPU": 1.0})
    b = store.claim_next(owner="s", worker="w2", lease_seconds=30, resources={"CPU": 1.0})
    shared = _plan(store, b.id)
    assert shared is not None and _plan(store, a.id) == shared  # written on w1's attempt too
    assert len(shared.jobs) > CHAIN_PLAN_DEPTH  # a plan for both places, not one
    decisions = []
    decide = store.claims._decide
    monkeypatch.setattr(
        store.claims, "_decide", lambda *a, **k: decisions.append(1) or decide(*a, **k)
    )
    taken = []
    for _ in range(len(shared.jobs) // 2):
        a = _end_and_follow(store, a, "w1")
        b = _end_and_follow(store, b, "w2")
        taken += [a.id, b.id]
    assert decisions == []
    assert taken == [i for i, _ in shared.jobs][: len(taken)]  # the plan, in its order


def test_a_chain_whose_plan_is_spent_follows_a_newer_plan_of_its_group(store, clock, monkeypatch):
    """A decision could not write its plan on an attempt that was ending at the time (its
    row held): that chain, finding its own plan spent, follows the group's newer plan
    instead of deciding again."""
    live(store, "w1", "w2")
    queue(store, 60)
    a = store.claim_next(owner="s", worker="w1", lease_seconds=30, resources={"CPU": 1.0})
    b = store.claim_next(owner="s", worker="w2", lease_seconds=30, resources={"CPU": 1.0})
    newer = _plan(store, b.id)
    # what w1's attempt holds when the plan was not written on it: a spent plan of the group
    spent = ChainPlan(newer.group, newer.seen - 1, ((b.id, "t"),))
    with store.engine.begin() as conn:
        conn.execute(J.update().where(J.c.id == a.id).values(chain_plan=spent.dump()))
    decisions = []
    decide = store.claims._decide
    monkeypatch.setattr(
        store.claims, "_decide", lambda *a, **k: decisions.append(1) or decide(*a, **k)
    )
    nxt = _end_and_follow(store, a, "w1")
    assert decisions == []
    assert nxt.id == newer.jobs[0][0] and _plan(store, nxt.id) == newer
    assert store.events(nxt.id)[-1].message.endswith("as planned")
