"""/v1/costs: what jobs cost, by tenant, kind, pool or day (``zhuge.jobs.elastic.costs``).

An admin sees every tenant, the pools' bills, their idle cost and what spot would have
saved; a member sees its own tenant's lines only.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, Field

from zhuge.api.auth import CurrentPrincipal
from zhuge.jobs.elastic import costs
from zhuge.jobs.elastic.pool_config import server_file_hidden
from zhuge.jobs.tenancy import parse_duration

router = APIRouter(prefix="/v1/costs", tags=["costs"])


class CostLineOut(BaseModel):
    key: str = Field(description="The tenant, kind, pool, day (UTC) or job id of this line.")
    cost: float = Field(description="What its attempts were charged, in price_per_hour's unit.")
    attempts: int
    allocated: dict[str, float] = Field(
        description="Resource-seconds allocated: CPU, GPU (fractions as fractions), memory_gb."
    )
    cpu_seconds: float = Field(description="CPU-seconds measured (ctx.map parts included).")


class CostsOut(BaseModel):
    by: str
    since: str | None
    until: str | None
    lines: list[CostLineOut]
    total: float = Field(description="What attempts were charged, summed.")
    capacity_cost: float | None = Field(description="The pools' bill (admins only).")
    idle_cost: float | None = Field(description="Capacity paid for that no job used (admins only).")
    spot_savings: float | None = Field(
        description="What the same up-time would have cost less all on spot (admins only)."
    )
    pools: dict[str, dict[str, float | None]] = Field(
        description="Per pool: cost, charged, idle_cost, spot_would_save, up_s, billed_s, "
        "used_worker_s (admins only)."
    )
    unpriced_pools: list[str] = Field(
        description="Pools with usage that the pools in force do not name (charged 0)."
    )


def since_seconds(since: str | None, now: float) -> float | None:
    """``7d`` (a duration back from now) or an ISO 8601 time, as epoch seconds."""
    if not since:
        return None
    from zhuge.errors import InvalidRequest

    try:
        return now - parse_duration(since)
    except InvalidRequest:
        pass
    try:
        at = datetime.fromisoformat(since)
    except ValueError:
        raise InvalidRequest(
            f"since {since!r} is neither a duration (1h, 7d) nor an ISO 8601 time"
        ) from None
    return (at if at.tzinfo else at.replace(tzinfo=UTC)).timestamp()


@router.get("", name="costs.get")
def get_costs(
    request: Request,
    principal: CurrentPrincipal,
    by: Annotated[
        Literal["tenant", "kind", "pool", "day", "job"],
        Query(description="How to group the lines (job: one line per job, by its id)."),
    ] = "tenant",
    since: Annotated[
        str | None,
        Query(max_length=64, description="A duration back from now (7d, 24h) or ISO 8601."),
    ] = None,
) -> CostsOut:
    """What jobs cost since ``since`` (default: ever), grouped ``by``; with the pools' bill,
    idle cost and spot savings for an admin. A member sees its own tenant's lines only."""
    store = request.app.state.store
    with server_file_hidden():
        report = costs.report(
            store,
            request.app.state.settings,
            by=by,
            since=since_seconds(since, store.clock()),
            tenant=principal.scope,
        )
    data: dict[str, Any] = report.as_dict()
    return CostsOut(**data)
