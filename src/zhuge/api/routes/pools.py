"""/v1/pools and /v1/autoscaler: worker pools (admins apply them) and the autoscaler's log.

``PUT /v1/pools`` takes a pools file as it is (YAML, any text content type) or as JSON
``{"document": "<yaml>"}`` or ``{"document": {...}}``: the pools' sizes, policies and prices.
A pool names a provider the server configures in its own file (``ZHUGE_POOLS_FILE``); a file
that names another, or carries a ``providers:`` section, is refused with 422 and nothing
changes (an import path or a command is code: never through the API). Admins only.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, Field

from zhuge.api import audit
from zhuge.api.auth import AdminPrincipal, StoreDep
from zhuge.api.routes.queues import _BODY_DOC, _document, _raw_body
from zhuge.api.schemas import iso
from zhuge.jobs.elastic import autoscaler, pool_config
from zhuge.jobs.elastic.pools import PoolsConfig

router = APIRouter(prefix="/v1", tags=["pools"])


class PoolOut(BaseModel):
    spec: dict[str, Any] = Field(description="The pool as parsed (sizes, policy, prices...).")
    workers: int = Field(description="Workers of the pool up now (their up-time is open).")
    draining: int = Field(description="Of those, workers being drained before retirement.")
    last_decision: dict[str, Any] | None = Field(description="The autoscaler's latest.")


class PoolsOut(BaseModel):
    source: str = Field(
        description="Where the pools in force come from: applied, server file, zhuge up, none."
    )
    pools: list[PoolOut]
    unmanaged: dict[str, int] = Field(
        description="Workers up in pools the configuration does not name (static: zhuge "
        "worker), by pool."
    )
    providers: dict[str, str] = Field(description="Providers the server configures: type.")
    document: str | None = Field(description="The pools file as applied; None: never.")
    applied_at: datetime | None
    applied_by: str | None = Field(description="The id of the token that applied it.")
    autoscaler: str | None = Field(description="The scheduler holding the autoscaler's lease.")


def _iso_or_none(at: float | None) -> datetime | None:
    return iso(at) if at is not None else None


def pools_out(request: Request) -> PoolsOut:
    with pool_config.server_file_hidden():
        return _pools_out(request)


def _pools_out(request: Request) -> PoolsOut:
    store = request.app.state.store
    settings = request.app.state.settings
    server = pool_config.server_pools(settings)
    applied = pool_config.applied_pools(store)
    config, source = pool_config.pools_in_force(store, settings)
    # the embedded pool of `zhuge up` (``local``) is known to its scheduler, which publishes
    # the pools it uses
    in_force = pool_config.applied_pools(store, row_id=pool_config.IN_FORCE)
    named = {p.name for p in config.pools} if config else set()
    extra = [p for p in (in_force.config.pools if in_force else []) if p.name not in named]
    if extra:
        config = PoolsConfig(pools=[*(config.pools if config else []), *extra])
        source = source if named else "zhuge up"
    up = autoscaler.workers_by_pool(store)
    draining = autoscaler.drained(store)
    last = autoscaler.last_decisions(store)
    pools = []
    for pool in config.pools if config else []:
        addresses = up.pop(pool.name, [])
        decision = last.get(pool.name)
        if decision is not None:
            decision = {**decision, "at": iso(decision["at"])}
        pools.append(
            PoolOut(
                spec=pool.model_dump(mode="json"),
                workers=len(addresses),
                draining=sum(1 for a in addresses if a in draining),
                last_decision=decision,
            )
        )
    return PoolsOut(
        source=source,
        pools=pools,
        unmanaged={name: len(addresses) for name, addresses in sorted(up.items())},
        providers={name: p.type for name, p in sorted(server.providers.items())},
        document=applied.document if applied else None,
        applied_at=_iso_or_none(applied.applied_at) if applied else None,
        applied_by=applied.applied_by if applied else None,
        autoscaler=autoscaler.lease_holder(store),
    )


@router.put("/pools", name="pools.apply", openapi_extra=_BODY_DOC)
def apply_pools(
    request: Request,
    body: Annotated[bytes, Depends(_raw_body)],
    store: StoreDep,
    principal: AdminPrincipal,
) -> PoolsOut:
    """Make a pools file the pools in force (admin): sizes, policies and prices of pools
    whose providers this server configures."""
    audit.note(request, target="pools")
    document = _document(body, request.headers.get("content-type", ""))
    with pool_config.server_file_hidden():
        config = pool_config.apply_pools(
            store, request.app.state.settings, document, applied_by=principal.token_id
        )
    audit.note(request, pools=[p.name for p in config.pools])
    return pools_out(request)


@router.get("/pools", name="pools.get")
def get_pools(request: Request, _: AdminPrincipal) -> PoolsOut:
    """The pools in force, each with its workers up and the autoscaler's latest decision
    (admin)."""
    return pools_out(request)


class DecisionOut(BaseModel):
    id: int
    at: datetime
    pool: str
    from_size: int = Field(description="Workers up (not draining) when it decided.")
    to_size: int = Field(description="The target it chose.")
    policy: str
    reason: str
    inputs: dict[str, Any] | None = Field(description="What the policy looked at.")
    scheduler: str | None = Field(description="The scheduler holding the lease then.")


class DecisionsOut(BaseModel):
    decisions: list[DecisionOut]


@router.get("/autoscaler/log", name="autoscaler.log")
def autoscaler_log(
    store: StoreDep,
    _: AdminPrincipal,
    pool: Annotated[str | None, Query(max_length=64, description="Only this pool's.")] = None,
    changes: Annotated[
        bool, Query(description="Only decisions that changed a pool's size.")
    ] = False,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 50,
) -> DecisionsOut:
    """The autoscaler's decisions, newest first: time, pool, from → to, policy, reason and
    inputs (admin)."""
    rows = autoscaler.decisions(store, pool=pool, limit=limit, changes=changes)
    return DecisionsOut(decisions=[DecisionOut(**{**r, "at": iso(r["at"])}) for r in rows])
