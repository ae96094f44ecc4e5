"""/v1/jobs: submit, list, inspect, why it waits, cancel, retry, logs."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Path, Query, Request, Response, status

from zhuge.api import audit
from zhuge.api.auth import CurrentPrincipal, StoreDep
from zhuge.api.limits import check_params_limits
from zhuge.api.schemas import (
    EventOut,
    JobBatchCreate,
    JobBatchOut,
    JobCreate,
    JobList,
    JobOut,
    LogOut,
    LogsOut,
    WhyOut,
)
from zhuge.errors import InvalidRequest
from zhuge.jobs.service import submit_job, submit_jobs
from zhuge.jobs.states import JobState
from zhuge.jobs.store import JobRequest

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])

JobId = Annotated[int, Path(ge=1, le=2**63 - 1, description="Job id.")]


def _out(request: Request, job) -> JobOut:  # type: ignore[no-untyped-def]
    return JobOut.of(job, request.app.state.settings.artifacts_root)


@router.post(
    "",
    name="job.submit",
    status_code=status.HTTP_201_CREATED,
    responses={200: {"description": "Replay of an Idempotency-Key: the existing job."}},
)
def create_job(
    body: JobCreate,
    request: Request,
    response: Response,
    store: StoreDep,
    principal: CurrentPrincipal,
    idempotency_key: Annotated[str | None, Header(max_length=200)] = None,
) -> JobOut:
    if idempotency_key is not None and not idempotency_key.strip():
        raise InvalidRequest("Idempotency-Key must not be blank")
    check_params_limits(body.params, request.app.state.settings)
    job, created = submit_job(
        store,
        principal=principal,
        settings=request.app.state.settings,
        kind=body.kind,
        params=body.params,
        priority=body.priority,
        resources=body.resources,
        max_attempts=body.max_attempts,
        max_lost=body.max_lost,
        idempotency_key=idempotency_key,
        gang=body.gang,
        timeout_s=body.timeout_s,
        placement=body.placement,
        after=body.after,
    )
    audit.note(request, target=f"job_id={job.id}", kind=job.kind, created=created)
    if created:
        request.app.state.notify([job.resources])
    else:
        response.status_code = status.HTTP_200_OK
    return _out(request, job)


@router.post(
    "/batch",
    name="job.submit_batch",
    status_code=status.HTTP_201_CREATED,
    responses={200: {"description": "Every job was an idempotency replay: nothing new."}},
)
def create_jobs(
    body: JobBatchCreate,
    request: Request,
    response: Response,
    store: StoreDep,
    principal: CurrentPrincipal,
) -> JobBatchOut:
    """Submit up to 1,000 jobs in one transaction: all are queued, or none (a bad one is
    named by its position). The way to enqueue many short jobs quickly."""
    for i, item in enumerate(body.jobs):
        check_params_limits(
            item.params, request.app.state.settings, loc=("body", "jobs", i, "params")
        )
    results = submit_jobs(
        store,
        principal=principal,
        settings=request.app.state.settings,
        requests=[JobRequest(**item.model_dump()) for item in body.jobs],
    )
    created = [c for _, c in results]
    audit.note(request, target=f"jobs={len(results)}", job_ids=[j.id for j, _ in results])
    if any(created):
        request.app.state.notify([j.resources for j, c in results if c])
    else:
        response.status_code = status.HTTP_200_OK
    return JobBatchOut(jobs=[_out(request, j) for j, _ in results], created=created)


@router.get("", name="job.list")
def list_jobs(
    request: Request,
    store: StoreDep,
    principal: CurrentPrincipal,
    state: JobState | None = None,
    kind: Annotated[str | None, Query(max_length=64)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    before_id: Annotated[int | None, Query(ge=1, le=2**63 - 1)] = None,
) -> JobList:
    jobs = store.list(
        tenant=principal.scope, state=state, kind=kind, limit=limit, before_id=before_id
    )
    return JobList(
        jobs=[_out(request, j) for j in jobs],
        next_before_id=jobs[-1].id if len(jobs) == limit else None,
    )


@router.get("/{job_id}", name="job.get")
def get_job(
    job_id: JobId, request: Request, store: StoreDep, principal: CurrentPrincipal
) -> JobOut:
    job = store.get(job_id, tenant=principal.scope)
    after = store.upstream([job.id])[job.id]
    return JobOut.of(job, request.app.state.settings.artifacts_root, after=after)


@router.get("/{job_id}/why", name="job.why")
def why_job(job_id: JobId, store: StoreDep, principal: CurrentPrincipal) -> WhyOut:
    """Where the job stands: a queued job's place in its tenant's queue and in the
    cluster's (by admission's order: effective priority, then age) and why it waits; a
    running job's workers; a finished job's end."""
    return WhyOut.of(store.queues.why(job_id, tenant=principal.scope))


@router.post("/{job_id}/cancel", name="job.cancel")
def cancel_job(
    job_id: JobId, request: Request, store: StoreDep, principal: CurrentPrincipal
) -> JobOut:
    job = store.cancel(job_id, tenant=principal.scope)
    request.app.state.notify()
    return _out(request, job)


@router.post("/{job_id}/retry", name="job.retry")
def retry_job(
    job_id: JobId, request: Request, store: StoreDep, principal: CurrentPrincipal
) -> JobOut:
    job = store.requeue_dead(job_id, tenant=principal.scope)
    request.app.state.notify()
    return _out(request, job)


@router.get("/{job_id}/events", name="job.events")
def job_events(job_id: JobId, store: StoreDep, principal: CurrentPrincipal) -> list[EventOut]:
    store.get(job_id, tenant=principal.scope)
    return [EventOut.of(e) for e in store.events(job_id)]


@router.get("/{job_id}/logs", name="job.logs")
def job_logs(
    job_id: JobId,
    store: StoreDep,
    principal: CurrentPrincipal,
    after: Annotated[int, Query(ge=0, le=2**63 - 1)] = 0,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
) -> LogsOut:
    job = store.get(job_id, tenant=principal.scope)
    lines = store.logs(job_id, after_seq=after, limit=limit)
    return LogsOut(
        job_id=job_id,
        state=job.state.value,
        lines=[LogOut.of(line) for line in lines],
        next_after=lines[-1].seq if lines else after,
    )
