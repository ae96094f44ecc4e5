"""The issue's scenarios, replayed through the real ``admission.decide`` by the simulator.

Every number here is simulated time: nothing depends on how fast this machine is.
"""

from __future__ import annotations

import pytest

from tests.unit.admission.conftest import job, run, workers
from zhuge.jobs.admission import (
    NO_WORKER,
    Candidate,
    QueueConfig,
    Running,
    Snapshot,
    WorkerSlot,
    decide,
)
from zhuge.jobs.simulate import simulate


def _saturating(weights: dict[str, float], jobs_per_weight: int) -> list:
    """Every tenant floods the cluster at t=0 with jobs in proportion to its weight, so all
    stay backlogged together for most of the run; durations vary so completions interleave."""
    trace = []
    for tenant, weight in weights.items():
        for i in range(int(jobs_per_weight * weight)):
            trace.append(job(i * 0.01, tenant, 200 + 37 * (i % 7), CPU=2, memory_gb=4))
    return trace


@pytest.mark.parametrize(
    "weights",
    [{"a": 1, "b": 1, "c": 2}, {"a": 1, "b": 1, "c": 1}],
    ids=["weights 1:1:2", "three equal tenants"],
)
def test_saturating_tenants_share_the_cluster_by_weight(weights) -> None:
    config = {"tenants": {t: {"weight": w} for t, w in weights.items()}}
    result = run(_saturating(weights, 50), workers(4, CPU=8, memory_gb=32), config)
    total = sum(weights.values())
    for t in result.tenants:
        assert t.contended_share is not None
        expected = weights[t.tenant] / total
        assert abs(t.contended_share - expected) / expected < 0.10, (t.tenant, t.contended_share)
        assert t.finished == t.jobs
    assert result.jain_index > 0.99
    assert result.utilisation["CPU"] > 0.9  # saturated: fair share does not leave holes


def test_a_large_job_waits_a_bounded_time_while_small_jobs_keep_flowing() -> None:
    reservation_after, timeout = 300.0, 200.0
    trace = [job(t, "small", 100, CPU=1, timeout_s=timeout) for t in range(0, 3000, 5)]
    trace.append(job(50, "big", 500, CPU=8, timeout_s=1000))
    config = {"reservation_after": reservation_after}
    result = run(trace, workers(2, CPU=8), config)
    big = next(j for j in result.jobs.values() if j.tenant == "big")
    assert big.wait_s is not None
    # the bound: passed over until reservation_after, then the reserved worker drains within
    # the longest timeout of the jobs on it
    assert big.wait_s <= reservation_after + timeout + 5
    assert big.wait_s >= 100  # it really was passed over first (no capacity was held idle)
    waiting = [j for j in result.jobs.values() if j.tenant == "small" and j.first_start]
    during = [j for j in waiting if 50 < j.first_start < 50 + big.wait_s]
    assert len(during) > 20  # small jobs kept flowing while it waited
    assert any("reserved" in r for r in big.reasons)


def test_a_saturated_flood_stays_in_fair_order_once_its_jobs_starve() -> None:
    """Old jobs of a flooding tenant do not jump ahead of a light tenant: waiting one's
    turn is not being passed over, so no reservation takes the flood first."""
    trace = [job(0, "flood", 300, CPU=1) for _ in range(400)]
    trace += [job(t, "light", 100, CPU=1) for t in range(2000, 4000, 200)]
    result = run(trace, workers(2, CPU=8), {"reservation_after": 600})
    light = result.tenant("light")
    assert light.wait_p95_s is not None and light.wait_p95_s <= 300  # one flood job's length


def test_no_head_of_line_blocking_behind_a_big_head() -> None:
    trace = [
        job(0, "a", 1000, CPU=4),  # holds half the only worker
        job(10, "a", 100, CPU=8, priority=10),  # the head: does not fit until t=1000
        job(20, "a", 100, CPU=2, priority=5),  # fits now
        job(30, "a", 100, CPU=2, priority=0),  # fits now too
    ]
    result = run(trace, workers(1, CPU=8))
    assert result.jobs[3].first_start == 20
    assert result.jobs[4].first_start == 30
    assert result.jobs[2].first_start == 1000
    assert any(r.startswith("waiting for capacity: needs CPU=8") for r in result.jobs[2].reasons)


COHORT = {
    "cohorts": {"team": {"tenants": ["lender", "borrower"]}},
    "tenants": {
        "lender": {"nominal": {"CPU": 8}},
        "borrower": {"nominal": {"CPU": 8}},
    },
    "preemption": {"reclaim_within_cohort": "any", "grace": "30s"},
}


def test_borrowing_while_a_cohort_tenant_is_idle_then_reclaim_preempts() -> None:
    trace = [job(0, "borrower", 1000, CPU=1, priority=1 if i < 8 else 0) for i in range(16)]
    trace += [job(100, "lender", 100, CPU=1) for _ in range(4)]
    result = run(trace, workers(2, CPU=8), COHORT)
    # borrowed: all 16 ran at once on the lender's idle nominal
    assert all(result.jobs[i].first_start == 0 for i in range(1, 17))
    borrower = result.tenant("borrower")
    assert borrower.preemptions == 4
    preempted = [e for e in result.timeline if e[1] == "preempt"]
    # the borrower's lowest priority, newest first
    assert sorted(e[2] for e in preempted) == [13, 14, 15, 16]
    assert all(e[0] == 100 and "reclaim" in e[3] for e in preempted)
    # the lender starts once the victims have stopped (the grace period)
    assert all(result.jobs[i].first_start == 130 for i in range(17, 21))
    # victims are queued again with their age and finish later
    assert all(
        result.jobs[i].state == "succeeded" and len(result.jobs[i].starts) == 2
        for i in (13, 14, 15, 16)
    )


def test_no_reclaim_when_the_policy_says_never() -> None:
    config = {**COHORT, "preemption": {"reclaim_within_cohort": "never"}}
    trace = [job(0, "borrower", 1000, CPU=1) for _ in range(16)]
    trace += [job(100, "lender", 100, CPU=1)]
    result = run(trace, workers(2, CPU=8), config)
    assert result.tenant("borrower").preemptions == 0
    assert result.jobs[17].first_start == 1000


def test_fractional_gpus_share_one_device_and_a_whole_one_waits() -> None:
    trace = [
        job(0, "a", 100, CPU=1, GPU=0.5),
        job(0, "a", 100, CPU=1, GPU=0.5),
        job(0, "a", 100, CPU=1, GPU=1.0),
    ]
    result = run(trace, workers(1, prefix="gpu", CPU=8, GPU=1))
    half1, half2, whole = (result.jobs[i] for i in (1, 2, 3))
    assert half1.first_start == half2.first_start == 0  # they overlap in time
    assert whole.first_start == 100
    assert any("GPU=1" in r for r in whole.reasons)


@pytest.mark.parametrize(("every", "first"), [("100s", "old"), (0, "new")])
def test_aging_lets_an_old_low_priority_job_overtake(every, first) -> None:
    trace = [
        job(0, "a", 1000, CPU=1),  # holds the one slot until t=1000
        job(1, "a", 10, CPU=1, priority=0),  # old, low priority: aged +9.99 by t=1000
        job(500, "a", 10, CPU=1, priority=3),  # newer, higher: aged +5 by t=1000
    ]
    result = run(trace, workers(1, CPU=1), {"aging": {"every": every}})
    old, new = result.jobs[2], result.jobs[3]
    assert (old.first_start < new.first_start) == (first == "old")


def test_pending_reasons_in_words() -> None:
    config = {"tenants": {"capped": {"nominal": {"CPU": 2}, "borrowing_limit": {"CPU": 0}}}}
    pool = workers(2, prefix="gpu", CPU=8, GPU=1) + workers(2, prefix="cpu", CPU=8)
    trace = [
        job(0, "capped", 100, CPU=1),
        job(0, "capped", 100, CPU=1),
        job(0, "capped", 100, CPU=1),
        job(0, "trainer", 100, CPU=1, GPU=1, gang=4),
        job(0, "x", 100, CPU=1, ssd=1),  # ignored column: asks CPU only
    ]
    result = run(trace, pool, config)
    assert result.jobs[3].reasons[0] == (
        "waiting for quota: capped uses 2/2 CPU and may borrow at most 0"
    )
    assert result.jobs[4].reasons[0].startswith("waiting for a gang of 4 workers with CPU=1, GPU=1")
    assert "only 2 offer that much" in result.jobs[4].reasons[0]
    assert result.jobs[4].first_start is None
    assert result.to_dict()["never_started"] == {"4": result.jobs[4].reasons[-1]}


def test_no_worker_offers_gpu() -> None:
    result = run([job(0, "a", 10, GPU=0.5)], workers(1, CPU=4))
    assert result.jobs[1].reasons == ["no worker offers GPU"]
    assert result.tenant("a").never_started == 1


def test_a_starving_job_passed_over_reserves_its_worker() -> None:
    config = QueueConfig.parse({"reservation_after": 100})
    snap = Snapshot(
        now=200,
        workers=[WorkerSlot("w0", {"CPU": 4})],
        running=[Running(1, "a", 0, {"CPU": 2}, ("w0",), started_at=0, timeout_s=1000)],
        candidates=[
            Candidate(2, "b", 0, {"CPU": 4}, queued_at=0, timeout_s=100),
            Candidate(3, "a", 0, {"CPU": 1}, queued_at=150, timeout_s=5000),  # ends too late
            Candidate(4, "a", 0, {"CPU": 1}, queued_at=160, timeout_s=500),  # backfills
        ],
    )
    decision = decide(snap, config)
    assert decision.reserved == {2: ("w0",)}
    assert decision.waiting[3] == "reserved for job 2"
    assert decision.started() == {4: ("w0",)}
    assert "reserved w0 for it" in decision.waiting[2]


def test_demand_lists_the_shapes_that_could_not_be_placed() -> None:
    config = QueueConfig.parse({})
    snap = Snapshot(
        now=0,
        workers=[WorkerSlot("w0", {"CPU": 4, "GPU": 1})],
        running=[],
        candidates=[
            Candidate(1, "a", 0, {"CPU": 4}, queued_at=0),
            Candidate(2, "a", 0, {"CPU": 4}, queued_at=0),
            Candidate(3, "a", 0, {"CPU": 4}, queued_at=0),
            Candidate(4, "b", 0, {"GPU": 1}, queued_at=0, gang=2),
        ],
    )
    decision = decide(snap, config)
    assert len(decision.start) == 1
    shapes = {(tuple(sorted(d.resources.items())), d.gang): d.count for d in decision.demand}
    assert shapes == {((("CPU", 4.0),), 1): 2, ((("GPU", 1.0),), 2): 1}


def test_a_job_held_back_by_its_own_borrowing_limit_reserves_nothing() -> None:
    """Its own work is in the way: others starting meanwhile do not overtake it."""
    config = QueueConfig.parse(
        {
            "tenants": {"capped": {"nominal": {"CPU": 2}, "borrowing_limit": {"CPU": 0}}},
            "reservation_after": 0,
        }
    )
    snap = Snapshot(
        now=100,
        workers=[WorkerSlot("w0", {"CPU": 8})],
        running=[Running(1, "capped", 0, {"CPU": 2}, ("w0",), started_at=0, timeout_s=1000)],
        candidates=[
            Candidate(2, "capped", 0, {"CPU": 1}, queued_at=0),
            Candidate(3, "other", 0, {"CPU": 1}, queued_at=50, timeout_s=5000),
        ],
    )
    decision = decide(snap, config)
    assert decision.reserved == {}
    assert decision.started() == {3: ("w0",)}
    assert decision.waiting[2].startswith("waiting for quota: capped uses 2/2 CPU")


def test_nominal_is_reclaimed_across_cohorts() -> None:
    """a borrows b's idle nominal; b then starts within its nominal on capacity that was
    idle in c's (another cohort); c still gets its nominal back, from the borrower."""
    config = {
        "cohorts": {"one": {"tenants": ["a", "b"]}, "two": {"tenants": ["c"]}},
        "tenants": {t: {"nominal": {"CPU": 4}} for t in "abc"},
        "preemption": {"grace": "10s"},
    }
    trace = [job(0, "a", 1000, CPU=1) for _ in range(8)]
    trace += [job(10, "b", 1000, CPU=1) for _ in range(4)]
    trace += [job(20, "c", 100, CPU=1) for _ in range(4)]
    result = run(trace, workers(3, CPU=4), config)
    assert all(result.jobs[i].first_start == 10 for i in range(9, 13))  # b: guaranteed
    assert all(result.jobs[i].first_start == 30 for i in range(13, 17))  # c: after the grace
    assert result.tenant("a").preemptions == 4
    assert result.tenant("b").preemptions == 0


def test_progress_reports_settled_jobs_up_to_the_total() -> None:
    calls: list[tuple[int, int]] = []
    trace = [job(i, "a", 10, CPU=1) for i in range(5)]
    simulate(
        trace, workers(1, CPU=2), QueueConfig.parse({}), progress=lambda d, t: calls.append((d, t))
    )
    assert calls[-1] == (5, 5)
    assert [d for d, _ in calls] == sorted(d for d, _ in calls)


def test_with_no_worker_every_job_waits_for_one() -> None:
    config = QueueConfig.parse("tenants: {a: {nominal: {CPU: 4}}}")
    candidates = [Candidate(i, "a", 0, {"CPU": 1.0}, 0.0) for i in range(3)]
    decision = decide(Snapshot(10.0, [], [], candidates), config)
    assert decision.start == [] and decision.preempt == []
    assert decision.waiting == dict.fromkeys(range(3), NO_WORKER)


def test_a_decision_says_each_workers_room_after_what_runs_and_what_it_starts() -> None:
    """``Decision.free``: what the scheduler checks a new submission against (a turn is
    forced only for one some worker has room for)."""
    snap = Snapshot(
        now=0,
        workers=[WorkerSlot("w0", {"CPU": 4, "memory_gb": 8}), WorkerSlot("w1", {"CPU": 2})],
        running=[Running(1, "a", 0, {"CPU": 2, "memory_gb": 3}, ("w0",), started_at=0)],
        candidates=[Candidate(2, "a", 0, {"CPU": 2}, queued_at=0)],
    )
    decision = decide(snap, QueueConfig.parse({"placement": "binpack"}))
    (where,) = decision.started().values()
    free = {"w0": {"CPU": 2.0, "memory_gb": 5.0}, "w1": {"CPU": 2.0}}
    free[where[0]]["CPU"] -= 2.0
    assert decision.free == free
