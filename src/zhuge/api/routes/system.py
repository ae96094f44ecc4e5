"""/v1/status, /v1/kinds, /healthz, /metrics."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from zhuge.api.auth import CurrentPrincipal, CurrentTenant, StoreDep
from zhuge.api.schemas import KindOut, StatusOut, WorkerOut
from zhuge.jobs.kinds import all_kinds
from zhuge.jobs.states import ATTEMPT_STATES, JobState

router = APIRouter()


@router.get("/healthz", tags=["system"])
def healthz(store: StoreDep) -> dict[str, str]:
    store.counts(tenant="__healthz__")  # touches the database
    return {"status": "ok"}


@router.get("/metrics", tags=["system"], response_class=Response)
def metrics(request: Request) -> Response:
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
