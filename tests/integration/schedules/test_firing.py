"""Firing on a real store (SQLite and PostgreSQL), with an injected clock: each slot once,
across two schedulers and a scheduler that dies mid-slot; daylight-saving days; overlap;
catch-up after downtime; a revoked token."""

from __future__ import annotations

import contextlib
import threading
from collections import Counter

import sqlalchemy as sa

from tests.integration.schedules.conftest import ECHO_PIPELINE, STEPS, utc
from zhuge.jobs import schema
from zhuge.jobs.schedules import Schedules, StorePipelines
from zhuge.jobs.store import JobStore


def counts(store: JobStore) -> dict[str, int]:
    with store.engine.connect() as conn:
        runs = conn.execute(sa.select(schema.schedule_runs)).mappings().all()
        pipelines = conn.execute(sa.select(sa.func.count()).select_from(schema.pipelines)).scalar()
        jobs = conn.execute(sa.select(sa.func.count()).select_from(schema.jobs)).scalar()
        conn.rollback()
    out = Counter(r["outcome"] for r in runs)
    return {**out, "runs": len(runs), "slots": len({r["slot"] for r in runs}),
            "pipelines": pipelines, "jobs": jobs}  # fmt: skip


def fire_together(schedulers: list[Schedules]) -> list[int]:
    """Every scheduler fires at once (threads released together); the runs each recorded."""
    barrier = threading.Barrier(len(schedulers))
    recorded = [0] * len(schedulers)

    def fire(i: int) -> None:
        barrier.wait()
        recorded[i] = len(schedulers[i].fire_due())

    threads = [threading.Thread(target=fire, args=(i,)) for i in range(len(schedulers))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return recorded


def test_two_schedulers_fire_100_slots_exactly_100_times(db_url, store, clock, member):
    other = JobStore.open(db_url, clock=clock)  # a second scheduler process: its own engine
    try:
        first, second = Schedules(store), Schedules(other)
        Schedules(store).add(
            member, name="minutely", cron="* * * * *", document=ECHO_PIPELINE, overlap="queue"
        )
        start = clock.now
        for minute in range(1, 101):
            clock.set(start + 60 * minute + 1)
            assert sum(fire_together([first, second])) == 1  # one of them, never both
        assert counts(store) == {
            "fired": 100, "runs": 100, "slots": 100, "pipelines": 100, "jobs": 100 * STEPS
        }  # fmt: skip
        # restarted schedulers find nothing left to fire for those slots
        assert Schedules(store).fire_due() == [] and Schedules(other).fire_due() == []
    finally:
        other.dispose()


class Killed(BaseException):
    """The process is gone: nothing after this point of the transaction runs."""


class DiesAfterInserting(StorePipelines):
    """Inserts the slot's pipeline, then waits for the test's word and dies before the
    transaction commits."""

    def __init__(self, store: JobStore) -> None:
        super().__init__(store, None)
        self.inserted = threading.Event()
        self.die = threading.Event()

    def insert(self, conn, schedule, principal, slot):  # type: ignore[no-untyped-def]
        super().insert(conn, schedule, principal, slot)
        self.inserted.set()
        self.die.wait(timeout=60)
        raise Killed


def test_a_scheduler_killed_mid_slot_loses_and_doubles_nothing(db_url, store, clock, member):
    other = JobStore.open(db_url, clock=clock)
    try:
        dying = DiesAfterInserting(store)
        doomed, survivor = Schedules(store, pipelines=dying), Schedules(other)
        Schedules(store).add(member, name="nightly", cron="0 2 * * *", document=ECHO_PIPELINE)
        clock.set(utc(2026, 1, 1, 2, 0, 1))
        outcome: list[BaseException] = []

        def run_doomed() -> None:
            try:
                doomed.fire_due()
            except Killed as exc:
                outcome.append(exc)

        dead = threading.Thread(target=run_doomed)
        dead.start()
        assert dying.inserted.wait(timeout=60)
        # its run row and pipeline are written, not committed: another scheduler fires the
        # same slot now (it waits on the slot's key, or on SQLite's write lock)
        survived: list[int] = []
        alive = threading.Thread(target=lambda: survived.append(len(survivor.fire_due())))
        alive.start()
        dying.die.set()
        dead.join()
        alive.join()
        assert len(outcome) == 1  # the doomed one died inside its transaction
        assert survived == [1]
        assert counts(store) == {
            "fired": 1, "runs": 1, "slots": 1, "pipelines": 1, "jobs": STEPS
        }  # fmt: skip
        # and a scheduler started afterwards finds the slot done
        assert Schedules(store).fire_due() == []
    finally:
        other.dispose()


def test_a_slot_whose_scheduler_died_is_fired_after_the_restart(store, clock, member):
    dying = DiesAfterInserting(store)
    dying.die.set()
    Schedules(store).add(member, name="nightly", cron="0 2 * * *", document=ECHO_PIPELINE)
    clock.set(utc(2026, 1, 1, 2, 0, 1))
    with contextlib.suppress(Killed):
        Schedules(store, pipelines=dying).fire_due()
    assert counts(store) == {"runs": 0, "slots": 0, "pipelines": 0, "jobs": 0}
    clock.set(utc(2026, 1, 1, 2, 0, 30))  # the restarted scheduler, 29 s later
    (run,) = Schedules(store).fire_due()
    assert (run.slot, run.outcome, run.reason) == (utc(2026, 1, 1, 2), "fired", "")
    assert counts(store)["pipelines"] == 1


def walk(schedules: Schedules, clock, start: float, end: float, step: float = 300.0) -> list:
    """Fire every ``step`` seconds from ``start`` to ``end``, as housekeeping would."""
    runs = []
    t = start
    while t <= end:
        clock.set(t)
        runs.extend(schedules.fire_due())
        t += step
    return runs


def test_spring_forward_and_fall_back_days_run_as_documented(store, clock, member):
    clock.set(utc(2026, 3, 6, 12, 0))
    schedules = Schedules(store)
    add = schedules.add
    add(member, name="spring", cron="30 2 * * *", timezone="America/New_York",
        document=ECHO_PIPELINE, overlap="queue")  # fmt: skip
    runs = walk(schedules, clock, clock.now, utc(2026, 3, 10, 12, 0))
    assert [(r.slot, r.outcome) for r in runs] == [
        (utc(2026, 3, 7, 7, 30), "fired"),  # 02:30 EST
        (utc(2026, 3, 8, 7, 0), "fired"),  # 02:30 does not exist: once, at 03:00 EDT
        (utc(2026, 3, 9, 6, 30), "fired"),  # 02:30 EDT
        (utc(2026, 3, 10, 6, 30), "fired"),
    ]
    clock.set(utc(2026, 10, 30, 12, 0))
    add(member, name="fall", cron="30 1 * * *", timezone="America/New_York",
        document=ECHO_PIPELINE, overlap="queue")  # fmt: skip
    schedules.pause("acme", "spring")
    runs = walk(schedules, clock, clock.now, utc(2026, 11, 2, 12, 0))
    assert [(r.slot, r.outcome) for r in runs] == [
        (utc(2026, 10, 31, 5, 30), "fired"),  # 01:30 EDT
        (utc(2026, 11, 1, 5, 30), "fired"),  # 01:30 happens twice: once, the first (EDT)
        (utc(2026, 11, 2, 6, 30), "fired"),  # 01:30 EST
    ]
    shown = schedules.show("acme", "fall")
    assert [r["slot_local"] for r in shown["runs"]][1] == "2026-11-01T01:30:00-04:00"


def cancel_jobs(store: JobStore) -> None:
    for job in store.list(tenant="acme", limit=1000):
        if not job.is_terminal:
            store.cancel(job.id)


def test_overlap_skip_records_a_skipped_slot_while_the_previous_run_is_active(store, clock, member):
    schedules = Schedules(store)
    schedules.add(member, name="hourly", cron="0 * * * *", document=ECHO_PIPELINE)
    clock.set(utc(2026, 1, 1, 1, 0, 1))
    (first,) = schedules.fire_due()
    clock.set(utc(2026, 1, 1, 2, 0, 1))  # nothing ran the first pipeline's jobs
    (skipped,) = schedules.fire_due()
    assert (skipped.outcome, skipped.pipeline_id) == ("skipped", None)
    assert "overlap skip" in skipped.reason and f"pipeline {first.pipeline_id}" in skipped.reason
    cancel_jobs(store)  # the first run ends
    clock.set(utc(2026, 1, 1, 3, 0, 1))
    (third,) = schedules.fire_due()
    assert third.outcome == "fired" and third.pipeline_id not in (None, first.pipeline_id)
    runs = schedules.show("acme", "hourly")["runs"]
    assert [r["outcome"] for r in runs] == ["fired", "skipped", "fired"]
    assert runs[2]["pipeline_state"] == "cancelled" and runs[0]["pipeline_state"] == "waiting"


def test_catch_up_after_three_days_down_latest_fires_one_and_none_fires_none(store, clock, member):
    schedules = Schedules(store)
    for policy in ("latest", "none"):
        schedules.add(member, name=policy, cron="0 2 * * *", document=ECHO_PIPELINE,
                      catch_up=policy, overlap="queue")  # fmt: skip
    clock.set(utc(2026, 1, 1, 2, 0, 1))
    assert sorted(r.outcome for r in schedules.fire_due()) == ["fired", "fired"]
    clock.set(utc(2026, 1, 4, 9, 0))  # every scheduler was down for three days
    runs = {schedules.get("acme", "latest").id: "latest", schedules.get("acme", "none").id: "none"}
    fired = {runs[r.schedule_id]: r for r in schedules.fire_due()}
    assert fired["latest"].outcome == "fired" and fired["latest"].slot == utc(2026, 1, 4, 2)
    assert "2 earlier slot(s) since 2026-01-02 02:00 UTC not run" in fired["latest"].reason
    assert fired["none"].outcome == "missed" and fired["none"].pipeline_id is None
    assert counts(store)["pipelines"] == 3  # two on time, one caught up; none for "none"
    assert schedules.fire_due() == []  # and nothing more for those slots


def test_a_revoked_token_pauses_the_schedule_with_the_reason(store, clock, member):
    schedules = Schedules(store)
    schedules.add(member, name="nightly", cron="0 2 * * *", document=ECHO_PIPELINE,
                  overlap="queue")  # fmt: skip
    store.tenancy.revoke_token(member.token_id)
    clock.set(utc(2026, 1, 1, 2, 0, 1))
    (run,) = schedules.fire_due()
    assert (run.outcome, run.pipeline_id) == ("skipped", None)
    assert f"the token {member.token_id} that created it was revoked" in run.reason
    paused = schedules.get("acme", "nightly")
    assert paused.paused and "revoked" in (paused.paused_reason or "")
    clock.set(utc(2026, 1, 2, 2, 0, 1))
    assert schedules.fire_due() == []  # paused: nothing fires, nothing is recorded
    # resumed by another member of the tenant, it runs with that token from the next slot
    fresh = store.principal_for_token(store.issue_token("acme"))
    resumed = schedules.resume(fresh, "nightly")
    assert not resumed.paused and resumed.token_id == fresh.token_id
    clock.set(utc(2026, 1, 3, 2, 0, 1))
    (run,) = schedules.fire_due()
    assert run.outcome == "fired" and run.slot == utc(2026, 1, 3, 2)


def test_a_run_now_in_the_very_second_of_a_slot_stands_for_that_slot(store, clock, member):
    schedules = Schedules(store)
    schedules.add(member, name="hourly", cron="0 * * * *", document=ECHO_PIPELINE,
                  overlap="queue")  # fmt: skip
    clock.set(utc(2026, 1, 1, 1, 0, 0))
    manual = schedules.run_now(member, "hourly")
    assert (manual.slot, manual.trigger) == (utc(2026, 1, 1, 1), "manual")
    assert schedules.fire_due() == []  # the slot has its run: the manual one, not a second
    assert schedules.get("acme", "hourly").last_slot == utc(2026, 1, 1, 1)
    assert schedules.fire_due() == []  # and it is not tried again
    clock.set(utc(2026, 1, 1, 2, 0, 1))
    (run,) = schedules.fire_due()
    assert (run.slot, run.trigger) == (utc(2026, 1, 1, 2), "cron")
    assert counts(store)["pipelines"] == 2


def test_an_expired_token_pauses_the_schedule_too(store, clock):
    store.ensure_tenant("acme")
    token, info = store.tenancy.create_token("acme", expires_in=3600.0)
    principal = store.principal_for_token(token)
    schedules = Schedules(store)
    schedules.add(principal, name="nightly", cron="0 2 * * *", document=ECHO_PIPELINE)
    clock.set(utc(2026, 1, 1, 2, 0, 1))  # the token expired at 01:00
    (run,) = schedules.fire_due()
    assert run.outcome == "skipped" and f"the token {info.id} that created it expired" in (
        run.reason
    )
    assert schedules.get("acme", "nightly").paused
