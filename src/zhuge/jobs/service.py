"""Submitting jobs: validate the kind and its parameters, then write the rows."""

from __future__ import annotations

from typing import Any

from zhuge.errors import InvalidParams, UnknownKind
from zhuge.jobs.kinds import get_kind
from zhuge.jobs.model import Job
from zhuge.jobs.store import DEFAULT_MAX_LOST, JobRequest, JobStore


def submit_job(
    store: JobStore,
    *,
    tenant: str,
    kind: str,
    params: dict[str, Any] | None = None,
    priority: int = 0,
    resources: dict[str, float] | None = None,
    max_attempts: int = 3,
    idempotency_key: str | None = None,
    max_lost: int = DEFAULT_MAX_LOST,
) -> tuple[Job, bool]:
    """Validate and enqueue; ``(job, created)``. Raises UnknownKind / InvalidParams first,
    so bad input changes nothing."""
    spec = get_kind(kind)
    return store.submit(
        tenant=tenant,
        kind=kind,
        params=spec.normalise(params),
        priority=priority,
        resources=resources or spec.resources,
        max_attempts=max_attempts,
        idempotency_key=idempotency_key,
        max_lost=max_lost,
    )


def submit_jobs(
    store: JobStore, *, tenant: str, requests: list[JobRequest]
) -> list[tuple[Job, bool]]:
    """Validate every request, then enqueue them all in one transaction (all or nothing).
    A bad request is named by its position: ``jobs[3]: unknown job kind ...``."""
    valid = []
    for i, request in enumerate(requests):
        try:
            spec = get_kind(request.kind)
            params = spec.normalise(request.params)
        except (UnknownKind, InvalidParams) as exc:
            raise type(exc)(f"jobs[{i}]: {exc.message}", details=exc.details) from exc
        valid.append(
            JobRequest(
                kind=request.kind,
                params=params,
                priority=request.priority,
                resources=request.resources or spec.resources,
                max_attempts=request.max_attempts,
                idempotency_key=request.idempotency_key,
                max_lost=request.max_lost,
            )
        )
    return store.submit_many(tenant=tenant, requests=valid)
