"""/v1/queues: the queue configuration (admins apply it) and how the queues stand.

``PUT /v1/queues`` takes the queues file as it is (YAML, any text content type) or as JSON
``{"document": "<yaml>"}`` or ``{"document": {...}}``; a file that does not parse or names
a bad field is refused with 422 naming the field, and nothing changes. ``GET
/v1/queues/status`` shows an admin every tenant; a member sees its own tenant's row and the
cluster's totals.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from datetime import datetime
from typing import Annotated, Any

import yaml
from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, Field

from zhuge.api import audit
from zhuge.api.auth import AdminPrincipal, CurrentPrincipal, StoreDep
from zhuge.api.schemas import iso
from zhuge.errors import InvalidRequest
from zhuge.jobs.queues import Queues, QueueStatus

router = APIRouter(prefix="/v1/queues", tags=["queues"])

_BODY_DOC = {
    "requestBody": {
        "required": True,
        "description": 'The queues file (YAML), or JSON {"document": <YAML text or object>}.',
        "content": {
            "application/yaml": {"schema": {"type": "string"}},
            "text/plain": {"schema": {"type": "string"}},
            "application/json": {
                "schema": {
                    "type": "object",
                    "properties": {"document": {"oneOf": [{"type": "string"}, {"type": "object"}]}},
                    "required": ["document"],
                }
            },
        },
    }
}


async def _raw_body(request: Request) -> bytes:
    return await request.body()


def _document(body: bytes, content_type: str) -> str:
    """The YAML text of a PUT's body, whichever form it came in."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidRequest("the queues file must be UTF-8 text") from exc
    if content_type.split(";")[0].strip().lower() != "application/json":
        return text
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidRequest(f"body is not valid JSON: {exc}") from exc
    if not isinstance(data, dict) or set(data) != {"document"}:
        raise InvalidRequest('a JSON body is {"document": <the queues file>}')
    document = data["document"]
    if isinstance(document, dict):
        return yaml.safe_dump(document, sort_keys=False)
    if not isinstance(document, str):
        raise InvalidRequest("document: the queues file as YAML text, or as an object")
    return document


def _queues(store: StoreDep) -> Queues:
    return store.queues


QueuesDep = Annotated[Queues, Depends(_queues)]


class QueuesOut(BaseModel):
    config: dict[str, Any] = Field(description="The configuration in force, as parsed.")
    document: str | None = Field(description="The queues file as applied; None: never.")
    applied_at: datetime | None
    applied_by: str | None = Field(description="The id of the token that applied it.")


class TenantStatusOut(BaseModel):
    tenant: str
    weight: float
    cohort: str | None
    nominal: dict[str, float]
    borrowing_limit: dict[str, float] | None
    lending_limit: dict[str, float] | None
    running: int = Field(description="Jobs running.")
    queued: int = Field(description="Jobs queued.")
    usage: dict[str, float] = Field(description="What its running jobs hold (resources × gang).")
    borrowed: dict[str, float] = Field(description="The part of usage beyond its nominal.")
    dominant_share: float = Field(description="Its largest share of the cluster's capacity.")
    fair_share: float = Field(description="dominant_share / weight: served lowest first.")
    weight_share: float = Field(description="Its weight over all the tenants' shown.")
    decayed_usage: dict[str, float] = Field(
        description="Resource-seconds decayed over the fair share's half-life."
    )


class ClusterStatusOut(BaseModel):
    capacity: dict[str, float] = Field(description="What the live workers offer, summed.")
    usage: dict[str, float] = Field(description="What running jobs hold, summed.")
    running: int
    queued: int
    workers: int


class QueueStatusOut(BaseModel):
    resources: list[str] = Field(description="The resources quotas and fair share count.")
    tenants: list[TenantStatusOut]
    cluster: ClusterStatusOut

    @classmethod
    def of(cls, status: QueueStatus) -> QueueStatusOut:
        return cls.model_validate(asdict(status))


def _out(queues: Queues) -> QueuesOut:
    applied = queues.document()
    return QueuesOut(
        config=queues.config().model_dump(mode="json"),
        document=applied.document if applied else None,
        applied_at=iso(applied.applied_at) if applied else None,
        applied_by=applied.applied_by if applied else None,
    )


@router.put("", name="queues.apply", openapi_extra=_BODY_DOC)
def apply_queues(
    request: Request,
    body: Annotated[bytes, Depends(_raw_body)],
    queues: QueuesDep,
    principal: AdminPrincipal,
) -> QueuesOut:
    """Make a queues file the configuration in force (admin)."""
    audit.note(request, target="queues")
    document = _document(body, request.headers.get("content-type", ""))
    config = queues.apply(document, applied_by=principal.token_id)
    audit.note(request, tenants=sorted(config.tenants), cohorts=sorted(config.cohorts))
    return _out(queues)


@router.get("", name="queues.get")
def get_queues(queues: QueuesDep, _: AdminPrincipal) -> QueuesOut:
    """The configuration in force and the file it came from (admin)."""
    return _out(queues)


@router.get("/status", name="queues.status")
def queue_status(queues: QueuesDep, principal: CurrentPrincipal) -> QueueStatusOut:
    """Per tenant: jobs running and queued, usage against nominal and what is borrowed, fair
    share against weight. An admin sees every tenant; a member its own, with the cluster's
    totals."""
    return QueueStatusOut.of(queues.status(tenant=principal.scope))


class DemandOut(BaseModel):
    resources: dict[str, float] = Field(description="What one copy asks for.")
    gang: int = Field(description="Copies that must start together on distinct workers.")
    count: int = Field(description="Jobs of this shape admission would start with room.")


class DemandsOut(BaseModel):
    demand: list[DemandOut] = Field(
        description="What admission would start now if workers had room, by resource shape: "
        "jobs that wait only for capacity (never for quota), as an autoscaler asks."
    )


@router.get("/demand", name="queues.demand")
def queue_demand(store: StoreDep, _: AdminPrincipal) -> DemandsOut:
    """What admission would start now if workers had room for it, by resource shape and gang
    size (admin: it describes every tenant's queue)."""
    return DemandsOut(
        demand=[
            DemandOut(resources=dict(d.resources), gang=d.gang, count=d.count)
            for d in store.demand()
        ]
    )
