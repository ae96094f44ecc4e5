"""Cost accounting on a real store (SQLite and PostgreSQL): what each attempt records as it
ends, worker up-time, and the money ``zhuge costs`` / ``GET /v1/costs`` make of a small known
set of attempts and up-times, checked against a hand computation with per-second and
per-hour billing. No Dask: the store's own calls stand in for the scheduler and runner."""

from __future__ import annotations

import pytest

from tests.integration.elastic.conftest import T0
from zhuge.errors import Forbidden
from zhuge.jobs.elastic import costs, pool_config
from zhuge.jobs.model import Worker
from zhuge.jobs.states import JobState, LostReason

W1 = "tcp://10.0.0.1:9000"


def pools_doc(granularity: str) -> str:
    return f"""
pools:
  - name: cpu
    resources: {{CPU: 4, memory_gb: 16}}
    min: 0
    max: 4
    provider: local
    billing: {{granularity: {granularity}, minimum_s: 60}}
    price_per_hour: {{on_demand: 3.6, spot: 1.2}}
"""


def run(store, clock, *, tenant, kind, resources, seconds, outcome="succeeded", cpu=0.0):
    """One attempt on W1: claimed, started, and ended ``seconds`` later as ``outcome``."""
    job, _ = store.submit(tenant=tenant, kind=kind, params={}, resources=resources)
    (claimed,) = store.claim(limit=1, owner="sched", lease_seconds=3600)
    assert claimed.id == job.id
    store.start_attempt(job.id, claimed.attempt, worker=W1, lease_seconds=3600)
    clock.advance(seconds)
    if outcome == "succeeded":
        assert store.complete(job.id, claimed.attempt, result={}, cpu_seconds=cpu)
    elif outcome == "failed":
        store.fail_attempt(job.id, claimed.attempt, error="boom", traceback=None, cpu_seconds=cpu)
    else:
        store.lose_attempt(job.id, claimed.attempt, LostReason.WORKER_DIED, "killed")
    return job


@pytest.fixture
def known(store, clock, settings):
    """W1 (pool cpu: CPU=4, memory_gb=16) up from T0 to T0+1000; ana's sleep job CPU=2,
    memory_gb=4 ran 300 s (120 CPU-s measured); bob's echo job CPU=4 ran 60 s and failed
    (30 CPU-s measured)."""
    costs.record_uptime(store, [Worker(W1, {"CPU": 4.0, "memory_gb": 16.0}, T0)], {W1: "cpu"}, T0)
    clock.advance(100)
    run(store, clock, tenant="ana", kind="sleep", resources={"CPU": 2.0, "memory_gb": 4.0},
        seconds=300, cpu=120.0)  # fmt: skip
    clock.advance(100)
    run(store, clock, tenant="bob", kind="echo", resources={"CPU": 4.0}, seconds=60,
        outcome="failed", cpu=30.0)  # fmt: skip
    clock.now = T0 + 1000
    costs.close_uptime(store, [W1], clock.now)
    clock.advance(5000)  # the report is made later: closed intervals do not grow


def test_each_ended_attempt_records_what_it_was_allocated_and_its_pool(store, clock, known):
    rows = costs.attempts(store)
    assert [(r.tenant, r.kind, r.pool, r.outcome) for r in rows] == [
        ("ana", "sleep", "cpu", "succeeded"),
        ("bob", "echo", "cpu", "failed"),
    ]
    ana, bob = rows
    assert (ana.started_at, ana.ended_at) == (T0 + 100, T0 + 400)
    assert (ana.cpu_alloc_seconds, ana.memory_gb_seconds, ana.gpu_alloc_seconds) == (600, 1200, 0)
    assert ana.cpu_seconds == 120.0
    assert (bob.cpu_alloc_seconds, bob.cpu_seconds) == (240.0, 30.0)
    (up,) = costs.uptimes(store)
    assert (up.worker, up.pool, up.started_at, up.ended_at) == (W1, "cpu", T0, T0 + 1000)


def test_gang_fraction_release_and_cancel_are_recorded_and_unstarted_losses_are_not(store, clock):
    gang, _ = store.submit(tenant="t", kind="sleep", params={}, resources={"GPU": 0.5}, gang=2)
    (a,) = store.claim(limit=1, owner="sched", lease_seconds=3600, resource_classes=("gpu",))
    store.start_attempt(gang.id, a.attempt, worker=W1, lease_seconds=3600)
    clock.advance(10)
    assert store.release("sched") == 1  # a clean shutdown: released, recorded
    (b,) = store.claim(limit=1, owner="sched", lease_seconds=3600, resource_classes=("gpu",))
    store.lose_attempt(gang.id, b.attempt, LostReason.WORKER_DIED, "never started")
    clock.advance(100)
    (c,) = store.claim(limit=1, owner="sched", lease_seconds=3600, resource_classes=("gpu",))
    store.start_attempt(gang.id, c.attempt, worker=W1, lease_seconds=3600)
    clock.advance(4)
    assert store.cancel(gang.id).state is JobState.CANCELLED
    rows = costs.attempts(store)
    assert [(r.attempt, r.outcome) for r in rows] == [(1, "released"), (3, "cancelled")]
    # a GPU fraction counts as its fraction, times the gang's copies
    assert [r.gpu_alloc_seconds for r in rows] == [0.5 * 2 * 10, 0.5 * 2 * 4]
    assert all(r.pool == costs.STATIC_POOL for r in rows)  # W1 has no up-time in a pool


@pytest.mark.parametrize("granularity", ["second", "hour"])
def test_costs_equal_a_hand_computation(store, clock, settings, known, granularity):
    pool_config.apply_pools(store, settings, pools_doc(granularity), applied_by=None)
    # by hand: ana used half a worker (CPU 2 of 4; memory 4 of 16) for 300 s = 150 worker-s,
    # bob all of it for 60 s = 60; W1 was up 1000 s, billed 1000 s per second or 3600 s
    # per hour, at 3.6 an hour. Attempts pay 3.6/3600 per worker-second they used either
    # way; the rest of the bill is idle.
    billed = {"second": 1000.0, "hour": 3600.0}[granularity]
    bill = billed / 3600 * 3.6
    report = costs.report(store, settings, by="tenant")
    lines = {line.key: line for line in report.lines}
    assert lines["ana"].cost == pytest.approx(150 * 3.6 / 3600)
    assert lines["bob"].cost == pytest.approx(60 * 3.6 / 3600)
    assert lines["ana"].allocated == {"CPU": 600.0, "memory_gb": 1200.0}
    assert report.capacity_cost == pytest.approx(bill)
    assert report.idle_cost == pytest.approx(bill * (1 - 210 / billed))
    assert report.total + report.idle_cost == pytest.approx(report.capacity_cost)
    assert report.spot_savings == pytest.approx(billed / 3600 * (3.6 - 1.2))
    by_kind = {line.key: line.cost for line in costs.report(store, settings, by="kind").lines}
    assert by_kind == pytest.approx({"sleep": 0.15, "echo": 0.06})
    by_job = costs.report(store, settings, by="job").lines
    ids = [str(a.job_id) for a in costs.attempts(store)]  # ana's, then bob's
    assert [(line.key, line.attempts) for line in by_job] == [(ids[0], 1), (ids[1], 1)]
    assert [line.cost for line in by_job] == pytest.approx([0.15, 0.06])
    (day,) = costs.report(store, settings, by="day").lines
    assert (day.key, day.attempts) == ("2023-11-14", 2)
    # --since clips: from T0+300 only ana's last 100 s (50 worker-s) and bob count
    since = costs.report(store, settings, by="pool", since=T0 + 300)
    assert since.lines[0].cost == pytest.approx((50 + 60) * 3.6 / 3600)


def test_a_minimum_bills_a_short_interval_whole(store, clock, settings):
    pool_config.apply_pools(store, settings, pools_doc("second"), applied_by=None)
    costs.record_uptime(store, [Worker(W1, {"CPU": 4.0}, T0)], {W1: "cpu"}, T0)
    costs.close_uptime(store, [W1], T0 + 20)  # up 20 s, billed the 60 s minimum
    clock.advance(100)
    report = costs.report(store, settings, by="pool")
    assert report.capacity_cost == pytest.approx(60 / 3600 * 3.6)
    assert report.idle_cost == pytest.approx(report.capacity_cost)  # nothing ran


def test_uptime_follows_the_census(store, clock):
    a, b = Worker("tcp://a", {"CPU": 1.0}, T0), Worker("tcp://b", {"CPU": 1.0}, T0)
    store.record_workers("sched", [a, b])
    costs.record_uptime(store, store.workers(), {"tcp://a": "burst"}, clock())
    clock.advance(30)
    store.record_workers("sched", [a])  # b has left
    costs.record_uptime(store, store.workers(), {"tcp://a": "burst"}, clock())
    clock.advance(30)
    store.record_workers("sched", [a, b])  # b is back (a new interval)
    costs.record_uptime(store, store.workers(), {"tcp://a": "burst"}, clock())
    rows = sorted((u.worker, u.pool, u.started_at, u.ended_at) for u in costs.uptimes(store))
    assert rows == [
        ("tcp://a", "burst", T0, None),
        ("tcp://b", "static", T0, T0 + 30),
        ("tcp://b", "static", T0 + 60, None),
    ]


def test_costs_api_admins_see_all_members_their_tenant(api, known, settings):
    pool_config.apply_pools(api.store, settings, pools_doc("second"), applied_by=None)
    admin = api.sdk().costs(by="tenant")
    assert [line["key"] for line in admin["lines"]] == ["ana", "bob"]
    assert admin["idle_cost"] == pytest.approx(1.0 * (1 - 210 / 1000))
    assert admin["pools"]["cpu"]["up_s"] == pytest.approx(1000.0)
    mine = api.sdk(api.member("ana")).costs(by="kind", since="7d")
    assert [(line["key"], line["attempts"]) for line in mine["lines"]] == [("sleep", 1)]
    assert mine["lines"][0]["cost"] == pytest.approx(0.15)
    assert (mine["capacity_cost"], mine["idle_cost"], mine["pools"]) == (None, None, {})
    bad = api.call("GET", "/v1/costs", params={"by": "colour"})
    assert bad.status_code == 422
    worse = api.call("GET", "/v1/costs", params={"since": "last tuesday"})
    assert worse.status_code == 422 and "since" in worse.json()["error"]["message"]


def test_pools_and_the_autoscaler_log_are_admin_only(api):
    member = api.member("ana")
    for method, path in (("GET", "/v1/pools"), ("PUT", "/v1/pools"),
                         ("GET", "/v1/autoscaler/log")):  # fmt: skip
        r = api.call(method, path, member, content="pools: []")
        assert r.status_code == 403, (path, r.text)
    with pytest.raises(Forbidden):
        api.sdk(member).apply_pools(pools_doc("second"))
    assert pool_config.applied_pools(api.store) is None
