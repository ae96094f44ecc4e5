"""Properties of ``admission.decide`` on random snapshots, and a stateful test interleaving
submits, completions, cancels, worker loss and configuration changes.

Derandomized (the ``admission`` profile in conftest): the same examples on every run.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from zhuge.jobs.admission import (
    EPS,
    Candidate,
    Decision,
    QueueConfig,
    Running,
    Snapshot,
    WorkerSlot,
    decide,
)

settings.load_profile("admission")

TENANTS = ["t0", "t1", "t2", "guest"]  # guest is in no configuration: unclaimed capacity only
SHAPES = [
    {"CPU": 1.0},
    {"CPU": 2.0, "memory_gb": 4.0},
    {"CPU": 4.0, "memory_gb": 8.0},
    {"CPU": 1.0, "GPU": 0.5},
    {"CPU": 2.0, "GPU": 1.0},
]

# -- strategies -----------------------------------------------------------------------------

worker_offers = st.sampled_from(
    [
        {"CPU": 4.0, "memory_gb": 16.0},
        {"CPU": 8.0, "memory_gb": 32.0},
        {"CPU": 8.0, "GPU": 1.0, "memory_gb": 32.0},
    ]
)


@st.composite
def configs(draw) -> QueueConfig:
    tenants = {}
    for t in TENANTS[:3]:
        nominal = draw(st.sampled_from([0, 2, 4, 8]))
        queue: dict = {"weight": draw(st.sampled_from([1, 2])), "nominal": {"CPU": nominal}}
        if draw(st.booleans()):
            queue["borrowing_limit"] = {"CPU": draw(st.sampled_from([0, 2, 8]))}
        if nominal and draw(st.booleans()):
            queue["lending_limit"] = {"CPU": draw(st.sampled_from([0, nominal // 2, nominal]))}
        tenants[t] = queue
    return QueueConfig.parse(
        {
            "cohorts": {"all": {"tenants": TENANTS[:3]}},  # one cohort: see _unclaimed_kept
            "tenants": tenants,
            "preemption": {
                "reclaim_within_cohort": draw(st.sampled_from(["never", "lower_priority", "any"])),
                "within_tenant": draw(st.sampled_from(["never", "lower_priority"])),
            },
            "reservation_after": draw(st.sampled_from([0, 60, 900])),
            "placement": draw(st.sampled_from(["binpack", "spread"])),
        }
    )


candidate_specs = st.lists(
    st.tuples(
        st.sampled_from(TENANTS),
        st.sampled_from(range(len(SHAPES))),
        st.integers(0, 3),  # priority
        st.sampled_from([1, 1, 1, 2, 4]),  # gang
        st.integers(0, 2000),  # how long ago it was queued
    ),
    max_size=25,
)

# -- the checks -----------------------------------------------------------------------------


def _usage(running: list[Running]) -> dict[str, dict[str, float]]:
    used: dict[str, dict[str, float]] = {}
    for r in running:
        mine = used.setdefault(r.tenant, {})
        for k, v in r.resources.items():
            mine[k] = mine.get(k, 0.0) + v * len(r.workers)
    return used


def check_decision(snap: Snapshot, config: QueueConfig, decision: Decision) -> list[Running]:
    """Every rule a decision keeps; returns the running attempts after its starts."""
    by_id = {c.job_id: c for c in snap.candidates}
    live = {w.address: dict(w.offers) for w in snap.workers}
    started = decision.started()
    assert set(started) <= set(by_id)
    # every candidate is started or told why it waits, never both
    assert set(started) | set(decision.waiting) == set(by_id)
    assert not set(started) & set(decision.waiting)
    assert all(decision.waiting[j].strip() for j in decision.waiting)
    running_ids = {r.job_id for r in snap.running}
    assert {p.job_id for p in decision.preempt} <= running_ids
    assert len({p.job_id for p in decision.preempt}) == len(decision.preempt)

    after = list(snap.running)
    for job_id, workers in started.items():
        c = by_id[job_id]
        # gang: all copies at once, on distinct live workers
        assert len(workers) == c.gang == len(set(workers))
        assert set(workers) <= set(live)
        after.append(Running(job_id, c.tenant, c.priority, dict(c.resources), workers, snap.now))
    # nothing admitted beyond a worker's free capacity (attempts on lost workers hold none)
    free = {a: dict(o) for a, o in live.items()}
    for r in after:
        for a in r.workers:
            if a in free:
                for k, v in r.resources.items():
                    free[a][k] = free[a].get(k, 0.0) - v
    for a, f in free.items():
        touched = any(a in w for w in started.values())
        if touched:
            assert all(v >= -EPS for v in f.values()), (a, f)

    # quota: a tenant that started work beyond its nominal stays within its borrowing limit
    used_after = _usage(after)
    new: dict[str, dict[str, float]] = {}
    for job_id, workers in started.items():
        c = by_id[job_id]
        for k, v in c.resources.items():
            new.setdefault(c.tenant, {})[k] = new.setdefault(c.tenant, {}).get(k, 0.0) + v * len(
                workers
            )
    for tenant, amounts in new.items():
        queue = config.queue(tenant)
        for r in config.resources:
            if amounts.get(r, 0.0) <= 0:
                continue
            use = used_after.get(tenant, {}).get(r, 0.0)
            nominal = queue.nominal.get(r, 0.0)
            if use > nominal + EPS:
                limit = (queue.borrowing_limit or {}).get(r, math.inf)
                assert use - nominal <= limit + EPS, (tenant, r, use, nominal, limit)
    _unclaimed_kept(snap, config, used_after, new)
    return after


def _unclaimed_kept(
    snap: Snapshot,
    config: QueueConfig,
    used: Mapping[str, Mapping[str, float]],
    new: Mapping[str, Mapping[str, float]],
) -> None:
    """Σ borrowing fits the cohort's lendable nominal plus the unclaimed capacity, wherever a
    tenant borrowed in this decision. (With one cohort, a tenant starting within its nominal
    cannot push another cohort's share into the unclaimed part, so this holds exactly.)"""
    capacity: dict[str, float] = {}
    for w in snap.workers:
        for k, v in w.offers.items():
            capacity[k] = capacity.get(k, 0.0) + v
    for r in config.resources:
        claimed = sum(q.nominal.get(r, 0.0) for q in config.tenants.values())
        if claimed <= EPS:
            continue  # nobody's nominal: only placement limits it
        borrowed_now = any(
            amounts.get(r, 0.0) > 0
            and used.get(t, {}).get(r, 0.0) > config.queue(t).nominal.get(r, 0.0) + EPS
            for t, amounts in new.items()
        )
        before = _usage(list(snap.running))
        if not borrowed_now or _overdrawn(config, before, r) > max(0.0, capacity[r] - claimed):
            continue  # was already over (a configuration change, a lost worker): not ours
        unclaimed = max(0.0, capacity.get(r, 0.0) - claimed)
        assert _overdrawn(config, used, r) <= unclaimed + 1e-6, (r, used)


def _overdrawn(config: QueueConfig, used: Mapping[str, Mapping[str, float]], r: str) -> float:
    cohorts: dict[str, list[str]] = {}
    for t in set(config.tenants) | set(used):
        cohorts.setdefault(config.cohort_of(t), []).append(t)
    total = 0.0
    for members in cohorts.values():
        supply = draw = 0.0
        for t in members:
            queue = config.queue(t)
            use, nominal = used.get(t, {}).get(r, 0.0), queue.nominal.get(r, 0.0)
            supply += min((queue.lending_limit or {}).get(r, math.inf), max(0.0, nominal - use))
            draw += max(0.0, use - nominal)
        total += max(0.0, draw - supply)
    return total


# -- properties on one decision -------------------------------------------------------------


@given(
    config=configs(),
    offers=st.lists(worker_offers, min_size=1, max_size=4),
    first=candidate_specs,
    second=candidate_specs,
)
def test_every_decision_keeps_capacity_quota_and_gangs(config, offers, first, second) -> None:
    workers = [WorkerSlot(f"w{i}", o) for i, o in enumerate(offers)]
    now = 5000.0
    running: list[Running] = []
    next_id = 1
    for specs in (first, second):  # two rounds: the second decides on what the first started
        cands = []
        for tenant, shape, priority, gang, ago in specs:
            cands.append(Candidate(next_id, tenant, priority, SHAPES[shape], now - ago, gang, 600))
            next_id += 1
        snap = Snapshot(now, workers, running, cands)
        decision = decide(snap, config)
        running = check_decision(snap, config, decision)
        preempted = {p.job_id for p in decision.preempt}
        running = [r for r in running if r.job_id not in preempted]  # they stopped
        now += 100


@given(
    lender_nominal=st.integers(1, 8),
    borrower_nominal=st.integers(0, 8),
    wanted=st.integers(1, 8),
    worker_cpu=st.sampled_from([1, 2, 4, 8]),
    policy=st.sampled_from(["any", "lower_priority"]),
)
def test_reclaim_restores_the_lenders_nominal(
    lender_nominal, borrower_nominal, wanted, worker_cpu, policy
) -> None:
    wanted = min(wanted, lender_nominal)
    total = lender_nominal + borrower_nominal
    count = math.ceil(total / worker_cpu)
    workers = [WorkerSlot(f"w{i}", {"CPU": float(worker_cpu)}) for i in range(count)]
    config = QueueConfig.parse(
        {
            "cohorts": {"c": {"tenants": ["lender", "borrower"]}},
            "tenants": {
                "lender": {"nominal": {"CPU": lender_nominal}},
                "borrower": {"nominal": {"CPU": borrower_nominal}},
            },
            "preemption": {"reclaim_within_cohort": policy},
        }
    )
    # the borrower fills the whole cluster while the lender is idle
    flood = [Candidate(i, "borrower", 0, {"CPU": 1.0}, 0.0) for i in range(1, count * 8 + 1)]
    decision = decide(Snapshot(0.0, workers, [], flood), config)
    by_id = {c.job_id: c for c in flood}
    running = [
        Running(j, "borrower", 0, {"CPU": 1.0}, w, 0.0) for j, w in decision.started().items()
    ]
    assert sum(len(r.workers) for r in running) == count * worker_cpu
    del by_id
    # the lender wants its nominal back
    asks = [Candidate(1000 + i, "lender", 1, {"CPU": 1.0}, 10.0) for i in range(wanted)]
    now = 10.0
    for _ in range(3):  # decide, let the victims stop, decide again
        snap = Snapshot(now, workers, running, asks)
        decision = decide(snap, config)
        check_decision(snap, config, decision)
        started = decision.started()
        for j, w in started.items():
            running.append(Running(j, "lender", 1, {"CPU": 1.0}, w, now))
        asks = [c for c in asks if c.job_id not in started]
        preempted = {p.job_id for p in decision.preempt}
        assert all(r.tenant == "borrower" for r in running if r.job_id in preempted)
        running = [r for r in running if r.job_id not in preempted]
        now += 60
    assert not asks, "the lender did not get its nominal back"


# -- the stateful test ----------------------------------------------------------------------

CONFIGS = [
    QueueConfig.parse({}),
    QueueConfig.parse(
        {
            "cohorts": {"all": {"tenants": ["t0", "t1", "t2"]}},
            "tenants": {
                "t0": {"weight": 2, "nominal": {"CPU": 8}, "borrowing_limit": {"CPU": 4}},
                "t1": {"nominal": {"CPU": 4}, "lending_limit": {"CPU": 2}},
                "t2": {"nominal": {"CPU": 4}},
            },
            "preemption": {"reclaim_within_cohort": "any", "within_tenant": "lower_priority"},
            "reservation_after": 60,
        }
    ),
    QueueConfig.parse(
        {
            "cohorts": {"all": {"tenants": ["t0", "t1", "t2"]}},
            "tenants": {
                "t0": {"nominal": {"CPU": 2}, "borrowing_limit": {"CPU": 0}},
                "t1": {"nominal": {"CPU": 2}},
                "t2": {"weight": 3},
            },
            "preemption": {"reclaim_within_cohort": "lower_priority"},
            "placement": "spread",
            "reservation_after": 0,
        }
    ),
]


class AdmissionMachine(RuleBasedStateMachine):
    """A cluster driven only through ``decide``: whatever happens in between, every decision
    keeps the rules (``check_decision``) and no live worker is ever over-committed."""

    @initialize(offers=st.lists(worker_offers, min_size=1, max_size=4))
    def start(self, offers) -> None:
        self.workers = {f"w{i}": WorkerSlot(f"w{i}", o) for i, o in enumerate(offers)}
        self.lost: list[WorkerSlot] = []
        self.config = CONFIGS[1]
        self.now = 0.0
        self.next_id = 1
        self.queued: dict[int, Candidate] = {}
        self.running: dict[int, Running] = {}

    @rule(
        tenant=st.sampled_from(TENANTS),
        shape=st.sampled_from(range(len(SHAPES))),
        priority=st.integers(0, 3),
        gang=st.sampled_from([1, 1, 2, 3]),
    )
    def submit(self, tenant, shape, priority, gang) -> None:
        self.queued[self.next_id] = Candidate(
            self.next_id, tenant, priority, SHAPES[shape], self.now, gang, 300
        )
        self.next_id += 1

    @precondition(lambda self: self.running)
    @rule(data=st.data())
    def complete(self, data) -> None:
        job_id = data.draw(st.sampled_from(sorted(self.running)))
        del self.running[job_id]

    @precondition(lambda self: self.queued or self.running)
    @rule(data=st.data())
    def cancel(self, data) -> None:
        job_id = data.draw(st.sampled_from(sorted(set(self.queued) | set(self.running))))
        self.queued.pop(job_id, None)
        self.running.pop(job_id, None)

    @precondition(lambda self: len(self.workers) > 1)
    @rule(data=st.data())
    def lose_worker(self, data) -> None:
        address = data.draw(st.sampled_from(sorted(self.workers)))
        self.lost.append(self.workers.pop(address))
        # its attempts are lost: queued again with their age
        for job_id, r in list(self.running.items()):
            if address in r.workers:
                del self.running[job_id]
                self.queued[job_id] = Candidate(
                    job_id, r.tenant, r.priority, dict(r.resources), r.started_at, len(r.workers)
                )

    @precondition(lambda self: self.lost)
    @rule()
    def worker_returns(self) -> None:
        w = self.lost.pop()
        self.workers[w.address] = w

    @rule(index=st.sampled_from(range(len(CONFIGS))))
    def change_configuration(self, index) -> None:
        self.config = CONFIGS[index]

    @rule(seconds=st.sampled_from([0, 10, 120, 1000]))
    def admit(self, seconds) -> None:
        self.now += seconds
        snap = Snapshot(
            self.now,
            list(self.workers.values()),
            list(self.running.values()),
            list(self.queued.values()),
        )
        decision = decide(snap, self.config)
        check_decision(snap, self.config, decision)
        for job_id, workers in decision.started().items():
            c = self.queued.pop(job_id)
            self.running[job_id] = Running(
                job_id, c.tenant, c.priority, dict(c.resources), workers, self.now, c.timeout_s
            )
        for p in decision.preempt:  # asked to yield: marked, and they stop at the next step
            r = self.running[p.job_id]
            self.running[p.job_id] = Running(
                r.job_id, r.tenant, r.priority, r.resources, r.workers, r.started_at,
                r.timeout_s, preempting=True,
            )  # fmt: skip

    @rule()
    def preempted_attempts_stop(self) -> None:
        for job_id, r in list(self.running.items()):
            if r.preempting:
                del self.running[job_id]
                self.queued[job_id] = Candidate(
                    job_id, r.tenant, r.priority, dict(r.resources), r.started_at, len(r.workers)
                )

    @invariant()
    def no_live_worker_over_committed(self) -> None:
        if not hasattr(self, "workers"):
            return
        for address, w in self.workers.items():
            used: dict[str, float] = {}
            for r in self.running.values():
                if address in r.workers:
                    for k, v in r.resources.items():
                        used[k] = used.get(k, 0.0) + v
            assert all(v <= w.offers.get(k, 0.0) + EPS for k, v in used.items()), (address, used)


AdmissionMachine.TestCase.settings = settings(
    settings.get_profile("admission"), max_examples=80, stateful_step_count=30
)
TestAdmissionMachine = AdmissionMachine.TestCase


@given(
    lender_nominal=st.integers(0, 8),
    lending=st.integers(0, 8),
    borrower_nominal=st.integers(0, 8),
    unclaimed=st.integers(0, 4),
    borrowing_limit=st.one_of(st.none(), st.integers(0, 8)),
)
def test_a_lender_keeps_what_its_lending_limit_protects(
    lender_nominal, lending, borrower_nominal, unclaimed, borrowing_limit
) -> None:
    lending = min(lending, lender_nominal)
    borrower: dict = {"nominal": {"CPU": borrower_nominal}}
    if borrowing_limit is not None:
        borrower["borrowing_limit"] = {"CPU": borrowing_limit}
    config = QueueConfig.parse(
        {
            "cohorts": {"c": {"tenants": ["lender", "borrower"]}},
            "tenants": {
                "lender": {"nominal": {"CPU": lender_nominal}, "lending_limit": {"CPU": lending}},
                "borrower": borrower,
            },
        }
    )
    capacity = lender_nominal + borrower_nominal + unclaimed
    workers = [WorkerSlot(f"w{i}", {"CPU": 1.0}) for i in range(capacity)]
    flood = [Candidate(i, "borrower", 0, {"CPU": 1.0}, 0.0) for i in range(capacity + 1)]
    decision = decide(Snapshot(0.0, workers, [], flood), config)
    took = len(decision.started())
    may = borrower_nominal + min(
        lending + unclaimed, math.inf if borrowing_limit is None else borrowing_limit
    )
    assert took == min(may, capacity)
    # and the protected part is there for the lender at once, no preemption needed
    asks = [
        Candidate(1000 + i, "lender", 0, {"CPU": 1.0}, 1.0) for i in range(lender_nominal - lending)
    ]
    running = [
        Running(j, "borrower", 0, {"CPU": 1.0}, w, 0.0) for j, w in decision.started().items()
    ]
    second = decide(Snapshot(1.0, workers, running, asks), config)
    assert len(second.started()) == len(asks) and not second.preempt
