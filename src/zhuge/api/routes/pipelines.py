"""/v1/pipelines: submit a graph of jobs at once, list, inspect, cancel (tenant-scoped like
jobs; an admin sees every tenant's)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request, status
from pydantic import BaseModel, ConfigDict, Field

from zhuge.api import audit
from zhuge.api.auth import CurrentPrincipal, StoreDep
from zhuge.api.limits import check_params_limits
from zhuge.api.schemas import FromStore, iso
from zhuge.errors import InvalidRequest
from zhuge.jobs.pipelines import (
    PipelineSpec,
    PipelineView,
    cancel_pipeline,
    check_pipeline,
    get_pipeline,
    list_pipelines,
    submit_pipeline,
)

router = APIRouter(prefix="/v1/pipelines", tags=["pipelines"])

PipelineId = Annotated[int, Path(ge=1, le=2**63 - 1, description="Pipeline id.")]


class PipelineCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    document: dict[str, Any] | None = Field(
        None,
        description="The pipeline file, loaded: name, params (declared, with defaults) and "
        "steps ({STEP: {kind, params, after, priority, resources}}); see docs/pipelines.md.",
    )
    template: str | None = Field(
        None,
        max_length=64,
        description="Or the name of a pipeline template shipped with zhuge (fleet-nightly).",
    )
    params: dict[str, Any] = Field(
        default_factory=dict, description="Values of the file's declared parameters."
    )

    def pipeline_document(self) -> dict[str, Any]:
        """The document given, or the template's; InvalidRequest unless exactly one is."""
        if (self.document is None) == (self.template is None):
            raise InvalidRequest("give a pipeline document or a template's name (one of them)")
        if self.document is not None:
            return self.document
        import yaml

        from zhuge.jobs.templates import template_document

        return yaml.safe_load(template_document(self.template or ""))


class StepOut(FromStore):
    name: str
    job_id: int
    kind: str
    state: str
    after: list[str] = Field(description="The steps it waits for.")
    error: str | None = None


class PipelineOut(FromStore):
    id: int
    tenant: str
    name: str
    state: str = Field(
        description="From its jobs: waiting (none started), running, succeeded, failed (a "
        "step is dead), cancelled."
    )
    origin: str | None = Field(description="None: submitted by a user; schedule:NAME, ...")
    created_at: datetime | None
    params: dict[str, Any]
    steps: list[StepOut]

    @classmethod
    def of(cls, view: PipelineView) -> PipelineOut:
        return cls(
            id=view.id,
            tenant=view.tenant,
            name=view.name,
            state=view.state,
            origin=view.origin,
            created_at=iso(view.created_at),
            params=view.params,
            steps=[
                StepOut(
                    name=s.name,
                    job_id=s.job_id,
                    kind=s.kind,
                    state=s.state.value,
                    after=list(s.after),
                    error=s.error,
                )
                for s in view.steps
            ],
        )


class PipelineList(BaseModel):
    pipelines: list[PipelineOut]
    next_before_id: int | None


@router.post("", name="pipeline.submit", status_code=status.HTTP_201_CREATED)
def create_pipeline(
    body: PipelineCreate, request: Request, store: StoreDep, principal: CurrentPrincipal
) -> PipelineOut:
    """Submit every step of a pipeline in one transaction: all its jobs, or none (a cycle,
    an unknown step, kind, parameter or reference is refused naming the step and field)."""
    settings = request.app.state.settings
    if body.document is not None:
        check_params_limits(body.document, settings, loc=("body", "document"))
    check_params_limits(body.params, settings)
    spec = PipelineSpec.parse(body.pipeline_document(), params=body.params)
    check_pipeline(spec, principal=principal, settings=settings, store=store)
    pipeline_id = submit_pipeline(store, tenant=principal.tenant, spec=spec)
    audit.note(request, target=f"pipeline_id={pipeline_id}", name=spec.name)
    request.app.state.notify()
    return PipelineOut.of(get_pipeline(store, pipeline_id))


@router.get("", name="pipeline.list")
def list_(
    store: StoreDep,
    principal: CurrentPrincipal,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    before_id: Annotated[int | None, Query(ge=1, le=2**63 - 1)] = None,
) -> PipelineList:
    """Newest first; page with ``before_id``."""
    found = list_pipelines(store, tenant=principal.scope, limit=limit, before_id=before_id)
    return PipelineList(
        pipelines=[PipelineOut.of(p) for p in found],
        next_before_id=found[-1].id if len(found) == limit else None,
    )


@router.get("/{pipeline_id}", name="pipeline.get")
def get(pipeline_id: PipelineId, store: StoreDep, principal: CurrentPrincipal) -> PipelineOut:
    return PipelineOut.of(get_pipeline(store, pipeline_id, tenant=principal.scope))


@router.post("/{pipeline_id}/cancel", name="pipeline.cancel")
def cancel(
    pipeline_id: PipelineId, request: Request, store: StoreDep, principal: CurrentPrincipal
) -> PipelineOut:
    """Cancel every step not finished yet (blocked, queued or running)."""
    view = cancel_pipeline(store, pipeline_id, tenant=principal.scope)
    request.app.state.notify()
    return PipelineOut.of(view)
