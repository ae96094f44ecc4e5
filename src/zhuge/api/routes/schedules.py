"""/v1/schedules: the tenant's cron schedules of pipelines (add, list, show, pause, resume,
remove, run now).

Every route acts on the caller's own tenant: another tenant's schedule is a 404 exactly
like a missing one. A schedule runs with the token that created (or last resumed) it; its
pipeline document is checked against that token's permissions when it is added and again
at every slot. Times are ISO 8601 (UTC); ``show`` gives the next slots in the schedule's
time zone too.
"""

from __future__ import annotations

from typing import Annotated, Any

import yaml
from fastapi import APIRouter, Depends, Path, Request
from pydantic import BaseModel, ConfigDict, Field

from zhuge.api.audit import note
from zhuge.api.auth import CurrentPrincipal, StoreDep
from zhuge.api.schemas import iso
from zhuge.errors import InvalidRequest
from zhuge.jobs.schedules import Schedules
from zhuge.jobs.templates import template_document

router = APIRouter(prefix="/v1/schedules", tags=["schedules"])

TIME_KEYS = frozenset({"created_at", "last_slot", "slot"})

Name = Annotated[str, Path(max_length=100, description="The schedule's name.")]


def get_schedules(request: Request, store: StoreDep) -> Schedules:
    return Schedules(store, request.app.state.settings)


SchedulesDep = Annotated[Schedules, Depends(get_schedules)]


class ScheduleIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(max_length=100, description="Unique in the tenant.")
    cron: str = Field(max_length=200, description="Five fields, e.g. '0 2 * * *'.")
    timezone: str = Field("UTC", max_length=64, description="IANA name, e.g. Asia/Shanghai.")
    pipeline: str | dict[str, Any] | None = Field(
        None, description="The pipeline file (YAML text or the object); or give template."
    )
    template: str | None = Field(
        None, max_length=64, description="A shipped template's name (fleet-nightly)."
    )
    params: dict[str, Any] = Field(default_factory=dict, description="The pipeline's params.")
    overlap: str = Field("skip", description="skip (record the slot as skipped) or queue.")
    catch_up: str = Field("latest", description="After downtime: latest (one run) or none.")


class PauseIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str = Field("", max_length=500)


def _times(value: Any) -> Any:
    if isinstance(value, dict):
        return {
            k: iso(v) if k in TIME_KEYS and isinstance(v, int | float) else _times(v)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [_times(v) for v in value]
    return value


def _document(body: ScheduleIn) -> str:
    if (body.pipeline is None) == (body.template is None):
        raise InvalidRequest("give the pipeline file (pipeline) or a template's name, not both")
    if body.template is not None:
        return template_document(body.template)
    if isinstance(body.pipeline, dict):
        return yaml.safe_dump(body.pipeline, sort_keys=False)
    return str(body.pipeline)


@router.post("", status_code=201, name="schedule.add")
def add_schedule(
    body: ScheduleIn, request: Request, schedules: SchedulesDep, principal: CurrentPrincipal
) -> dict[str, Any]:
    """Create a schedule; its document must render and check for its next slot."""
    note(request, target=body.name)
    added = schedules.add(
        principal,
        name=body.name,
        cron=body.cron,
        document=_document(body),
        timezone=body.timezone,
        params=body.params,
        template=body.template,
        overlap=body.overlap,
        catch_up=body.catch_up,
    )
    return _times(added.as_dict())


@router.get("", name="schedule.list")
def list_schedules(schedules: SchedulesDep, principal: CurrentPrincipal) -> list[dict[str, Any]]:
    """The tenant's schedules, with each one's next slot."""
    return _times(schedules.summaries(principal.tenant))


@router.get("/{name}", name="schedule.show")
def show_schedule(
    name: Name, schedules: SchedulesDep, principal: CurrentPrincipal
) -> dict[str, Any]:
    """The schedule, its next slots (UTC and local), its latest runs with their pipelines
    and states, and skipped or missed slots with the reason."""
    return _times(schedules.show(principal.tenant, name))


@router.post("/{name}/pause", name="schedule.pause")
def pause_schedule(
    name: Name, schedules: SchedulesDep, principal: CurrentPrincipal, body: PauseIn | None = None
) -> dict[str, Any]:
    return _times(schedules.pause(principal.tenant, name, body.reason if body else "").as_dict())


@router.post("/{name}/resume", name="schedule.resume")
def resume_schedule(
    name: Name, schedules: SchedulesDep, principal: CurrentPrincipal
) -> dict[str, Any]:
    """Run again from the next slot, with the caller's token from now on."""
    return _times(schedules.resume(principal, name).as_dict())


@router.delete("/{name}", name="schedule.remove")
def remove_schedule(
    name: Name, schedules: SchedulesDep, principal: CurrentPrincipal
) -> dict[str, Any]:
    """Remove the schedule and its run records; the pipelines it ran stay."""
    removed = schedules.remove(principal.tenant, name)
    return {"name": removed.name, "removed": True}


@router.post("/{name}/run-now", name="schedule.run_now")
def run_schedule_now(
    name: Name, request: Request, schedules: SchedulesDep, principal: CurrentPrincipal
) -> dict[str, Any]:
    """Run the schedule's pipeline once now (slot: now), as the caller."""
    run = schedules.run_now(principal, name)
    note(request, target=name, pipeline_id=run.pipeline_id)
    return _times(run.as_dict())
