"""Chain plans (``Decision.chains``): the jobs admission plans to take the places of a group
of chainable attempts as they end, which a worker's chain starts later with no decision of
its own, in one statement each (whichever chain of the group finishes takes the first job
still queued).

Plans are safe only if they keep the rules whenever and in whatever order chains follow
them, including while a later decision, made on a snapshot that still shows the old plans,
hands out more. These tests follow plans in random orders and check capacity and quota after
every step. Derandomized (the ``admission`` profile in conftest).
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, replace

from hypothesis import given, settings
from hypothesis import strategies as st

from zhuge.jobs.admission import EPS, Candidate, QueueConfig, Running, Snapshot, WorkerSlot, decide

from .test_properties import (
    SHAPES,
    TENANTS,
    _overdrawn,
    _usage,
    candidate_specs,
    check_decision,
    configs,
    worker_offers,
)

DEPTH = 3


@dataclass
class Cluster:
    """Attempts running now, queued jobs, and each attempt's plan: (group, jobs)."""

    config: QueueConfig
    workers: list[WorkerSlot]
    running: dict[int, Running]
    queued: dict[int, Candidate]
    plans: dict[int, tuple[str, tuple[tuple[int, str], ...]]]
    groups: int = 0

    def snapshot(self, now: float) -> Snapshot:
        running = [
            replace(r, plan_group=self.plans[r.job_id][0], plan=self.plans[r.job_id][1])
            if r.job_id in self.plans
            else r
            for r in self.running.values()
        ]
        return Snapshot(now, self.workers, running, list(self.queued.values()), plan_depth=DEPTH)

    def limits(self) -> tuple[dict[str, dict[str, float]], dict[str, float]]:
        """What each tenant may hold under quota (or holds already, if more: a plan never
        makes that worse), and the most the cohorts may draw from unclaimed capacity."""
        used = _usage(list(self.running.values()))
        capacity: dict[str, float] = {}
        for w in self.workers:
            for k, v in w.offers.items():
                capacity[k] = capacity.get(k, 0.0) + v
        per_tenant = {}
        for t in TENANTS:
            q = self.config.queue(t)
            per_tenant[t] = {
                r: max(
                    used.get(t, {}).get(r, 0.0),
                    q.nominal.get(r, 0.0) + (q.borrowing_limit or {}).get(r, math.inf),
                )
                for r in self.config.resources
            }
        unclaimed = {}
        for r in self.config.resources:
            claimed = sum(q.nominal.get(r, 0.0) for q in self.config.tenants.values())
            if claimed > EPS:
                unclaimed[r] = max(
                    _overdrawn(self.config, used, r), max(0.0, capacity.get(r, 0.0) - claimed)
                )
        return per_tenant, unclaimed

    def check(self, limits: tuple[dict[str, dict[str, float]], dict[str, float]]) -> None:
        per_tenant, unclaimed = limits
        used = _usage(list(self.running.values()))
        for t, most in per_tenant.items():
            for r, limit in most.items():
                assert used.get(t, {}).get(r, 0.0) <= limit + 1e-6, (t, r, used)
        for r, most in unclaimed.items():
            assert _overdrawn(self.config, used, r) <= most + 1e-6, (r, used)
        free = {w.address: dict(w.offers) for w in self.workers}
        for a in self.running.values():
            for w in a.workers:
                for k, v in a.resources.items():
                    free[w][k] = free[w].get(k, 0.0) - v
        assert all(v >= -EPS for f in free.values() for v in f.values()), free

    def follow(self, job_id: int) -> None:
        """The attempt ``job_id`` ends; the first job of its group's plan still queued takes
        its place and the plan passes on to it, as ``claims.claim_next`` does."""
        r = self.running.pop(job_id)
        group, jobs = self.plans.pop(job_id, ("", ()))
        for nxt, tenant in jobs:
            c = self.queued.pop(nxt, None)
            if c is None:
                continue  # taken by another chain, or started elsewhere: claims nothing
            assert c.tenant == tenant and c.gang == 1
            assert {k: v for k, v in c.resources.items() if v} == {
                k: v for k, v in r.resources.items() if v
            }
            self.running[nxt] = Running(
                nxt, tenant, c.priority, dict(c.resources), r.workers, 0.0, chainable=True
            )
            self.plans[nxt] = (group, jobs)
            return

    def apply(self, snap: Snapshot, decision, *, keep_old: set[int] = frozenset()) -> None:
        check_decision(snap, self.config, decision)
        by_id = {c.job_id: c for c in snap.candidates}
        for p in decision.preempt:
            self.running.pop(p.job_id, None)  # it stopped
            self.plans.pop(p.job_id, None)
        for job_id, workers in decision.started().items():
            c = self.queued.pop(job_id)
            self.running[job_id] = Running(
                job_id, c.tenant, c.priority, dict(c.resources), workers, 0.0, chainable=c.gang == 1
            )
        planned = [j for g in decision.chains for j, _ in g.jobs]
        assert len(planned) == len(set(planned)), "a job planned twice"
        for g in decision.chains:
            assert len(g.jobs) <= DEPTH * len(g.slots)
            assert all(j in by_id and by_id[j].gang == 1 for j, _ in g.jobs)
            assert not {j for j, _ in g.jobs} & (set(decision.started()) | set(decision.reserved))
            shapes = {tuple(sorted(self.running[i].resources.items())) for i in g.slots}
            assert len(shapes) == 1, "a group of attempts of different shapes"
            self.groups += 1
            for job_id in g.slots:
                if job_id in keep_old:
                    continue  # its chain moved on while the decision was made: old plan stays
                if job_id in self.running:
                    self.plans[job_id] = (f"g{self.groups}", g.jobs)


def _cluster(config, offers, specs, now) -> Cluster:
    workers = [WorkerSlot(f"w{i}", o) for i, o in enumerate(offers)]
    queued = {
        i: Candidate(i, tenant, priority, SHAPES[shape], now - ago, gang, 600)
        for i, (tenant, shape, priority, gang, ago) in enumerate(specs, start=1)
    }
    return Cluster(config, workers, {}, queued, {})


@settings(settings.get_profile("admission"))  # whatever profile another module loads
@given(
    config=configs(),
    offers=st.lists(worker_offers, min_size=1, max_size=3),
    specs=candidate_specs,
    more=candidate_specs,
    seed=st.integers(0, 2**16),
)
def test_plans_keep_capacity_and_quota_whatever_order_chains_follow_them(
    config, offers, specs, more, seed
) -> None:
    rnd = random.Random(seed)
    now = 5000.0
    cluster = _cluster(config, offers, specs, now)
    snap = cluster.snapshot(now)
    cluster.apply(snap, decide(snap, config))
    limits = cluster.limits()
    # some chains follow their plans, in a random order
    for _ in range(rnd.randint(0, 6)):
        if not cluster.plans:
            break
        cluster.follow(rnd.choice(sorted(cluster.plans)))
        cluster.check(limits)
    # more jobs arrive; a second decision sees the plans as they stand, and while it is made
    # some chains take their next planned job (their old plans stay, the new ones are lost)
    for i, (tenant, shape, priority, gang, ago) in enumerate(more, start=1000):
        cluster.queued[i] = Candidate(i, tenant, priority, SHAPES[shape], now - ago, gang, 600)
    snap = cluster.snapshot(now + 10)
    limits = cluster.limits()
    decision = decide(snap, config)
    moved = {j for j in cluster.plans if rnd.random() < 0.3}
    cluster.apply(snap, decision, keep_old=moved)
    cluster.check(limits)
    # every chain follows its plan to the end, interleaved at random
    while cluster.plans:
        cluster.follow(rnd.choice(sorted(cluster.plans)))
        cluster.check(limits)


def test_a_plan_takes_each_tenant_in_fair_share_turns() -> None:
    """Two tenants of equal weight flood one busy worker: the plan after its attempt
    alternates between them (the decision's fair-share order, continued), and holds
    ``plan_depth`` jobs."""
    config = QueueConfig.parse({})
    worker = WorkerSlot("w0", {"CPU": 1.0})
    running = [Running(1, "a", 0, {"CPU": 1.0}, ("w0",), 0.0, chainable=True)]
    queued = [
        Candidate(10 + i, tenant, 0, {"CPU": 1.0}, float(i), 1, 60)
        for i, tenant in enumerate(["a"] * 6 + ["b"] * 6)
    ]
    snap = Snapshot(100.0, [worker], running, queued, plan_depth=4)
    decision = decide(snap, config)
    assert not decision.start
    (group,) = decision.chains
    assert group.slots == (1,)
    tenants = [t for _, t in group.jobs]
    assert len(tenants) == 4
    assert tenants.count("a") == tenants.count("b") == 2
    assert tenants[0] == "b"  # "a" holds the worker now: "b" is further below its share


def test_no_plan_on_a_worker_reserved_for_a_starving_job() -> None:
    """A worker kept for a large job that has waited too long gets no plan: its chain comes
    back to a full decision, which knows the reservation."""
    config = QueueConfig.parse({"reservation_after": 0})
    worker = WorkerSlot("w0", {"CPU": 2.0})
    running = [Running(1, "a", 0, {"CPU": 1.0}, ("w0",), 0.0, timeout_s=600, chainable=True)]
    big = Candidate(2, "b", 0, {"CPU": 2.0}, 0.0, 1, 600)
    small = [Candidate(3 + i, "a", 0, {"CPU": 1.0}, 50.0 + i, 1, 6000) for i in range(3)]
    decision = decide(Snapshot(100.0, [worker], running, [big, *small], plan_depth=4), config)
    assert decision.reserved == {2: ("w0",)}
    assert decision.chains == []


def test_a_tenant_at_its_limit_is_planned_only_where_no_chain_can_give_it_more() -> None:
    """Quota: whichever chain of a group ends first takes the group's next job, so a job of
    a tenant at its borrowing limit planned into a group where another tenant holds a place
    could take that place and hold one more than its limit (the random property test found
    this: ``test_plans_keep_capacity_and_quota_whatever_order_chains_follow_them``). It is
    planned only into a group whose places it holds all: there a place only changes hands
    within it."""
    config = QueueConfig.parse(
        {"tenants": {"a": {"nominal": {"CPU": 1}, "borrowing_limit": {"CPU": 0}}, "b": {}}}
    )
    workers = [WorkerSlot("w0", {"CPU": 1.0}), WorkerSlot("w1", {"CPU": 1.0})]
    running = [
        Running(1, "a", 0, {"CPU": 1.0}, ("w0",), 0.0, chainable=True),
        Running(2, "b", 0, {"CPU": 1.0}, ("w1",), 0.0, chainable=True),
    ]
    queued = [Candidate(10 + i, "a", 0, {"CPU": 1.0}, float(i), 1, 60) for i in range(4)]
    decision = decide(Snapshot(100.0, workers, running, queued, plan_depth=2), config)
    (group,) = decision.chains
    assert group.slots == (1, 2)
    assert group.jobs == ()
    # alone in its group (b's attempt is of another shape), a's own place passes to its jobs
    other = [running[0], Running(2, "b", 0, {"CPU": 0.5}, ("w1",), 0.0, chainable=True)]
    decision = decide(Snapshot(100.0, workers, other, queued, plan_depth=2), config)
    plans = {g.slots: g.jobs for g in decision.chains}
    assert plans[(1,)] == ((10, "a"), (11, "a"))
    # with room in its quota, the same tenant is planned for both places and beyond
    roomy = QueueConfig.parse(
        {
            "tenants": {"a": {"nominal": {"CPU": 2}}, "b": {}},
            "preemption": {"reclaim_within_cohort": "never"},
        }
    )
    decision = decide(Snapshot(100.0, workers, running, queued, plan_depth=2), roomy)
    assert [j for j, _ in decision.chains[0].jobs] == [10, 11, 12, 13]


def test_a_later_decision_counts_the_plans_it_reads() -> None:
    """A plan charges its tenants until replaced: a decision that reads it does not hand the
    same quota out again (else the plan, followed afterwards, would take the tenant past its
    limit)."""
    config = QueueConfig.parse(
        {
            "tenants": {"a": {"nominal": {"CPU": 1}, "borrowing_limit": {"CPU": 0}}},
            "preemption": {"reclaim_within_cohort": "never"},
        }
    )
    workers = [WorkerSlot("w0", {"CPU": 1.0})]
    running = [Running(1, "b", 0, {"CPU": 1.0}, ("w0",), 0.0, chainable=True)]
    first = decide(
        Snapshot(
            0.0, workers, running, [Candidate(10, "a", 0, {"CPU": 1.0}, 0.0, 1, 60)], plan_depth=1
        ),
        config,
    )
    assert [(g.slots, g.jobs) for g in first.chains] == [((1,), ((10, "a"),))]
    # a worker joins; "a" submits again; the plan is still in the store
    workers.append(WorkerSlot("w1", {"CPU": 1.0}))
    planned = [replace(running[0], plan=((10, "a"),), plan_group="g1")]
    queued = [
        Candidate(10, "a", 0, {"CPU": 1.0}, 0.0, 1, 60),
        Candidate(11, "a", 0, {"CPU": 1.0}, 1.0, 1, 60),
    ]
    second = decide(Snapshot(5.0, workers, planned, queued), config)
    assert second.start == []
    assert all("waiting for quota: a uses 1/1 CPU" in second.waiting[j] for j in (10, 11))


def test_a_plan_counts_for_quota_but_not_for_fair_share() -> None:
    """A tenant's planned jobs hold nothing yet: its fair share is what it runs. Here "a"
    runs nothing (though two places are planned for it) and "b" runs one job: the free
    worker goes to "a"."""
    config = QueueConfig.parse({})
    workers = [WorkerSlot(f"w{i}", {"CPU": 1.0}) for i in range(4)]
    plan = ((10, "a"), (11, "a"))
    running = [
        Running(1, "x", 0, {"CPU": 1.0}, ("w0",), 0.0, chainable=True, plan=plan, plan_group="g"),
        Running(2, "x", 0, {"CPU": 1.0}, ("w1",), 0.0, chainable=True, plan=plan, plan_group="g"),
        Running(3, "b", 0, {"CPU": 1.0}, ("w2",), 0.0, chainable=True),
    ]
    queued = [
        Candidate(10, "a", 0, {"CPU": 1.0}, 0.0, 1, 60),
        Candidate(11, "a", 0, {"CPU": 1.0}, 1.0, 1, 60),
        Candidate(20, "b", 0, {"CPU": 1.0}, 0.0, 1, 60),
    ]
    decision = decide(Snapshot(100.0, workers, running, queued), config)
    assert [s.job_id for s in decision.start] == [10]
