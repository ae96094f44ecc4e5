"""The autoscaler: one decision per pool per interval, in one scheduler process at a time.

Each scheduler's housekeeping calls ``Autoscaler.tick`` (about once a second). Only the holder
of the ``autoscaler_lease`` row acts; another scheduler takes the lease over once the holder
has not renewed it for ``LEASE_SECONDS`` (it died, or stopped). The holder, every tick:

1. brings ``worker_uptime`` in step with the census (``costs.record_uptime``), each worker in
   the pool of the provider that runs it (``static`` if none does);
2. retires drained workers that hold no attempt any more (``provider.retire``), and forgets
   the drain once the worker has left;
3. every ``Settings.autoscale_seconds``: for each pool, the policy's decision
   (``policy.decide`` on admission's ``demand()`` mapped onto pools, the pool's workers, and
   its earlier decisions), recorded in ``autoscaler_decisions`` whatever it is, then carried
   out: a larger target asks the provider for more workers (``scale_to``); a smaller one
   *drains* the idle workers the decision names.

**Scale-down never kills a running job.** A drained worker is left out of every census
(``claims``: admission places nothing new on it, and a chain on it claims nothing and follows
no plan), and is retired only when no attempt holds it. A worker a provider takes away while
busy (a spot reclaim, a kill from outside) loses its attempts under the one rule for lost
attempts (``worker_died``, or ``lease_lost``): they run again without spending
``max_attempts``.

The pools in force: the ones applied with ``zhuge pools apply`` (``pool_config``), else the
server file's (``ZHUGE_POOLS_FILE``), plus — when this process runs the embedded Dask cluster
and no pool is named ``local`` — ``zhuge up``'s own workers as the pool ``local`` with
``min = max = --workers``. A pool names a provider by name; providers come from the server
file only (``providers.py``; the configuration's rows and files: ``pool_config.py``).
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from zhuge.errors import ConfigError
from zhuge.jobs import schema
from zhuge.jobs.elastic import costs, policy
from zhuge.jobs.elastic.pool_config import (
    LOCAL_POOL,
    local_pool,
    pools_in_force,
    publish_in_force,
    server_pools,
)
from zhuge.jobs.elastic.pools import PoolsConfig, PoolSpec, PredictivePolicy
from zhuge.jobs.elastic.providers import Provider, make_provider
from zhuge.jobs.outputs import json_safe
from zhuge.jobs.states import JobState

if TYPE_CHECKING:
    from zhuge.config import Settings
    from zhuge.jobs.store import JobStore

log = logging.getLogger(__name__)

LEASE_NAME = "autoscaler"
LEASE_SECONDS = 15.0  # a holder that has not renewed for this long is taken over
HISTORY_SECONDS = 3600.0  # decisions kept in memory for cooldowns and windows
DECISIONS_KEPT_SECONDS = 30 * 86400.0  # the log keeps a month: one row per pool per interval

J = schema.jobs
D = schema.autoscaler_decisions
L = schema.autoscaler_lease
DR = schema.worker_drains


# -- drains and decisions in the store ------------------------------------------------------


def drain(store: JobStore, worker: str, pool: str, reason: str) -> None:
    """Take no new attempt on ``worker``: left out of the census from now on, and the chain
    plans of the attempts running there are dropped (their chains stop after them)."""
    from zhuge.jobs.store import transaction

    now = store.clock()
    insert = (pg_insert if store.is_postgres else sqlite_insert)(DR)
    with transaction(store.engine) as conn:
        conn.execute(
            insert.values(address=worker, pool=pool, requested_at=now, reason=reason)
            .on_conflict_do_nothing(index_elements=[DR.c.address])
        )  # fmt: skip
        conn.execute(
            J.update()
            .where(J.c.state == JobState.RUNNING.value, J.c.worker == worker)
            .values(chain_plan=None)
        )


def drained(store: JobStore) -> dict[str, str]:
    """Workers being drained → their pool."""
    with store.engine.connect() as conn:
        return {r.address: r.pool for r in conn.execute(sa.select(DR.c.address, DR.c.pool))}


def forget_drain(store: JobStore, workers: Sequence[str]) -> None:
    from zhuge.jobs.store import transaction

    if workers:
        with transaction(store.engine) as conn:
            conn.execute(DR.delete().where(DR.c.address.in_(list(workers))))


def busy_workers(store: JobStore) -> dict[str, dict[str, float]]:
    """Workers holding at least one attempt (placed or started) → what they hold."""
    held: dict[str, dict[str, float]] = {}
    with store.engine.connect() as conn:
        rows = conn.execute(
            sa.select(J.c.worker, J.c.assigned_workers, J.c.resources).where(
                J.c.state == JobState.RUNNING.value
            )
        )
        for r in rows:
            for address in set(r.assigned_workers or ([r.worker] if r.worker else [])):
                into = held.setdefault(address, {})
                for k, v in (r.resources or {}).items():
                    into[k] = into.get(k, 0.0) + float(v)
    return held


def record_decision(store: JobStore, decision: policy.Decision, scheduler: str) -> None:
    from zhuge.jobs.store import transaction

    with transaction(store.engine) as conn:
        conn.execute(
            D.insert().values(
                at=decision.at,
                pool=decision.pool,
                from_size=decision.current,
                to_size=decision.target,
                policy=decision.policy,
                reason=decision.reason[:2000],
                inputs=json_safe({**decision.inputs, "retire": list(decision.retire)}),
                scheduler=scheduler,
            )
        )


def forget_decisions(store: JobStore, *, before: float) -> None:
    from zhuge.jobs.store import transaction

    with transaction(store.engine) as conn:
        conn.execute(D.delete().where(D.c.at < before))


def decisions(
    store: JobStore, *, pool: str | None = None, limit: int = 50, changes: bool = False
) -> list[dict[str, Any]]:
    """The autoscaler's decisions, newest first (``zhuge autoscaler log``)."""
    query = sa.select(D).order_by(D.c.id.desc()).limit(max(1, min(limit, 10_000)))
    if pool is not None:
        query = query.where(D.c.pool == pool)
    if changes:
        query = query.where(D.c.from_size != D.c.to_size)
    with store.engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(query)]


def last_decisions(store: JobStore) -> dict[str, dict[str, Any]]:
    """Each pool's latest decision."""
    latest = sa.select(sa.func.max(D.c.id)).group_by(D.c.pool).scalar_subquery()
    with store.engine.connect() as conn:
        rows = conn.execute(sa.select(D).where(D.c.id.in_(latest)))
        return {r.pool: dict(r._mapping) for r in rows}


def workers_by_pool(store: JobStore) -> dict[str, list[str]]:
    """Workers up now (their up-time open), by pool."""
    W = schema.worker_uptime
    out: dict[str, list[str]] = {}
    with store.engine.connect() as conn:
        for r in conn.execute(sa.select(W.c.worker, W.c.pool).where(W.c.ended_at.is_(None))):
            out.setdefault(r.pool, []).append(r.worker)
    return out


# -- arrivals, for the predictive policy ---------------------------------------------------

DEFAULT_DURATION_S = 60.0  # a job's work when no job of the window has finished yet


def arrival_samples(
    store: JobStore, pools: PoolsConfig, pool: PoolSpec, policy_: PredictivePolicy, now: float
) -> list[policy.Sample]:
    """The work that arrived for ``pool`` in each of its policy's last ``max_history``
    intervals (ending at the last whole interval before ``now``): the jobs submitted in it
    whose shape asks this pool (``pools.for_shape``), each its dominant share of a worker ×
    gang × its run time (finished: as it ran; running: so far; not started: the mean run time
    of the window's finished jobs), as ``zhuge simulate`` counts a trace's arrivals."""
    interval = policy_.interval
    end = math.floor(now / interval) * interval
    steps = policy_.max_history
    start = end - steps * interval
    with store.engine.connect() as conn:
        rows = conn.execute(
            sa.select(
                J.c.created_at, J.c.resources, J.c.gang, J.c.started_at, J.c.finished_at
            ).where(J.c.created_at >= start, J.c.created_at < end)
        ).all()
    ran = [r.finished_at - r.started_at for r in rows
           if r.finished_at is not None and r.started_at is not None]  # fmt: skip
    typical = sum(ran) / len(ran) if ran else DEFAULT_DURATION_S
    arrivals = []
    for r in rows:
        if r.started_at is None:
            seconds = typical
        else:
            seconds = (r.finished_at if r.finished_at is not None else now) - r.started_at
        resources = {k: float(v) for k, v in (r.resources or {}).items()}
        arrivals.append(
            policy.Arrival(r.created_at, resources, int(r.gang or 1), max(0.0, seconds))
        )
    samples = policy.arrival_samples(arrivals, pools, interval, start, end).get(pool.name, [])
    # only from the first interval with any arrival: a fresh platform has no history yet
    first = next((k for k, sample in enumerate(samples) if sample.jobs), len(samples))
    return samples[first:]


# -- the lease ------------------------------------------------------------------------------


def hold_lease(store: JobStore, holder: str, now: float) -> bool:
    """Take or renew the autoscaler's lease for ``holder``; whether it holds it now."""
    from zhuge.jobs.store import transaction

    insert = (pg_insert if store.is_postgres else sqlite_insert)(L)
    with transaction(store.engine) as conn:
        conn.execute(
            insert.values(
                name=LEASE_NAME, holder=holder, acquired_at=now, expires_at=now + LEASE_SECONDS
            ).on_conflict_do_nothing(index_elements=[L.c.name])
        )
        taken = conn.execute(
            L.update()
            .where(
                L.c.name == LEASE_NAME,
                sa.or_(L.c.holder == holder, L.c.expires_at < now),
            )
            .values(
                holder=holder,
                expires_at=now + LEASE_SECONDS,
                acquired_at=sa.case((L.c.holder == holder, L.c.acquired_at), else_=now),
            )
        )
        return taken.rowcount == 1


def release_lease(store: JobStore, holder: str) -> None:
    from zhuge.jobs.store import transaction

    with transaction(store.engine) as conn:
        conn.execute(L.delete().where(L.c.name == LEASE_NAME, L.c.holder == holder))


def lease_holder(store: JobStore) -> str | None:
    with store.engine.connect() as conn:
        row = conn.execute(sa.select(L).where(L.c.name == LEASE_NAME)).first()
    if row is None or row.expires_at < store.clock():
        return None
    return row.holder


# -- the loop's part ------------------------------------------------------------------------


class Autoscaler:
    """Called from a scheduler's housekeeping (``tick``); acts only while it holds the lease.

    ``cluster``: the embedded LocalCluster, for ``local`` providers (None when the scheduler
    submits to an existing cluster); ``local_workers``: how many workers ``zhuge up``
    started in it (the ``local`` pool's size)."""

    def __init__(
        self,
        store: JobStore,
        settings: Settings,
        *,
        name: str,
        cluster: Any = None,
        scheduler_info: Any = None,
        local_workers: int = 0,
        local_resources: Mapping[str, float] | None = None,
    ) -> None:
        self.store = store
        self.settings = settings
        self.name = name
        self.cluster = cluster
        self.scheduler_info = scheduler_info
        self.local = (
            local_pool(local_workers, local_resources or {"CPU": 1.0})
            if cluster is not None and local_workers > 0
            else None
        )
        self.server = server_pools(settings)  # a bad server file stops the start, in words
        self.providers: dict[str, Provider] = {}
        self.provider_of: dict[str, tuple[str, str]] = {}  # pool → (provider name, type)
        self.history: dict[str, list[policy.Decision]] = {}
        self.idle_since: dict[str, float] = {}
        self.holding = False
        self._renewed = -math.inf
        self._pruned = -math.inf
        self._last_decision = -math.inf
        self._published: tuple[PoolsConfig, str] | None = None
        self._config: PoolsConfig | None = None
        self._arrivals: dict[str, tuple[float, list[policy.Sample]]] = {}
        self._warned: set[str] = set()
        self._lock = threading.Lock()

    # -- providers --

    def _provider(self, pool: PoolSpec) -> Provider:
        config = self.server.providers[pool.provider]
        known = self.providers.get(pool.name)
        if known is not None and self.provider_of.get(pool.name) == (config.name, config.type):
            if hasattr(known, "resources"):
                known.resources = dict(pool.resources)  # type: ignore[attr-defined]
            return known
        provider = make_provider(
            config,
            pool.name,
            pool.resources,
            cluster=self.cluster,
            scheduler_info=self.scheduler_info,
            dask_address=self.settings.dask_address or "",
            adopt=pool.name == LOCAL_POOL,
        )
        self.providers[pool.name] = provider
        self.provider_of[pool.name] = (config.name, config.type)
        return provider

    def pool_of_workers(self) -> dict[str, str]:
        """Address → pool, for the workers this process's providers run."""
        out: dict[str, str] = {}
        for pool, provider in self.providers.items():
            try:
                for address in provider.workers():
                    out[address] = pool
            except Exception:  # a provider that cannot say now: its workers count as static
                log.exception("pool %s: could not list its workers", pool)
        return out

    # -- one tick --

    def tick(self, now: float | None = None) -> bool:
        """One housekeeping turn; whether this process holds the lease (and so acted)."""
        with self._lock:
            now = self.store.clock() if now is None else now
            self.server = server_pools(self.settings)
            # renewed a few times per lease, not every turn: a write transaction each
            if not self.holding or now - self._renewed >= LEASE_SECONDS / 3:
                self.holding = hold_lease(self.store, self.name, now)
                self._renewed = now
            if not self.holding:
                return False
            config, source = pools_in_force(self.store, self.settings, self.local)
            self._config = config
            if config is not None and (config, source) != self._published:
                publish_in_force(self.store, config, source, self.name)
                self._published = (config, source)
            if config is not None:
                for pool in config.pools:
                    if pool.provider in self.server.providers:
                        try:
                            self._provider(pool)
                        except ConfigError as exc:
                            self._warn(pool.name, exc.message)
            costs.record_uptime(self.store, self.store.workers(), self.pool_of_workers(), now)
            busy = busy_workers(self.store)
            self._retire_drained(busy)
            if config is None or now - self._last_decision < self.settings.autoscale_seconds:
                return True
            self._last_decision = now
            self._decide_all(config, busy, now)
            return True

    def _retire_drained(self, busy: Mapping[str, Any]) -> None:
        draining = drained(self.store)
        if not draining:
            return
        live = {w.address for w in self.store.workers()}
        done = []
        for address, pool in draining.items():
            provider = self.providers.get(pool)
            theirs = set(provider.workers()) if provider is not None else set()
            if address not in theirs and address not in live:
                done.append(address)  # it has left: the drain is over
                continue
            if address in busy or provider is None:
                continue  # still running something: it stays until it ends
            try:
                provider.retire(address)
            except Exception:
                log.exception("pool %s: retiring %s failed; trying again", pool, address)
        forget_drain(self.store, done)

    def _state(
        self, pool: PoolSpec, provider: Provider, busy: Mapping[str, dict[str, float]], now: float
    ) -> policy.PoolState:
        draining = drained(self.store)
        up = provider.workers()
        requested = getattr(provider, "requested", lambda: len(up))()
        allocated: dict[str, float] = {}
        workers = []
        for address in up:
            held = busy.get(address)
            if held:
                self.idle_since.pop(address, None)
                for k, v in held.items():
                    allocated[k] = allocated.get(k, 0.0) + v
            else:
                self.idle_since.setdefault(address, now)
            workers.append(
                policy.WorkerState(
                    name=address,
                    ready=True,
                    busy=bool(held),
                    idle_since=None if held else self.idle_since[address],
                    draining=address in draining,
                )
            )
        starting = max(0, requested - len(up))  # asked for, not joined yet
        workers += [policy.WorkerState(name=f"~starting-{i}", ready=False) for i in range(starting)]
        return policy.PoolState(pool.name, tuple(workers), allocated)

    def _decide_all(
        self, config: PoolsConfig, busy: Mapping[str, dict[str, float]], now: float
    ) -> None:
        try:
            demand = self.store.demand()
        except Exception:
            log.exception("autoscaler: admission's demand could not be read")
            return
        by_pool, _ = policy.pool_demand(demand, config)
        if now - self._pruned >= 3600.0:
            forget_decisions(self.store, before=now - DECISIONS_KEPT_SECONDS)
            self._pruned = now
        for pool in config.pools:
            try:
                self._decide(
                    pool, by_pool.get(pool.name) or policy.PoolDemand(pool.name), busy, now
                )
            except Exception:
                log.exception("autoscaler: pool %s could not be scaled", pool.name)

    def _warn(self, pool: str, message: str) -> None:
        """Say once per pool why it cannot be scaled (each tick would say it again)."""
        if pool not in self._warned:
            self._warned.add(pool)
            log.warning("pool %s is not scaled: %s", pool, message)

    def _decide(
        self,
        pool: PoolSpec,
        demand: policy.PoolDemand,
        busy: Mapping[str, dict[str, float]],
        now: float,
    ) -> policy.Decision | None:
        if pool.provider not in self.server.providers:
            self._warn(pool.name, f"provider {pool.provider!r} is not configured on this server")
            return None
        if pool.name not in self.providers:
            return None  # its provider could not be made here (said once)
        provider = self._provider(pool)
        state = self._state(pool, provider, busy, now)
        history = [d for d in self.history.get(pool.name, []) if now - d.at < HISTORY_SECONDS]
        samples = self._samples(pool, now)
        decision = policy.decide(pool, demand, state, [*history, *samples], now)
        self.history[pool.name] = [*history, decision]
        record_decision(self.store, decision, self.name)
        if decision.target > decision.current:
            provider.scale_to(decision.target + sum(1 for w in state.workers if w.draining))
        elif decision.retire:
            for address in decision.retire:
                drain(self.store, address, pool.name, f"scale-down: {decision.reason}")
        return decision

    def _samples(self, pool: PoolSpec, now: float) -> list[policy.Sample]:
        """The pool's arrivals for ``predictive``, read again once per whole interval."""
        if not isinstance(pool.policy, PredictivePolicy) or self._config is None:
            return []
        end = math.floor(now / pool.policy.interval) * pool.policy.interval
        cached = self._arrivals.get(pool.name)
        if cached is None or cached[0] != end:
            cached = (end, arrival_samples(self.store, self._config, pool, pool.policy, now))
            self._arrivals[pool.name] = cached
        return cached[1]

    def stop(self, workers: Sequence[str] = ()) -> None:
        """Give the lease back, and close the up-time of ``workers`` (this process's, which
        stop with it)."""
        try:
            costs.close_uptime(self.store, workers, self.store.clock())
            release_lease(self.store, self.name)
        except Exception:
            log.exception("autoscaler: could not release its lease")
