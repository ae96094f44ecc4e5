"""Submitting jobs: validate the kind and its parameters, check every reference to data
against what the caller may read, then write the rows."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from zhuge.errors import InvalidRequest
from zhuge.jobs.inputs import check_params
from zhuge.jobs.kinds import Kind, get_kind
from zhuge.jobs.model import Job, Principal
from zhuge.jobs.resources import describe, unmet
from zhuge.jobs.store import DEFAULT_MAX_LOST, JobRequest, JobStore

if TYPE_CHECKING:
    from zhuge.config import Settings


def _checked(
    spec: Kind, params: dict[str, Any] | None, principal: Principal, settings: Settings,
    store: JobStore,
) -> dict[str, Any]:  # fmt: skip
    """The parameters as stored: validated, defaults filled in, and every reference to data
    one ``principal`` may read (``zhuge.jobs.inputs``)."""
    parsed = spec.parse(params)
    check_params(spec, parsed, principal, settings, store)
    return parsed.model_dump(mode="json")


def check_resources(
    store: JobStore, resources: dict[str, float], offered: dict[str, float] | None = None
) -> None:
    """Refuse a job asking for what no recorded worker offers (``zhuge.jobs.resources``);
    with no worker recorded yet, refuse nothing."""
    offered = store.offered() if offered is None else offered
    if not offered:
        return
    problems = unmet(resources, offered)
    if problems:
        raise InvalidRequest(
            f"resources {describe(resources)} cannot run here: {'; '.join(problems)}; "
            f"the cluster offers {describe(offered)}",
            details={"asked": resources, "offered": offered},
        )


def submit_job(
    store: JobStore,
    *,
    principal: Principal,
    settings: Settings,
    kind: str,
    params: dict[str, Any] | None = None,
    priority: int = 0,
    resources: dict[str, float] | None = None,
    max_attempts: int = 3,
    idempotency_key: str | None = None,
    max_lost: int = DEFAULT_MAX_LOST,
    gang: int = 1,
    timeout_s: float | None = None,
    placement: str | None = None,
    after: Sequence[int] = (),
) -> tuple[Job, bool]:
    """Validate and enqueue in ``principal``'s tenant; ``(job, created)``. Raises UnknownKind
    / InvalidParams first, so bad input changes nothing. ``after``: jobs of the tenant that
    must succeed first (``zhuge.jobs.dependencies``)."""
    spec = get_kind(kind)
    params = _checked(spec, params, principal, settings, store)
    resources = resources or spec.resources
    check_resources(store, resources)
    return store.submit(
        tenant=principal.tenant,
        kind=kind,
        params=params,
        priority=priority,
        resources=resources,
        max_attempts=max_attempts,
        idempotency_key=idempotency_key,
        max_lost=max_lost,
        gang=gang,
        timeout_s=timeout_s,
        placement=placement,
        after=after,
    )


def submit_jobs(
    store: JobStore, *, principal: Principal, settings: Settings, requests: list[JobRequest]
) -> list[tuple[Job, bool]]:
    """Validate every request, then enqueue them all in one transaction (all or nothing).
    A bad request is named by its position: ``jobs[3]: unknown job kind ...``."""
    valid = []
    offered = store.offered()
    for i, request in enumerate(requests):
        try:
            spec = get_kind(request.kind)
            params = _checked(spec, request.params, principal, settings, store)
            check_resources(store, request.resources or spec.resources, offered)
        except InvalidRequest as exc:
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
                gang=request.gang,
                timeout_s=request.timeout_s,
                placement=request.placement,
                after=tuple(request.after),
            )
        )
    return store.submit_many(tenant=principal.tenant, requests=valid)
