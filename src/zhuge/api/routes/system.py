"""/v1/status, /v1/kinds, /healthz, /metrics."""

from __future__ import annotations

import hmac
from typing import Annotated

import sqlalchemy as sa
from fastapi import APIRouter, Depends, Request, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from zhuge.api.auth import CurrentPrincipal, CurrentTenant, StoreDep
from zhuge.api.schemas import KindOut, StatusOut, WorkerOut
from zhuge.errors import AuthError
from zhuge.jobs.kinds import all_kinds
from zhuge.jobs.states import ATTEMPT_STATES, JobState
from zhuge.jobs.store import reading

router = APIRouter()
_metrics_bearer = HTTPBearer(auto_error=False, description="ZHUGE_METRICS_TOKEN, when set.")


@router.get("/healthz", tags=["system"])
def healthz(store: StoreDep) -> dict[str, str]:
    """Liveness: the process answers and reaches its database (503 when it cannot, not a
    500). Whether the deployment can make progress is ``/readyz``."""
    with reading(store.engine) as conn:
        conn.execute(sa.select(1))
        conn.rollback()
    return {"status": "ok"}


@router.get("/metrics", tags=["system"], response_class=Response, name="system.metrics")
def metrics(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_metrics_bearer)],
) -> Response:
    """Prometheus metrics; with ZHUGE_METRICS_TOKEN set, only for that bearer token."""
    expected = request.app.state.settings.metrics_token
    if expected and not (
        credentials is not None
        and hmac.compare_digest(credentials.credentials.encode(), expected.encode())
    ):
        raise AuthError("/metrics needs 'Authorization: Bearer <ZHUGE_METRICS_TOKEN>'")
    return Response(generate_latest(request.app.state.metrics), media_type=CONTENT_TYPE_LATEST)


@router.get("/v1/status", tags=["system"])
def status(store: StoreDep, principal: CurrentPrincipal) -> StatusOut:
    """Queue depth by state (the caller's tenant's; every tenant's for an admin)."""
    states = {s.value: 0 for s in JobState if s not in ATTEMPT_STATES}
    by_kind: dict[str, dict[str, int]] = {}
    for (kind, state), n in store.counts(tenant=principal.scope).items():
        states[state] = states.get(state, 0) + n
        by_kind.setdefault(kind, {})[state] = n
    return StatusOut(
        states=states,
        queue_depth=states.get(JobState.QUEUED.value, 0),
        by_kind=by_kind,
        workers=[WorkerOut.of(w) for w in store.workers()],
    )


@router.get("/v1/kinds", tags=["system"])
def kinds(_: CurrentTenant) -> list[KindOut]:
    return [
        KindOut(
            name=k.name,
            description=k.description,
            resources=k.resources,
            params_schema=k.params.model_json_schema(),
        )
        for k in all_kinds()
    ]
