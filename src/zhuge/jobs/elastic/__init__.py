"""Elastic capacity: worker pools that grow and shrink with admissible demand, and their cost.

The pure part (no SQL, no providers), shared by the autoscaler and ``zhuge simulate``:

- ``pools``: ``PoolsConfig.parse(pools.yaml)`` → ``PoolSpec`` per pool (resources per worker,
  min/max/warm, idle timeout, start-up delay, billing, prices, spot, provider name, policy,
  cooldowns and stabilisation windows);
- ``policy``: ``decide(pool, demand, state, history, now) -> Decision``, the scaling decision
  as a pure function; ``pool_demand`` (admission's ``demand()`` mapped onto pools),
  ``admissible_demand`` (that demand from a snapshot, also with no worker up) and
  ``arrival_samples`` (the work arriving per interval, ``predictive``'s history);
- ``billing``: the cost of a worker's up-intervals, idle cost, what spot would have saved.

``docs/elastic.md`` explains pools, policies and the simulator.
"""

from zhuge.jobs.admission import admissible_demand
from zhuge.jobs.elastic.billing import PoolCost, UpInterval, billed_seconds, pool_cost
from zhuge.jobs.elastic.policy import (
    Arrival,
    Decision,
    PoolDemand,
    PoolState,
    Sample,
    ShapeDemand,
    WorkerState,
    arrival_samples,
    decide,
    pool_demand,
)
from zhuge.jobs.elastic.pools import POLICY_NAMES, PoolsConfig, PoolSpec

__all__ = [
    "POLICY_NAMES",
    "Arrival",
    "Decision",
    "PoolCost",
    "PoolDemand",
    "PoolSpec",
    "PoolState",
    "PoolsConfig",
    "Sample",
    "ShapeDemand",
    "UpInterval",
    "WorkerState",
    "admissible_demand",
    "arrival_samples",
    "billed_seconds",
    "decide",
    "pool_cost",
    "pool_demand",
]
