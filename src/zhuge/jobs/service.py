"""Submitting a job: validate the kind and its parameters, then write one row."""

from __future__ import annotations

from typing import Any

from zhuge.jobs.kinds import get_kind
from zhuge.jobs.model import Job
from zhuge.jobs.store import JobStore


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
    )
