"""Admission: which queued jobs start now, where, and what must yield. Pure: no SQL, no Dask.

The one policy every path asks — the scheduler's turn, a worker's chain (``claim_next``)
and the simulator (``zhuge simulate``) — so a job's fate does not depend on who looks.
``decide`` takes a snapshot (live workers and what they offer, running attempts, queued
candidates, each tenant's decayed usage, the queue configuration, the time) and returns a
``Decision``: attempts to start pinned to workers, attempts to preempt, a reason in words for
every candidate left waiting, and the demand admission could not meet.

The rules, in the order they apply (``docs/scheduling.md`` explains them with examples):

- **Capacity is per worker.** A job's copy fits a worker when every resource it asks is free
  there; a gang of N needs N distinct workers at once, or none. ``binpack`` takes the fullest
  worker that fits, ``spread`` the emptiest. Fractions (``GPU=0.5``) are just amounts.
- **Quotas**, over the resources the configuration lists. A tenant may always use up to its
  ``nominal``. Beyond it, it *borrows*: from idle nominal of its cohort's tenants (each lends
  at most its ``lending_limit``) and from capacity nobody's nominal claims; never more than
  its ``borrowing_limit`` in all. A tenant absent from the configuration has weight 1, no
  nominal, and only the unclaimed capacity. A resource nobody's nominal claims is limited by
  the workers alone: waiting for it is "waiting for capacity", and it counts in ``demand``
  (as does a shape no worker offers at all), since more workers would let it start.
- **Reclaim.** A job within its tenant's nominal that does not fit because cohort tenants
  borrowed the capacity preempts borrowed work (its cohort's first, then any tenant's beyond
  its nominal; lowest priority first, then newest, sparing
  any whose worker would not have helped); with ``within_tenant: lower_priority`` a job at
  its tenant's limit preempts that tenant's own lower-priority work. Capacity a preemption
  frees is promised to the job it was for, so several jobs reclaim in one decision. Only
  attempts of the snapshot are preempted, never one this decision started. A preempted
  attempt is lost (``preempted``), not failed.
- **Fair share.** Tenants take turns by dominant resource share over all capacity, divided by
  weight (DRF, as Volcano); the share blends what a tenant holds now with its usage decayed
  over ``fair_share.half_life``, so a tenant that ran alone all night does not keep a lead.
- **Priorities age** inside a tenant: a job's effective priority rises by one every
  ``aging.every`` it waits. No head-of-line blocking: a job that does not fit is passed over
  for smaller ones behind it, until it has waited ``reservation_after``; then the workers that
  free up soonest are *reserved* for it, and only jobs whose ``timeout_s`` ends before the
  reservation may use them meanwhile (backfill).

  "Passed over" is what earns the reservation, not age alone: a job that has waited
  ``reservation_after`` but that nothing later in the fair-share order overtook is waiting
  its tenant's turn, and taking it first would turn a saturated cluster into one FIFO line
  (the flooding tenant's old jobs ahead of everyone). ``decide`` is stateless, so it finds
  such jobs by deciding once, and if any starving job was overtaken (it did not fit, and a
  job considered after it started), decides again with those jobs first: each starts if it
  fits, or reserves its workers before anything else is placed. A reservation also holds
  the quota the job needs (a job kept out by quota that smaller jobs keep taking starves as
  surely as one kept out by capacity).
"""

from __future__ import annotations

import functools
import heapq
import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator

from zhuge.errors import InvalidRequest

Shape = Mapping[str, float]
EPS = 1e-9
NO_WORKER = "no worker is connected"

# -- the configuration (queues.yaml) ------------------------------------------------------

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(value: Any) -> float:
    """Seconds from ``30``, ``"30s"``, ``"10m"``, ``"1h"`` or ``"2d"``."""
    if isinstance(value, bool):
        raise ValueError("a duration is a number of seconds or a string such as 30s, 10m, 1h")
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*", str(value))
        if not match:
            raise ValueError(f"not a duration: {value!r} (write 30s, 10m, 1h or 2d)")
        seconds = float(match[1]) * _UNITS[match[2] or "s"]
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"a duration must be a finite number of seconds ≥ 0, not {value!r}")
    return seconds


Duration = Annotated[float, BeforeValidator(parse_duration)]
Amounts = dict[Annotated[str, Field(min_length=1, max_length=64)], Annotated[float, Field(ge=0)]]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TenantQueue(_Strict):
    weight: float = Field(1.0, gt=0, le=1e6)
    nominal: Amounts = Field(default_factory=dict)
    """Guaranteed: always available to this tenant (reclaimed from borrowers if need be)."""
    borrowing_limit: Amounts | None = None
    """At most this much beyond nominal, per resource (absent: no limit)."""
    lending_limit: Amounts | None = None
    """At most this much of its idle nominal lent to its cohort (absent: all of it)."""


class Cohort(_Strict):
    tenants: list[str] = Field(min_length=1)


class Preemption(_Strict):
    reclaim_within_cohort: Literal["never", "lower_priority", "any"] = "any"
    """Which borrowed work a tenant below its nominal may preempt to get it back."""
    within_tenant: Literal["never", "lower_priority"] = "never"
    """Whether a job at its tenant's limit preempts the tenant's own lower-priority work."""
    grace: Duration = 30.0
    """How long a preempted attempt has to stop by itself before it is given up as lost."""


class FairShare(_Strict):
    half_life: Duration = 3600.0


class Aging(_Strict):
    every: Duration = 600.0
    """A queued job's effective priority rises by one each time this passes (0: never)."""


class QueueConfig(_Strict):
    """The queues as declared by an admin (``zhuge queues apply queues.yaml``)."""

    resources: list[str] = Field(default_factory=lambda: ["CPU", "GPU", "memory_gb"])
    """The resources quotas and fair share count; others are only placed."""
    cohorts: dict[str, Cohort] = Field(default_factory=dict)
    tenants: dict[str, TenantQueue] = Field(default_factory=dict)
    preemption: Preemption = Field(default_factory=Preemption)
    fair_share: FairShare = Field(default_factory=FairShare)
    aging: Aging = Field(default_factory=Aging)
    reservation_after: Duration = 900.0
    """How long a job that does not fit may be passed over before workers are reserved."""
    placement: Literal["binpack", "spread"] = "binpack"

    @model_validator(mode="after")
    def _one_cohort_each(self) -> QueueConfig:
        seen: dict[str, str] = {}
        for name, cohort in self.cohorts.items():
            for tenant in cohort.tenants:
                if tenant in seen:
                    raise ValueError(
                        f"tenant {tenant!r} is in two cohorts ({seen[tenant]!r} and {name!r})"
                    )
                seen[tenant] = name
        for tenant, queue in self.tenants.items():
            for what, amounts in (
                ("nominal", queue.nominal),
                ("borrowing_limit", queue.borrowing_limit or {}),
                ("lending_limit", queue.lending_limit or {}),
            ):
                unknown = sorted(set(amounts) - set(self.resources))
                if unknown:
                    raise ValueError(
                        f"tenants.{tenant}.{what} names {', '.join(unknown)}, which is not in "
                        f"resources ({', '.join(self.resources)})"
                    )
            lend = queue.lending_limit or {}
            for resource, amount in lend.items():
                if amount > queue.nominal.get(resource, 0.0) + EPS:
                    raise ValueError(
                        f"tenants.{tenant}.lending_limit.{resource}={amount:g} is more than its "
                        f"nominal ({queue.nominal.get(resource, 0.0):g})"
                    )
        return self

    def queue(self, tenant: str) -> TenantQueue:
        return self.tenants.get(tenant) or _DEFAULT_QUEUE

    def cohort_of(self, tenant: str) -> str:
        return self._cohort_index.get(tenant) or f"tenant:{tenant}"  # or on its own

    @functools.cached_property
    def _cohort_index(self) -> dict[str, str]:
        return {t: name for name, cohort in self.cohorts.items() for t in cohort.tenants}

    @classmethod
    def parse(cls, document: str | Mapping[str, Any]) -> QueueConfig:
        """From YAML text (or an already parsed mapping); ``InvalidRequest`` naming the field."""
        if isinstance(document, str):
            try:
                data = yaml.safe_load(document)
            except yaml.YAMLError as exc:
                raise InvalidRequest(f"queues file is not valid YAML: {exc}") from exc
        else:
            data = document
        if data is None:
            data = {}
        if not isinstance(data, Mapping):
            raise InvalidRequest("queues file must be a mapping (resources, cohorts, tenants…)")
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "file"
            raise InvalidRequest(
                f"queues file: {where}: {first['msg']}",
                details={
                    "errors": [
                        {"field": ".".join(str(p) for p in e["loc"]), "message": e["msg"]}
                        for e in exc.errors()
                    ]
                },
            ) from exc


_DEFAULT_QUEUE = TenantQueue()

# -- the snapshot ---------------------------------------------------------------------------


@dataclass(frozen=True)
class WorkerSlot:
    """A live worker and everything it offers (not what is free: ``decide`` works that out)."""

    address: str
    offers: Mapping[str, float]


@dataclass(frozen=True)
class Running:
    """An attempt that holds resources: ``resources`` on each of ``workers``."""

    job_id: int
    tenant: str
    priority: int
    resources: Mapping[str, float]
    workers: tuple[str, ...]
    started_at: float
    timeout_s: float | None = None
    preempting: bool = False  # already asked to yield: its resources are on their way back
    chainable: bool = False  # one copy, in a Dask task that may chain the next job (below)
    plan: tuple[tuple[int, str], ...] = ()
    """The jobs, as (job id, tenant), planned for its chain's group (``Decision.chains``)."""
    plan_group: str | None = None
    """The group of chains that share that plan; charged as ``ChainGroup.extra`` says."""

    @property
    def ends_by(self) -> float:
        """The latest it will hold its resources (its time limit); inf if unbounded."""
        return math.inf if self.timeout_s is None else self.started_at + self.timeout_s


@dataclass(frozen=True)
class Candidate:
    """A queued job that may start now (its ``not_before`` has passed)."""

    job_id: int
    tenant: str
    priority: int
    resources: Mapping[str, float]
    queued_at: float
    gang: int = 1
    timeout_s: float | None = None
    placement: str | None = None


@dataclass(frozen=True)
class Snapshot:
    now: float
    workers: Sequence[WorkerSlot]
    running: Sequence[Running]
    candidates: Sequence[Candidate]
    usage: Mapping[str, Mapping[str, float]] = field(default_factory=dict)
    """Per tenant, resource-seconds decayed over the half-life (``decay_usage``)."""
    plan_depth: int = 0
    """How many jobs to plan after each chainable attempt (0: none; see ``Decision.plans``)."""
    plan_workers: frozenset[str] | None = None
    """Plan only for attempts on these workers (None: on every worker)."""


# -- the decision ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Start:
    job_id: int
    workers: tuple[str, ...]


@dataclass(frozen=True)
class Preempt:
    job_id: int
    for_job: int
    reason: str


@dataclass(frozen=True)
class Demand:
    """Copies of a shape admission would start now if workers had room for them."""

    resources: Mapping[str, float]
    count: int
    gang: int = 1


@dataclass(frozen=True)
class ChainGroup:
    """Chainable attempts of one shape (``slots``) and the queued jobs planned to take their
    places as they end (``jobs``, (job id, tenant), in the order admission chose): whichever
    chain of the group finishes takes the first one still queued."""

    slots: tuple[int, ...]
    jobs: tuple[tuple[int, str], ...]

    def extra(self, holders: Sequence[str]) -> dict[str, int]:
        """The places each tenant may come to hold beyond those it holds now (``holders``:
        the tenant of each slot's attempt), following the plan in any order: each of its
        planned jobs may take the place of another tenant's attempt (whichever chain ends
        first takes the group's next job), so as many as it has planned jobs, up to the
        places others hold. What a plan is charged."""
        planned: dict[str, int] = {}
        for _, tenant in self.jobs:
            planned[tenant] = planned.get(tenant, 0) + 1
        out = {}
        for tenant, count in planned.items():
            places = min(count, len(self.slots) - sum(1 for h in holders if h == tenant))
            if places > 0:
                out[tenant] = places
        return out


@dataclass
class Decision:
    start: list[Start] = field(default_factory=list)
    preempt: list[Preempt] = field(default_factory=list)
    waiting: dict[int, str] = field(default_factory=dict)
    """Every candidate not started, and why, in words."""
    reserved: dict[int, tuple[str, ...]] = field(default_factory=dict)
    demand: list[Demand] = field(default_factory=list)
    free: dict[str, dict[str, float]] = field(default_factory=dict)
    """Each worker's capacity left once the running attempts and those this decision starts
    hold theirs (reservations not deducted): where a job submitted next could start."""
    chains: list[ChainGroup] = field(default_factory=list)
    """Groups of chainable attempts (running, or started by this decision) and the queued
    jobs planned to take their places as they end, in order, with no further decision: a
    worker's chain takes the first still queued in one statement (see ``plan_chains``)."""

    def started(self) -> dict[int, tuple[str, ...]]:
        return {s.job_id: s.workers for s in self.start}


# -- usage and shares -------------------------------------------------------------------------


def decay_usage(
    usage: Mapping[str, Mapping[str, float]],
    held: Mapping[str, Mapping[str, float]],
    seconds: float,
    half_life: float,
) -> dict[str, dict[str, float]]:
    """Usage after ``seconds`` more, during which each tenant held ``held``: old usage decays
    by half every ``half_life`` and what was held is added as resource-seconds (decayed from
    the middle of the interval, a close enough integral for turns far shorter than the
    half-life)."""
    factor = 0.5 ** (seconds / half_life) if half_life > 0 else 0.0
    mid = 0.5 ** (seconds / 2 / half_life) if half_life > 0 else 1.0
    out: dict[str, dict[str, float]] = {}
    for tenant in set(usage) | set(held):
        old = usage.get(tenant, {})
        now = held.get(tenant, {})
        merged = {
            r: old.get(r, 0.0) * factor + now.get(r, 0.0) * seconds * mid
            for r in set(old) | set(now)
        }
        kept = {r: v for r, v in merged.items() if v > 1e-6}
        if kept:
            out[tenant] = kept
    return out


def _add(a: dict[str, float], b: Shape, times: float = 1.0) -> None:
    for k, v in b.items():
        a[k] = a.get(k, 0.0) + v * times


def describe(resources: Shape) -> str:
    return ", ".join(f"{k}={v:g}" for k, v in sorted(resources.items()) if v) or "nothing"


def jain_index(values: Sequence[float]) -> float:
    """Jain's fairness index of ``values`` (1: all equal; 1/n: one takes everything)."""
    if not values or not any(values):
        return 1.0
    return sum(values) ** 2 / (len(values) * sum(v * v for v in values))


# -- deciding ---------------------------------------------------------------------------------


class _Books:
    """What the decision being made has handed out so far: free capacity per worker and
    usage per tenant, with the quota arithmetic over them."""

    def __init__(self, config: QueueConfig, snap: Snapshot) -> None:
        self.config = config
        self.counted = list(config.resources)
        self.offers = {w.address: dict(w.offers) for w in snap.workers}
        self.free = {w.address: dict(w.offers) for w in snap.workers}
        self.capacity: dict[str, float] = {}
        for w in snap.workers:
            _add(self.capacity, w.offers)
        self.used: dict[str, dict[str, float]] = {}
        self.planned: dict[str, dict[str, float]] = {}  # the part of used that plans charge
        for r in snap.running:
            self.hold(r.tenant, r.resources, r.workers)
        # chain plans stored by earlier decisions may still be followed: charged until replaced
        groups: dict[str, list[Running]] = {}
        for r in snap.running:
            if r.plan_group is not None:
                groups.setdefault(r.plan_group, []).append(r)
        for members in groups.values():
            planned = {i: t for r in members for i, t in r.plan}
            group = ChainGroup(tuple(r.job_id for r in members), tuple(planned.items()))
            for tenant, places in group.extra([r.tenant for r in members]).items():
                self.charge(tenant, members[0].resources, places, planned=True)
        nominal_total: dict[str, float] = {}
        for queue in config.tenants.values():
            _add(nominal_total, queue.nominal)
        self.unclaimed = {
            r: max(0.0, self.capacity.get(r, 0.0) - nominal_total.get(r, 0.0)) for r in self.counted
        }
        # where nobody's nominal claims a resource, every tenant borrows all of it and the
        # workers' free capacity is the only limit: waiting for it is waiting for capacity
        self.claimed = {r for r in self.counted if nominal_total.get(r, 0.0) > EPS}
        self.cohorts: dict[str, list[str]] = {}
        for tenant in config.tenants:
            self.cohorts.setdefault(config.cohort_of(tenant), []).append(tenant)
        # every cohort's members, declared or holding something; and, per cohort and
        # resource, what it draws from the unclaimed capacity (kept up to date by hold())
        self.members: dict[str, set[str]] = {c: set(ts) for c, ts in self.cohorts.items()}
        for tenant in self.used:
            self.members.setdefault(config.cohort_of(tenant), set()).add(tenant)
        self._excess: dict[tuple[str, str], float] = {}
        self._excess_total: dict[str, float] = {}

    def hold(self, tenant: str, resources: Shape, workers: Iterable[str], sign: float = 1) -> None:
        workers = list(workers)
        self.occupy(resources, workers, sign)
        self.charge(tenant, resources, sign * len(workers))

    def charge(
        self, tenant: str, resources: Shape, times: float = 1, *, planned: bool = False
    ) -> None:
        """Count ``resources`` (``times`` over) against ``tenant``'s quota, on no worker.
        ``planned``: for a chain plan, which quota counts but fair share does not (a plan
        holds nothing yet; its jobs count once they run)."""
        _add(self.used.setdefault(tenant, {}), resources, times)
        if planned:
            _add(self.planned.setdefault(tenant, {}), resources, times)
        if hasattr(self, "members"):  # past __init__: keep the cohort sums up to date
            cohort = self.config.cohort_of(tenant)
            self.members.setdefault(cohort, set()).add(tenant)
            for r in self.counted:
                self._excess.pop((cohort, r), None)
            self._excess_total.clear()

    def occupy(self, resources: Shape, workers: Iterable[str], sign: float = 1) -> None:
        """Take ``resources`` on each of ``workers`` (give back with ``sign=-1``), no quota."""
        for address in workers:
            if address in self.free:
                _add(self.free[address], resources, -sign)

    # -- quota ----------------------------------------------------------------------------

    def _nominal(self, tenant: str, r: str) -> float:
        return self.config.queue(tenant).nominal.get(r, 0.0)

    def _lendable(self, tenant: str, r: str) -> float:
        queue = self.config.queue(tenant)
        idle = max(0.0, self._nominal(tenant, r) - self.used.get(tenant, {}).get(r, 0.0))
        limit = (queue.lending_limit or {}).get(r, math.inf)
        return min(limit, idle)

    def _cohort_excess(self, cohort: str, r: str, extra: Mapping[str, float]) -> float:
        """What ``cohort`` draws from the unclaimed capacity of ``r``: what its members hold
        beyond their nominal, less what its lenders' idle nominal covers."""
        supply = draw = 0.0
        for t in self.members.get(cohort, set()) | set(extra):
            use = self.used.get(t, {}).get(r, 0.0) + extra.get(t, 0.0)
            nominal = self._nominal(t, r)
            limit = (self.config.queue(t).lending_limit or {}).get(r, math.inf)
            supply += min(limit, max(0.0, nominal - use))
            draw += max(0.0, use - nominal)
        return max(0.0, draw - supply)

    def _from_unclaimed(self, r: str, extra: Mapping[str, float]) -> float:
        """What all cohorts together draw from the unclaimed capacity of ``r``, were
        ``extra`` (tenant → amount) added to the usage. Each cohort's draw is kept between
        calls and recomputed only when one of its members' usage changed."""
        total = self._excess_total.get(r)
        if total is None:
            for cohort in self.members:
                if (cohort, r) not in self._excess:
                    self._excess[(cohort, r)] = self._cohort_excess(cohort, r, {})
            total = sum(self._excess[(c, r)] for c in self.members)
            self._excess_total[r] = total
        by_cohort: dict[str, dict[str, float]] = {}
        for tenant, amount in extra.items():
            by_cohort.setdefault(self.config.cohort_of(tenant), {})[tenant] = amount
        for cohort, more in by_cohort.items():
            total += self._cohort_excess(cohort, r, more) - self._excess.get((cohort, r), 0.0)
        return total

    def quota_problem(self, tenant: str, ask: Shape) -> str | None:
        """Why ``tenant`` may not take ``ask`` more now under the quotas; None if it may."""
        queue = self.config.queue(tenant)
        for r in self.counted:
            amount = ask.get(r, 0.0)
            if amount <= 0:
                continue
            use = self.used.get(tenant, {}).get(r, 0.0)
            nominal = self._nominal(tenant, r)
            if use + amount <= nominal + EPS:
                continue  # guaranteed
            limit = (queue.borrowing_limit or {}).get(r, math.inf)
            if use + amount - nominal > limit + EPS:
                return (
                    f"waiting for quota: {tenant} uses {use:g}/{nominal:g} {r} and may "
                    f"borrow at most {limit:g}"
                )
            if r in self.claimed and self._from_unclaimed(r, {tenant: amount}) > (
                self.unclaimed[r] + EPS
            ):
                idle = self.idle_for(tenant, r)
                return (
                    f"waiting for quota: {tenant} uses {use:g}/{nominal:g} {r}, "
                    f"cohort has {idle:g} idle"
                )
        return None

    def idle_for(self, tenant: str, r: str) -> float:
        """How much more of ``r`` ``tenant`` could borrow now: its cohort's lendable nominal
        that no member borrows yet, and unclaimed capacity nobody draws on."""
        members = set(self.members.get(self.config.cohort_of(tenant), set())) | {tenant}
        supply = draw = 0.0
        for t in members:
            use, nominal = self.used.get(t, {}).get(r, 0.0), self._nominal(t, r)
            if t != tenant:
                supply += self._lendable(t, r)
            draw += max(0.0, use - nominal)
        spare = self.unclaimed[r] - self._from_unclaimed(r, {})
        return max(0.0, supply - draw) + max(0.0, spare)

    def over_own_limit(self, tenant: str, ask: Shape) -> bool:
        """Whether ``ask`` would take ``tenant`` past its own ``borrowing_limit`` now (its own
        work is in the way, not anyone else's)."""
        queue = self.config.queue(tenant)
        for r in self.counted:
            amount = ask.get(r, 0.0)
            if amount <= 0:
                continue
            over = self.used.get(tenant, {}).get(r, 0.0) + amount - self._nominal(tenant, r)
            if over > (queue.borrowing_limit or {}).get(r, math.inf) + EPS:
                return True
        return False

    def quota_allows_ever(self, tenant: str, ask: Shape) -> bool:
        """Whether ``ask`` is within what ``tenant`` could hold with everyone else idle."""
        queue = self.config.queue(tenant)
        for r in self.counted:
            amount = ask.get(r, 0.0)
            nominal = self._nominal(tenant, r)
            limit = (queue.borrowing_limit or {}).get(r, math.inf)
            if amount > min(nominal + limit, max(nominal, self.capacity.get(r, 0.0))) + EPS:
                return False
        return True

    def within_nominal(self, tenant: str, ask: Shape) -> bool:
        return all(
            self.used.get(tenant, {}).get(r, 0.0) + ask.get(r, 0.0)
            <= self._nominal(tenant, r) + EPS
            for r in self.counted
            if ask.get(r, 0.0) > 0
        )

    def borrowing(self, tenant: str) -> bool:
        return any(
            self.used.get(tenant, {}).get(r, 0.0) > self._nominal(tenant, r) + EPS
            for r in self.counted
        )

    # -- placement ------------------------------------------------------------------------

    def place(
        self,
        ask: Shape,
        copies: int,
        placement: str,
        closed: Mapping[str, float] | None = None,
        ends_by: float = math.inf,
    ) -> tuple[str, ...] | None:
        """``copies`` distinct workers each with ``ask`` free, or None. ``closed`` maps a
        reserved worker to when its reservation starts: only work that ends by then may use
        it."""
        fitting = [
            address
            for address, free in self.free.items()
            if all(free.get(k, 0.0) + EPS >= v for k, v in ask.items())
            and (closed is None or address not in closed or ends_by <= closed[address] < math.inf)
        ]
        if len(fitting) < copies:
            return None

        def room(address: str) -> float:  # the free share left, summed over what it offers
            offers = self.offers[address]
            return sum(
                (self.free[address].get(k, 0.0) - ask.get(k, 0.0)) / v
                for k, v in offers.items()
                if v > 0
            )

        fitting.sort(key=lambda a: (room(a), a), reverse=placement == "spread")
        return tuple(fitting[:copies])

    def could_ever_fit(self, ask: Shape, copies: int) -> bool:
        """Whether ``copies`` workers offer ``ask`` at all (were they empty)."""
        enough = sum(
            1
            for off in self.offers.values()
            if all(off.get(k, 0.0) + EPS >= v for k, v in ask.items())
        )
        return enough >= copies

    def shortfall(self, ask: Shape, copies: int) -> str:
        """Why ``copies`` of ``ask`` fit no set of workers now, in words."""
        enough = [
            a
            for a, off in self.offers.items()
            if all(off.get(k, 0.0) + EPS >= v for k, v in ask.items())
        ]
        if len(enough) < copies:
            missing = sorted(k for k in ask if not any(k in off for off in self.offers.values()))
            if missing:
                return f"no worker offers {', '.join(missing)}"
            if copies > 1:
                return f"waiting for a gang of {copies} workers with {describe(ask)}: only {len(enough)} offer that much"
            return f"no worker offers {describe(ask)}"
        free_now = sum(
            1 for a in enough if all(self.free[a].get(k, 0.0) + EPS >= v for k, v in ask.items())
        )
        if copies > 1:
            return f"waiting for a gang of {copies} workers with {describe(ask)}, {free_now} free"
        most = {k: max((f.get(k, 0.0) for f in self.free.values()), default=0.0) for k in ask}
        return f"waiting for capacity: needs {describe(ask)}; most free on one worker: {describe(most) if any(most.values()) else 'nothing'}"


def effective_priority(c: Candidate, now: float, config: QueueConfig) -> float:
    every = config.aging.every
    aged = (now - c.queued_at) / every if every > 0 else 0.0
    return c.priority + max(0.0, aged)


def decide(snap: Snapshot, config: QueueConfig) -> Decision:
    """The admission decision for this snapshot (see the module's docstring)."""
    if not snap.workers:  # nothing to weigh: every job waits for the same thing
        waiting = dict.fromkeys((c.job_id for c in snap.candidates), NO_WORKER)
        return Decision(waiting=waiting)
    deciding = _Deciding(snap, config)
    decision = deciding.run()
    if deciding.passed_over:
        # starving jobs that smaller ones overtook: decide again with them first
        deciding = _Deciding(snap, config, targets=deciding.passed_over)
        decision = deciding.run()
    deciding.plan_chains()
    return decision


PHANTOM_PREFIX = "~no-worker-"
PHANTOM_AMOUNT = 1e12  # of every resource: room for every candidate at once


def admissible_demand(snapshot: Snapshot, config: QueueConfig) -> list[Demand]:
    """Admission's demand for ``snapshot``: what it would start now if capacity existed.

    With workers up, ``admission.decide``'s own ``demand``. With none, ``decide`` says only
    "no worker is connected" for every job; then phantom workers with room for everything
    (as many as the largest gang) stand in, and what admission would start on them is the
    demand: quotas still apply (a tenant at its borrowing limit asks for nothing, so a pool
    does not grow from zero for jobs that could not run on it), gangs get their N workers."""
    if snapshot.workers:
        return decide(snapshot, config).demand
    if not snapshot.candidates:
        return []
    names = set(config.resources)
    for c in snapshot.candidates:
        names.update(c.resources)
    phantoms = [
        WorkerSlot(f"{PHANTOM_PREFIX}{i}", dict.fromkeys(names, PHANTOM_AMOUNT))
        for i in range(max(c.gang for c in snapshot.candidates))
    ]
    phantom = Snapshot(
        now=snapshot.now,
        workers=phantoms,
        running=snapshot.running,
        candidates=snapshot.candidates,
        usage=snapshot.usage,
    )
    decision = decide(phantom, config)
    by_id = {c.job_id: c for c in snapshot.candidates}
    counts: dict[tuple[tuple[tuple[str, float], ...], int], int] = {}
    for start in decision.start:
        c = by_id[start.job_id]
        key = (tuple(sorted((k, float(v)) for k, v in c.resources.items() if v)), c.gang)
        counts[key] = counts.get(key, 0) + 1
    for d in decision.demand:  # none expected: everything fits the phantoms
        key = (tuple(sorted(d.resources.items())), d.gang)
        counts[key] = counts.get(key, 0) + d.count
    return [Demand(dict(shape), count, gang) for (shape, gang), count in sorted(counts.items())]


class _Deciding:
    def __init__(
        self, snap: Snapshot, config: QueueConfig, targets: Sequence[Candidate] = ()
    ) -> None:
        self.snap = snap
        self.targets = sorted(targets, key=lambda c: (c.queued_at, c.job_id))
        self.passed_over: list[Candidate] = []
        self.overtaken: list[tuple[Candidate, int]] = []  # (starving job, starts before it)
        self.started_ids: set[int] = set()
        self.promised: list[tuple[Shape, int]] = []  # what this decision preempted for
        # Within one decision free capacity only shrinks and reservations only grow (victims
        # hold theirs until they stop), so a shape that found no workers finds none later:
        # a queue of many identical jobs costs one placement search, not one per job.
        self.unplaceable: set[tuple[Any, ...]] = set()
        self.shortfalls: dict[tuple[Any, ...], str] = {}
        self.ever_fits: dict[tuple[Any, ...], bool] = {}
        self.refused: dict[tuple[str, tuple[Any, ...]], str] = {}  # (tenant, shape) → why
        self.shares: dict[str, float] = {}
        self.config = config
        self.now = snap.now
        self.books = _Books(config, snap)
        self.decision = Decision()
        half_life = config.fair_share.half_life
        # decayed usage is in resource-seconds; × ln 2 / half-life it is a rate, comparable
        # with what a tenant holds now
        self.rate = math.log(2) / half_life if half_life > 0 else 0.0
        self.running = [r for r in snap.running if not r.preempting]
        self.yielding = [r for r in snap.running if r.preempting]
        self.closed: dict[str, float] = {}  # reserved worker → when its reservation starts
        self.reserved_by: dict[str, int] = {}
        self.demand: dict[tuple[tuple[tuple[str, float], ...], int], int] = {}
        self.queues: dict[str, list[Candidate]] = {}
        for c in snap.candidates:
            self.queues.setdefault(c.tenant, []).append(c)
        for cands in self.queues.values():
            cands.sort(
                key=lambda c: (-effective_priority(c, self.now, config), c.queued_at, c.job_id)
            )

    def share(self, tenant: str) -> float:
        """The tenant's dominant share over all capacity, per unit of weight (kept until the
        tenant starts or reserves something: nothing else changes it within a decision)."""
        if tenant not in self.shares:
            self.shares[tenant] = self._share(tenant)
        return self.shares[tenant]

    def _share(self, tenant: str) -> float:
        used, planned = self.books.used.get(tenant, {}), self.books.planned.get(tenant, {})
        held = {r: v - planned.get(r, 0.0) for r, v in used.items()}  # plans run nothing yet
        if self.rate:
            past = self.snap.usage.get(tenant, {})
            held = {
                r: 0.5 * held.get(r, 0.0) + 0.5 * past.get(r, 0.0) * self.rate
                for r in set(held) | set(past)
            }
        dominant = max(
            (
                held.get(r, 0.0) / self.books.capacity[r]
                for r in self.books.counted
                if self.books.capacity.get(r, 0.0) > 0
            ),
            default=0.0,
        )
        return dominant / self.config.queue(tenant).weight

    def run(self) -> Decision:
        # Starving jobs that smaller ones overtook go first, oldest first: each that does not
        # fit reserves the workers that free up soonest.
        done: set[int] = set()
        for c in self.targets:
            self.consider(c, may_reserve=True)
            done.add(c.job_id)
        # Then tenants take turns by fair share, those asking within their nominal first.
        position = {t: 0 for t in self.queues}

        def key(tenant: str) -> tuple[int, float, str] | None:
            cands = self.queues[tenant]
            while position[tenant] < len(cands) and cands[position[tenant]].job_id in done:
                position[tenant] += 1
            if position[tenant] >= len(cands):
                return None
            c = cands[position[tenant]]
            total = {k: v * c.gang for k, v in c.resources.items()}
            borrowing = 0 if self.books.within_nominal(tenant, total) else 1
            return (borrowing, self.share(tenant), tenant)

        heap = [k for k in map(key, self.queues) if k is not None]
        heapq.heapify(heap)
        while heap:
            tenant = heapq.heappop(heap)[2]
            c = self.queues[tenant][position[tenant]]
            position[tenant] += 1
            self.consider(c, may_reserve=False)
            nxt = key(tenant)
            if nxt is not None:
                heapq.heappush(heap, nxt)
        self.passed_over = [c for c, k in self.overtaken if len(self.decision.start) > k]
        self.decision.demand = [
            Demand(dict(shape), count, gang) for (shape, gang), count in sorted(self.demand.items())
        ]
        self.decision.free = {a: dict(f) for a, f in self.books.free.items()}
        return self.decision

    def consider(self, c: Candidate, *, may_reserve: bool) -> None:
        books, decision = self.books, self.decision
        ask = {k: float(v) for k, v in c.resources.items() if v}
        total = {k: v * c.gang for k, v in ask.items()}
        placement = c.placement or self.config.placement
        ends_by = self.now + c.timeout_s if c.timeout_s is not None else math.inf

        shape = (tuple(sorted(ask.items())), c.gang)
        if shape not in self.ever_fits:
            self.ever_fits[shape] = books.could_ever_fit(ask, c.gang)
        if not self.ever_fits[shape]:  # not a quota matter: no worker could
            decision.waiting[c.job_id] = self.shortfall(shape, ask, c.gang)
            self.demand[shape] = self.demand.get(shape, 0) + 1
            return
        # Quota only tightens during a decision (every admission, reservation and victim
        # still holds what it held), so a tenant refused a shape stays refused it.
        problem = self.refused.get((c.tenant, shape))
        if problem is None:
            problem = books.quota_problem(c.tenant, total)
            if problem is not None:
                self.refused[(c.tenant, shape)] = problem
        if problem is not None:
            decision.waiting[c.job_id] = problem
            if self.config.preemption.within_tenant == "lower_priority":
                pool = [r for r in self.running if r.tenant == c.tenant and r.priority < c.priority]
                victims = self.victims(
                    pool,
                    c,
                    ask,
                    lambda: (
                        books.quota_problem(c.tenant, total) is None
                        and books.place(ask, c.gang, "binpack") is not None
                    ),
                )
                if victims:
                    self.preempt(victims, c, f"preempted for higher-priority job {c.job_id}")
                    decision.waiting[c.job_id] = (
                        f"preempting {len(victims)} lower-priority attempt(s) of {c.tenant}"
                    )
                    return
            # quota that others keep taking starves a job as surely as capacity does
            if may_reserve:
                self.reserve(c, ask, total, hold_quota=True)
            elif (
                self.starving(c)
                and not books.over_own_limit(c.tenant, total)
                and books.quota_allows_ever(c.tenant, total)
            ):
                self.overtaken.append((c, len(decision.start)))
            return
        fit_key = (shape, ends_by)
        workers = None
        if fit_key not in self.unplaceable:
            workers = books.place(ask, c.gang, placement, self.closed, ends_by)
            if workers is None:
                self.unplaceable.add(fit_key)
        if workers is not None:
            books.hold(c.tenant, ask, workers)
            self.shares.pop(c.tenant, None)
            self.started_ids.add(c.job_id)
            decision.start.append(Start(c.job_id, workers))
            self.running.append(
                Running(
                    c.job_id,
                    c.tenant,
                    c.priority,
                    ask,
                    workers,
                    self.now,
                    c.timeout_s,
                    chainable=c.gang == 1,
                )
            )
            return
        self.demand[shape] = self.demand.get(shape, 0) + 1
        if not may_reserve and self.starving(c):
            self.overtaken.append((c, len(decision.start)))
        open_key = (shape, None)
        open_fit = None
        if self.closed and open_key not in self.unplaceable:
            open_fit = books.place(ask, c.gang, placement)
            if open_fit is None:
                self.unplaceable.add(open_key)
        if open_fit is not None:  # room exists, but on workers reserved for another job
            holder = next(self.reserved_by[a] for a in open_fit if a in self.reserved_by)
            decision.waiting[c.job_id] = f"reserved for job {holder}"
            return
        decision.waiting[c.job_id] = self.shortfall(shape, ask, c.gang)
        if self.yielding and self.fits_once_yielded(ask, c.gang):
            decision.waiting[c.job_id] = (
                f"waiting for {len(self.yielding)} preempted attempt(s) to stop"
            )
            return
        # a job within its tenant's nominal takes back what its cohort borrowed
        victims = self.reclaim(c, ask, total)
        if victims:
            self.preempt(victims, c, f"preempted to reclaim quota for job {c.job_id} of {c.tenant}")
            decision.waiting[c.job_id] = (
                f"preempting {len(victims)} borrowed attempt(s) to reclaim {c.tenant}'s quota"
            )
        elif may_reserve:
            self.reserve(c, ask, total, hold_quota=False)

    def shortfall(self, shape: tuple[Any, ...], ask: Shape, copies: int) -> str:
        """``books.shortfall``, worked out once per shape in a decision (its numbers are
        those of the first job of that shape that did not fit)."""
        if shape not in self.shortfalls:
            self.shortfalls[shape] = self.books.shortfall(ask, copies)
        return self.shortfalls[shape]

    def starving(self, c: Candidate) -> bool:
        return self.now - c.queued_at >= self.config.reservation_after

    def reserve(self, c: Candidate, ask: Shape, total: Shape, *, hold_quota: bool) -> None:
        """Keep for ``c`` the workers where it will fit soonest (only work that ends before
        may use them meanwhile), if some set of workers could ever hold it; and, when quota
        is what keeps it out, the quota it needs (nobody later in this decision may take it;
        a job kept out only by capacity holds none, so its tenant's other work still runs)."""
        spot = _reserve(self.books, self.running + self.yielding, ask, c.gang, self.closed)
        if spot is None:
            return
        workers, at = spot
        for a in workers:
            self.closed[a] = at
            self.reserved_by[a] = c.job_id
        if hold_quota and self.books.quota_allows_ever(c.tenant, total):
            _add(self.books.used.setdefault(c.tenant, {}), total)
            self.shares.pop(c.tenant, None)
        self.decision.reserved[c.job_id] = workers
        self.decision.waiting[c.job_id] += f"; reserved {', '.join(workers)} for it"

    def fits_once_yielded(self, ask: Shape, copies: int) -> bool:
        """Whether ``ask`` will fit once the attempts asked to yield have stopped, after the
        jobs they were preempted for in this decision have taken their part."""
        books = self.books
        for r in self.yielding:
            books.occupy(r.resources, r.workers, sign=-1)
        taken: list[tuple[Shape, tuple[str, ...]]] = []
        try:
            for promised, gang in self.promised:
                workers = books.place(promised, gang, "binpack")
                if workers is not None:
                    books.occupy(promised, workers)
                    taken.append((promised, workers))
            return books.place(ask, copies, "binpack") is not None
        finally:
            for promised, workers in taken:
                books.occupy(promised, workers, sign=-1)
            for r in self.yielding:
                books.occupy(r.resources, r.workers)

    def reclaim(self, c: Candidate, ask: Shape, total: Shape) -> list[Running]:
        policy = self.config.preemption.reclaim_within_cohort
        if policy == "never" or not self.books.within_nominal(c.tenant, total):
            return []
        cohort = self.config.cohort_of(c.tenant)
        pool = [
            r
            for r in self.running
            if r.tenant != c.tenant and (policy == "any" or r.priority < c.priority)
        ]
        # its cohort's borrowers first; then anyone's borrowed work, since a tenant of
        # another cohort starting within its own nominal can take capacity that was idle in
        # this one's, and nominal is a guarantee whoever holds the capacity
        ours = [r for r in pool if self.config.cohort_of(r.tenant) == cohort]
        for candidates in (ours, pool):
            victims = self.victims(
                candidates,
                c,
                ask,
                lambda: self.books.place(ask, c.gang, "binpack") is not None,
                borrowed_only=True,
            )
            if victims:
                return victims
        return []

    def victims(
        self,
        pool: list[Running],
        c: Candidate,
        ask: Shape,
        enough: Callable[[], bool],
        *,
        borrowed_only: bool = False,
    ) -> list[Running]:
        """The attempts of ``pool`` to preempt so that ``enough()`` holds: lowest priority
        first, then newest; empty if even all of them would not do. Capacity is per worker,
        so the first that together suffice may include some on other workers that did not
        help: those are spared again (the last chosen first) wherever ``enough()`` still
        holds without them."""
        books = self.books
        pool = sorted(
            (r for r in pool if r.job_id not in self.started_ids),  # not one started just now
            key=lambda r: (r.priority, -r.started_at, -r.job_id),
        )
        chosen: list[Running] = []
        try:
            for r in pool:
                if borrowed_only and not books.borrowing(r.tenant):
                    continue  # back within its nominal: what it holds now is its own
                chosen.append(r)
                books.hold(r.tenant, r.resources, r.workers, sign=-1)
                if enough():
                    for spared in reversed(chosen[:-1]):
                        books.hold(spared.tenant, spared.resources, spared.workers)
                        if enough():
                            chosen.remove(spared)
                        else:
                            books.hold(spared.tenant, spared.resources, spared.workers, sign=-1)
                    return list(chosen)
            return []
        finally:
            # victims hold their resources until they have stopped
            for r in chosen:
                books.hold(r.tenant, r.resources, r.workers)

    def preempt(self, victims: list[Running], c: Candidate, reason: str) -> None:
        self.promised.append(({k: float(v) for k, v in c.resources.items() if v}, c.gang))
        for v in victims:
            self.running.remove(v)
            self.yielding.append(v)
            self.decision.preempt.append(Preempt(v.job_id, c.job_id, reason))

    def plan_chains(self) -> None:
        """Plan which queued jobs take the places of chainable attempts as they end
        (``Decision.chains``), continuing this decision's fair-share order over what it left
        waiting.

        Attempts of one shape form groups of at most ``CHAIN_GROUP`` (up to ``plan_depth``
        jobs per attempt); whichever chain of a group finishes takes the group's first job
        still queued, so a long job in one place holds up nothing planned. A chain starts a
        planned job in one statement, with no snapshot and no lock, so a plan must keep the
        rules whenever and in whatever order chains follow it. Capacity does: a planned job
        asks exactly what the attempt it follows holds, on that worker. Quota does because a
        plan is charged: each tenant, for every place of the group it may come to hold
        beyond what it holds now (``ChainGroup.extra``), here and in every later decision
        that reads the plan, until a decision replaces it. A job planned into a place its
        tenant already holds or is charged for must fit its quota once that place is given
        back. Reserved workers get no plan: their chains come back to a full decision,
        which knows the reservation.
        """
        depth = self.snap.plan_depth
        if depth <= 0:
            return
        only = self.snap.plan_workers
        by_shape: dict[tuple[tuple[str, float], ...], list[Running]] = {}
        for r in self.running:
            if (
                r.chainable
                and len(r.workers) == 1
                and r.workers[0] not in self.closed
                and (only is None or r.workers[0] in only)
            ):
                by_shape.setdefault(_shape_key(r.resources), []).append(r)
        if not by_shape:
            return
        groups: dict[tuple[tuple[str, float], ...], list[_Planning]] = {}
        for shape, slots in by_shape.items():
            slots.sort(key=lambda r: (r.workers[0], r.job_id))
            groups[shape] = [
                _Planning(slots[n : n + CHAIN_GROUP], depth)
                for n in range(0, len(slots), CHAIN_GROUP)
            ]
        taken = self.started_ids | set(self.decision.reserved)
        queues = {
            t: [c for c in cands if c.gang == 1 and c.job_id not in taken]
            for t, cands in self.queues.items()
        }
        position = dict.fromkeys(queues, 0)
        ahead: dict[str, float] = {}  # share a tenant's planned jobs add, per unit weight
        capacity = self.books.capacity

        def key(tenant: str) -> tuple[int, float, str] | None:
            if position[tenant] >= len(queues[tenant]):
                return None
            c = queues[tenant][position[tenant]]
            borrowing = 0 if self.books.within_nominal(tenant, c.resources) else 1
            return (borrowing, self.share(tenant) + ahead.get(tenant, 0.0), tenant)

        heap = [k for k in map(key, queues) if k is not None]
        heapq.heapify(heap)
        while heap:
            tenant = heapq.heappop(heap)[2]
            c = queues[tenant][position[tenant]]
            position[tenant] += 1
            shape = _shape_key(c.resources)
            open_ = [g for g in groups.get(shape, ()) if g.has_room]
            if open_:
                chosen = min(open_, key=lambda g: (g.needs_place(tenant), g.fill))
                ask = dict(shape)
                if chosen.needs_place(tenant):
                    fits = self.books.quota_problem(tenant, ask) is None
                else:
                    fits = self.may_follow(tenant, ask, charged=True)
                if fits:
                    if chosen.needs_place(tenant):
                        self.books.charge(tenant, ask, planned=True)
                        self.shares.pop(tenant, None)
                    chosen.add(c.job_id, tenant)
                    dominant = max(
                        (v / capacity[k] for k, v in shape if capacity.get(k, 0.0) > 0),
                        default=0.0,
                    )
                    ahead[tenant] = (
                        ahead.get(tenant, 0.0) + dominant / self.config.queue(tenant).weight
                    )
            elif not any(g.has_room for gs in groups.values() for g in gs):
                break
            nxt = key(tenant)
            if nxt is not None:
                heapq.heappush(heap, nxt)
        for gs in groups.values():
            for g in gs:
                self.decision.chains.append(
                    ChainGroup(tuple(r.job_id for r in g.slots), tuple(g.jobs))
                )

    def may_follow(self, tenant: str, ask: Shape, *, charged: bool) -> bool:
        """Whether quota lets ``tenant`` start ``ask`` in a place: one it is already charged
        for (its own attempt's, or planned) once that place is given back; else on top."""
        if not charged:
            return self.books.quota_problem(tenant, ask) is None
        self.books.charge(tenant, ask, -1, planned=True)
        try:
            return self.books.quota_problem(tenant, ask) is None
        finally:
            self.books.charge(tenant, ask, planned=True)


def _reserve(
    books: _Books,
    running: list[Running],
    ask: dict[str, float],
    copies: int,
    closed: Mapping[str, float],
) -> tuple[tuple[str, ...], float] | None:
    """The ``copies`` workers where ``ask`` will fit soonest, counting on running attempts
    ending by their time limits, and when; None if no set of workers ever could."""
    when: dict[str, float] = {}
    for address, offers in books.offers.items():
        if address in closed or not all(offers.get(k, 0.0) + EPS >= v for k, v in ask.items()):
            continue
        free = dict(books.free[address])
        at = -math.inf
        for r in sorted((r for r in running if address in r.workers), key=lambda r: r.ends_by):
            if all(free.get(k, 0.0) + EPS >= v for k, v in ask.items()):
                break
            _add(free, r.resources)
            at = r.ends_by
        if all(free.get(k, 0.0) + EPS >= v for k, v in ask.items()):
            when[address] = at
    if len(when) < copies:
        return None
    chosen = sorted(when, key=lambda a: (when[a], a))[:copies]
    return tuple(chosen), max(when[a] for a in chosen)


CHAIN_GROUP = 8
"""Chainable attempts of one shape share a plan in groups of at most this many."""


def _shape_key(resources: Shape) -> tuple[tuple[str, float], ...]:
    return tuple(sorted((k, float(v)) for k, v in resources.items() if v))


class _Planning:
    """A chain group being planned: its places, their holders, and the jobs planned."""

    def __init__(self, slots: list[Running], depth: int) -> None:
        self.slots = slots
        self.room = depth * len(slots)
        self.holders: dict[str, int] = {}
        for r in slots:
            self.holders[r.tenant] = self.holders.get(r.tenant, 0) + 1
        self.planned: dict[str, int] = {}
        self.jobs: list[tuple[int, str]] = []

    @property
    def has_room(self) -> bool:
        return len(self.jobs) < self.room

    @property
    def fill(self) -> float:
        return len(self.jobs) / len(self.slots)

    def needs_place(self, tenant: str) -> bool:
        """Whether planning one more job of ``tenant`` here lets it hold one place more
        than it holds or is charged for (``ChainGroup.extra``): while other tenants hold
        places it has not been charged for, its next planned job may take one of them."""
        count = self.planned.get(tenant, 0) + 1
        return count <= len(self.slots) - self.holders.get(tenant, 0)

    def add(self, job_id: int, tenant: str) -> None:
        self.jobs.append((job_id, tenant))
        self.planned[tenant] = self.planned.get(tenant, 0) + 1
