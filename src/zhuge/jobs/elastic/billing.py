"""What workers cost: pure arithmetic over their up-intervals. No SQL.

A provider bills each up-interval of a worker (from the moment it is asked for, start-up
included, to the moment it is gone) rounded **up** to its granularity (a whole second or a
whole hour) and never less than ``billing.minimum_s``; at ``price_per_hour.spot`` when the
worker ran on spot, else at ``price_per_hour.on_demand``. ``zhuge costs`` (from the store) and
``zhuge simulate`` (from its virtual workers) both call these.

- ``billed_seconds(seconds, billing)``: the seconds one interval is billed for.
- ``interval_cost(interval, pool)``: the money one interval costs.
- ``pool_cost(pool, intervals, used_worker_s)`` → ``PoolCost``: the cost, the **idle cost**
  (the part of the bill no job used: ``cost × (1 − used / billed)``, where ``used_worker_s``
  is what attempts held, in worker-seconds by their dominant share of a worker), what the
  same intervals would cost all on demand, and what spot **would have saved** had every
  interval run on spot (None when the pool has no spot price).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

from zhuge.jobs.elastic.pools import Billing, PoolSpec

HOUR = 3600.0  # seconds


@dataclass(frozen=True)
class UpInterval:
    """One worker up from ``start`` to ``end`` (seconds), on spot or on demand."""

    worker: str
    start: float
    end: float
    spot: bool = False

    @property
    def seconds(self) -> float:
        return max(0.0, self.end - self.start)


@dataclass(frozen=True)
class PoolCost:
    pool: str
    cost: float
    idle_cost: float
    on_demand_cost: float
    """The same intervals, all at the on-demand price."""
    spot_would_save: float | None
    """``cost`` less what the same intervals would cost all on spot (None: no spot price)."""
    up_s: float
    billed_s: float
    used_worker_s: float


def billed_seconds(seconds: float, billing: Billing) -> float:
    """The seconds an up-interval of ``seconds`` is billed for."""
    seconds = max(0.0, seconds)
    unit = HOUR if billing.granularity == "hour" else 1.0
    # a hair over a whole unit (float noise from adding times) is not another unit
    rounded = math.ceil(seconds / unit - 1e-9) * unit
    return max(billing.minimum_s, rounded)


def interval_cost(interval: UpInterval, pool: PoolSpec, *, spot: bool | None = None) -> float:
    """What ``interval`` costs on ``pool`` (``spot`` overrides the interval's own flag)."""
    on_spot = interval.spot if spot is None else spot
    prices = pool.price_per_hour
    price = prices.spot if on_spot and prices.spot is not None else prices.on_demand
    return billed_seconds(interval.seconds, pool.billing) / HOUR * price


def pool_cost(pool: PoolSpec, intervals: Iterable[UpInterval], used_worker_s: float) -> PoolCost:
    """The bill for ``intervals`` of ``pool``'s workers (see the module's docstring)."""
    intervals = list(intervals)
    cost = sum(interval_cost(i, pool) for i in intervals)
    on_demand = sum(interval_cost(i, pool, spot=False) for i in intervals)
    all_spot = (
        sum(interval_cost(i, pool, spot=True) for i in intervals)
        if pool.price_per_hour.spot is not None
        else None
    )
    billed = sum(billed_seconds(i.seconds, pool.billing) for i in intervals)
    used = max(0.0, used_worker_s)
    idle = cost * max(0.0, 1.0 - used / billed) if billed > 0 else 0.0
    return PoolCost(
        pool=pool.name,
        cost=cost,
        idle_cost=idle,
        on_demand_cost=on_demand,
        spot_would_save=None if all_spot is None else cost - all_spot,
        up_s=sum(i.seconds for i in intervals),
        billed_s=billed,
        used_worker_s=used,
    )
