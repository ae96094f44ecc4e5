"""Pipelines: a graph of jobs submitted at once, from a file a token holder writes.

A pipeline file (YAML, loaded to a dict)::

    name: nightly-forecast
    params:                      # declared parameters and their defaults (null: required)
      data: dataset://fleet
      horizon: 24
    steps:
      forecast:
        kind: forecast
        params: {input: "{{ data }}", horizon: "{{ horizon }}", start: "{{ slot - 1d }}"}
      plan:
        kind: plan-migration
        params: {forecast: step://forecast/forecast.parquet}   # implies after: [forecast]
        after: [forecast]
        priority: 5

``PipelineSpec.parse`` checks it all before anything is stored: the shape, each step's kind
and parameters (with the kind's pydantic model), the edges (``after``, and those a
``step://STEP/FILE`` reference implies), refusing a cycle, an unknown step, an unknown kind,
an unknown parameter or template name, with an ``InvalidPipeline`` naming the step and field.
``insert_pipeline`` writes the pipeline row and its jobs in the caller's transaction, each
step ``after`` its upstream steps' jobs (``zhuge.jobs.dependencies``), each ``step://`` turned
into ``job://<id>/FILE``: the upstream job's committed artifact, read on the worker.

**Templates** (``render``): a string value may hold ``{{ name }}`` (a parameter),
``{{ slot }}`` and ``{{ slot - 1d }}`` / ``{{ slot + 6h }}`` (units s, m, h, d, w); ``slot`` is
the time-zone-aware time of the run (a schedule's slot; a run by hand: now, UTC), rendered in
ISO 8601. A value that is one template alone keeps the parameter's type (``"{{ horizon }}"``
is the number 24). Nothing else is evaluated: no Jinja, no expressions, no attribute access.
"""

from __future__ import annotations

import contextlib
import dataclasses
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Annotated, Any

import sqlalchemy as sa
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError
from sqlalchemy.engine import Connection

from zhuge.errors import (
    InvalidParams,
    InvalidPipeline,
    InvalidRequest,
    PipelineNotFound,
    UnknownKind,
)
from zhuge.jobs import schema
from zhuge.jobs.kinds import get_kind
from zhuge.jobs.states import JobState

if TYPE_CHECKING:
    from zhuge.config import Settings
    from zhuge.jobs.model import Job, Principal
    from zhuge.jobs.store import JobStore

__all__ = [
    "ACTIVE",
    "PipelineNotFound",
    "PipelineSpec",
    "PipelineView",
    "StepSpec",
    "TemplateError",
    "cancel_pipeline",
    "check_pipeline",
    "get_pipeline",
    "insert_pipeline",
    "list_pipelines",
    "render",
    "submit_pipeline",
]

MAX_STEPS = 100
STEP_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,63}$")
STEP_SCHEME = "step://"
JOB_SCHEME = "job://"
_STEP_REF = re.compile(r"^step://([^/]+)/(.+)$")

P = schema.pipelines
J = schema.jobs


def _refused(loc: tuple[str | int, ...], message: str, kind: str = "pipeline") -> InvalidPipeline:
    where = ".".join(str(p) for p in loc)
    text = f"{where}: {message}" if where else message
    return InvalidPipeline(
        f"invalid pipeline: {text}", details=[{"loc": list(loc), "msg": message, "type": kind}]
    )


# -- templates ------------------------------------------------------------------------------

_TEMPLATE = re.compile(r"\{\{(.*?)\}\}", re.DOTALL)
_EXPRESSION = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*(?:([+-])\s*(\d{1,6})\s*([smhdw]))?\s*$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}  # seconds


class TemplateError(InvalidRequest):
    """A template that cannot be rendered (the caller says where it is)."""


def _value(expression: str, variables: Mapping[str, Any]) -> Any:
    match = _EXPRESSION.match(expression)
    if match is None:
        raise TemplateError(
            f"{{{{{expression}}}}} is not a template: write {{{{ name }}}}, {{{{ slot }}}} or "
            "{{ slot - 1d }} (units s, m, h, d, w)"
        )
    name, sign, amount, unit = match.groups()
    if name not in variables:
        known = ", ".join(sorted(variables)) or "none"
        raise TemplateError(f"unknown name {name!r} in {{{{{expression}}}}} (known: {known})")
    value = variables[name]
    if sign is None:
        return value
    if not isinstance(value, datetime):
        raise TemplateError(f"{{{{{expression}}}}}: only a time ({name!r} is not) takes + or -")
    delta = timedelta(seconds=int(amount) * _UNITS[unit])
    try:
        return value + delta if sign == "+" else value - delta
    except OverflowError:
        raise TemplateError(f"{{{{{expression}}}}} lies outside the years 1-9999") from None


def _text(value: Any) -> str:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else str(value)


def render(text: str, variables: Mapping[str, Any]) -> str:
    """``text`` with each ``{{ name }}`` / ``{{ slot ± N unit }}`` replaced (module
    docstring); ``TemplateError`` naming an unknown name or a malformed template."""
    if "{%" in text or "{#" in text:
        raise TemplateError("'{%' and '{#' are Jinja, which pipeline files do not run")
    left = _TEMPLATE.sub("", text)
    if "{{" in left or "}}" in left:
        raise TemplateError(f"{text[:80]!r} has an unclosed '{{{{' or a stray '}}}}'")
    return _TEMPLATE.sub(lambda m: _text(_value(m.group(1), variables)), text)


def _render_value(value: Any, variables: Mapping[str, Any]) -> Any:
    """Every string in ``value`` rendered; a string that is one template alone becomes the
    value itself (a number stays a number; a time becomes its ISO text)."""
    if isinstance(value, str):
        whole = _TEMPLATE.fullmatch(value.strip())
        if whole is not None and "{{" not in whole.group(1):
            found = _value(whole.group(1), variables)
            return found.isoformat() if isinstance(found, datetime) else found
        return render(value, variables)
    if isinstance(value, Mapping):
        return {k: _render_value(v, variables) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_render_value(v, variables) for v in value]
    return value


# -- the file's shape -------------------------------------------------------------------------


ResourceName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z][A-Za-z0-9_]{0,31}$")]


class _StepDocument(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: str = Field(min_length=1, max_length=64)
    params: dict[str, Any] = Field(default_factory=dict)
    after: list[str] = Field(default_factory=list, max_length=MAX_STEPS)
    priority: int = Field(0, ge=-1000, le=1000)
    resources: dict[ResourceName, Annotated[float, Field(gt=0, le=1024)]] | None = None
    max_attempts: int = Field(3, ge=1, le=100)
    max_lost: int = Field(10, ge=1, le=1000)
    timeout_s: float | None = Field(None, gt=0, le=30 * 86400.0)
    description: str = Field("", max_length=500)


class _PipelineDocument(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9][A-Za-z0-9._ -]*$")
    description: str = Field("", max_length=2000)
    params: dict[str, Any] = Field(default_factory=dict)
    steps: dict[str, _StepDocument] = Field(min_length=1, max_length=MAX_STEPS)


@dataclass(frozen=True)
class StepSpec:
    """One step, its templates rendered and its parameters valid for its kind; ``params``
    still name other steps as ``step://STEP/FILE``; ``after`` holds the edges ``step://``
    references imply too."""

    name: str
    kind: str
    params: dict[str, Any]
    after: tuple[str, ...] = ()
    priority: int = 0
    resources: dict[str, float] | None = None
    max_attempts: int = 3
    max_lost: int = 10
    timeout_s: float | None = None
    description: str = ""


@dataclass(frozen=True)
class PipelineSpec:
    """A pipeline checked and ready to insert: its steps in an order where each comes after
    the steps it waits for."""

    name: str
    params: dict[str, Any]  # the values it runs with (defaults, then those given)
    steps: tuple[StepSpec, ...]
    declared: dict[str, Any] = field(default_factory=dict)  # the file's parameters and defaults
    description: str = ""

    @classmethod
    def parse(
        cls,
        document: Mapping[str, Any],
        *,
        params: Mapping[str, Any] | None = None,
        slot: datetime | None = None,
    ) -> PipelineSpec:
        """Check a pipeline file (loaded to a dict) and render it with ``params`` (over the
        file's defaults) and ``slot`` (a schedule's slot, time-zone aware; default: now,
        UTC). ``InvalidPipeline`` naming the step and field for anything wrong."""
        if not isinstance(document, Mapping):
            raise _refused((), "a pipeline file is a mapping with name, params and steps")
        try:
            parsed = _PipelineDocument.model_validate(dict(document))
        except ValidationError as exc:
            first = exc.errors()[0]
            raise _refused(tuple(first["loc"]), first["msg"], first["type"]) from None
        values = _parameters(parsed.params, params or {})
        if slot is None:
            slot = datetime.now(UTC).replace(microsecond=0)
        elif slot.tzinfo is None:
            raise _refused(("slot",), "a slot's time must carry its time zone")
        variables = {**values, "slot": slot}
        steps: dict[str, StepSpec] = {}
        for name, step in parsed.steps.items():
            loc: tuple[str | int, ...] = ("steps", name)
            if not STEP_NAME.match(name):
                raise _refused(loc, "a step's name is a letter, then letters, digits, _ or -")
            steps[name] = _step(name, step, variables, parsed.steps)
        ordered = _ordered(steps)
        return cls(
            name=parsed.name,
            params=values,
            steps=tuple(ordered),
            declared=dict(parsed.params),
            description=parsed.description,
        )

    def step(self, name: str) -> StepSpec:
        for step in self.steps:
            if step.name == name:
                return step
        raise KeyError(name)

    def to_document(self) -> dict[str, Any]:
        """The pipeline as rendered, JSON-ready (what the pipelines table keeps)."""
        return {
            "name": self.name,
            "description": self.description,
            "params": self.declared,
            "steps": {
                s.name: {
                    k: (list(v) if isinstance(v, tuple) else v)
                    for k, v in dataclasses.asdict(s).items()
                    if k != "name"
                }
                for s in self.steps
            },
        }


def _parameters(declared: Mapping[str, Any], given: Mapping[str, Any]) -> dict[str, Any]:
    for name in [*declared, *given]:
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,63}", str(name)) or name == "slot":
            raise _refused(("params", str(name)), "a parameter's name is a letter or _, then "
                           "letters, digits or _ ('slot' is the run's time)")  # fmt: skip
    unknown = sorted(set(given) - set(declared))
    if unknown:
        known = ", ".join(sorted(declared)) or "none"
        raise _refused(
            ("params", unknown[0]), f"not a parameter of this pipeline (it has: {known})"
        )
    values = {**declared, **given}
    missing = sorted(k for k, v in values.items() if v is None)
    if missing:
        raise _refused(("params", missing[0]), "required: give it a value (--param NAME=VALUE)")
    return values


def _step(
    name: str, step: _StepDocument, variables: Mapping[str, Any], all_steps: Mapping[str, Any]
) -> StepSpec:
    loc: tuple[str | int, ...] = ("steps", name)
    try:
        kind = get_kind(step.kind)
    except UnknownKind as exc:
        raise _refused((*loc, "kind"), exc.message, "unknown_kind") from None
    try:
        params = _render_value(step.params, variables)
    except TemplateError as exc:
        raise _refused((*loc, "params"), exc.message, "template") from None
    after = list(dict.fromkeys(step.after))
    for i, upstream in enumerate(after):
        if upstream not in all_steps:
            raise _refused((*loc, "after", i), f"no step named {upstream!r}", "unknown_step")
        if upstream == name:
            raise _refused((*loc, "after", i), "a step cannot wait for itself", "cycle")
    for ref_loc, upstream, _ in _step_refs(params):
        where = (*loc, "params", *ref_loc)
        if upstream is None:
            raise _refused(where, "write step://STEP/FILE (a file of that step's outputs)")
        if upstream not in all_steps:
            raise _refused(where, f"no step named {upstream!r}", "unknown_step")
        if upstream == name:
            raise _refused(where, "a step cannot read its own outputs", "cycle")
        if upstream not in after:
            after.append(upstream)
    try:
        kind.parse(_with_job_refs(params, {s: 1 for s in all_steps}))
    except InvalidParams as exc:
        first = (exc.details or [{}])[0]
        raise _refused(
            (*loc, "params", *first.get("loc", [])), first.get("msg", exc.message), "params"
        ) from None
    return StepSpec(
        name=name,
        kind=step.kind,
        params=params,
        after=tuple(after),
        priority=step.priority,
        resources=step.resources,
        max_attempts=step.max_attempts,
        max_lost=step.max_lost,
        timeout_s=step.timeout_s,
        description=step.description,
    )


def _step_refs(value: Any, loc: tuple[str | int, ...] = ()) -> list[tuple[Any, str | None, str]]:
    """``(location, step or None if malformed, file)`` of every ``step://`` string."""
    found: list[tuple[Any, str | None, str]] = []
    if isinstance(value, str) and value.startswith(STEP_SCHEME):
        match = _STEP_REF.match(value)
        found.append((loc, match.group(1) if match else None, match.group(2) if match else ""))
    elif isinstance(value, Mapping):
        for k, v in value.items():
            found.extend(_step_refs(v, (*loc, k)))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            found.extend(_step_refs(v, (*loc, i)))
    return found


def _with_job_refs(value: Any, job_ids: Mapping[str, int]) -> Any:
    """``value`` with each ``step://STEP/FILE`` replaced by ``job://<id of STEP>/FILE``."""
    if isinstance(value, str):
        match = _STEP_REF.match(value)
        return f"{JOB_SCHEME}{job_ids[match.group(1)]}/{match.group(2)}" if match else value
    if isinstance(value, Mapping):
        return {k: _with_job_refs(v, job_ids) for k, v in value.items()}
    if isinstance(value, list):
        return [_with_job_refs(v, job_ids) for v in value]
    return value


def _ordered(steps: Mapping[str, StepSpec]) -> list[StepSpec]:
    """The steps in an order where each follows those it waits for (the file's order where
    the edges allow); ``InvalidPipeline`` naming a cycle."""
    placed: list[StepSpec] = []
    done: set[str] = set()
    pending = list(steps)
    while pending:
        ready = [n for n in pending if all(a in done for a in steps[n].after)]
        if not ready:
            raise _refused(
                ("steps",), f"the steps form a cycle: {' → '.join(_cycle(steps, pending))}", "cycle"
            )
        for name in ready:
            placed.append(steps[name])
            done.add(name)
        pending = [n for n in pending if n not in done]
    return placed


def _cycle(steps: Mapping[str, StepSpec], among: list[str]) -> list[str]:
    path = [among[0]]
    while True:
        nxt = next(a for a in steps[path[-1]].after if a in among)
        if nxt in path:
            return [*path[path.index(nxt) :], nxt][::-1]
        path.append(nxt)


# -- submitting -----------------------------------------------------------------------------


def check_pipeline(
    spec: PipelineSpec, *, principal: Principal, settings: Settings, store: JobStore
) -> None:
    """What ``zhuge.jobs.service`` checks of a job, for each step: every reference to data
    is one ``principal`` may read (``step://`` references are the pipeline's own), and its
    resources are offered by the cluster. ``InvalidPipeline`` naming the step and field."""
    from zhuge.jobs.inputs import check_params
    from zhuge.jobs.service import check_resources

    offered = store.offered()
    # (schedules engineer, #13 part 2) a model a model-train step of this pipeline registers
    # may not exist yet (the nightly template's first run): a later step's model_from
    # NAME@ALIAS is checked when that step starts
    registered = {str(s.params.get("register_as")) for s in spec.steps if s.kind == "model-train"}

    def ours(v: Any) -> bool:
        return isinstance(v, str) and (
            v.startswith(STEP_SCHEME) or ("@" in v and v.split("@", 1)[0] in registered)
        )

    for step in spec.steps:
        kind = get_kind(step.kind)
        loc = ("steps", step.name)
        try:
            parsed = kind.parse(step.params)
            check_params(kind, parsed, principal, settings, store, ignore=ours)
            check_resources(store, step.resources or kind.resources, offered)
        except InvalidRequest as exc:
            first = (exc.details or [{}])[0] if isinstance(exc.details, list) else {}
            raise _refused(
                (*loc, "params", *first.get("loc", [])) if first.get("loc") else loc,
                first.get("msg") or exc.message,
                first.get("type", "params"),
            ) from None


def insert_pipeline(
    conn: Connection,
    store: JobStore,
    *,
    tenant: str,
    spec: PipelineSpec,
    origin: str | None = None,
) -> int:
    """Insert the pipeline row and its jobs inside the caller's transaction (no commit):
    each step blocked until its upstream steps succeed (queued at once if it has none), each
    ``step://STEP/FILE`` replaced by ``job://<STEP's job id>/FILE``. Returns its id."""
    from zhuge.jobs.store import JobRequest

    now = store.clock()
    pipeline_id = conn.execute(
        P.insert()
        .values(
            tenant=tenant,
            name=spec.name,
            spec=spec.to_document(),
            params=_jsonable(spec.params),
            origin=origin,
            created_at=now,
        )
        .returning(P.c.id)
    ).scalar_one()
    job_ids: dict[str, int] = {}
    for step in spec.steps:
        kind = get_kind(step.kind)
        params = kind.normalise(_with_job_refs(step.params, job_ids))
        request = JobRequest(
            kind=step.kind,
            params=params,
            priority=step.priority,
            resources=step.resources or kind.resources,
            max_attempts=step.max_attempts,
            max_lost=step.max_lost,
            timeout_s=step.timeout_s,
            after=tuple(job_ids[a] for a in step.after),
        )
        job = store.insert_job(
            conn, tenant=tenant, request=request, pipeline_id=pipeline_id, step=step.name
        )
        job_ids[step.name] = job.id
    return pipeline_id


def submit_pipeline(
    store: JobStore, *, tenant: str, spec: PipelineSpec, origin: str | None = None
) -> int:
    """``insert_pipeline`` in a transaction of its own: all its jobs, or nothing."""
    from zhuge.jobs.store import transaction

    with transaction(store.engine) as conn:
        return insert_pipeline(conn, store, tenant=tenant, spec=spec, origin=origin)


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value


# -- reading and cancelling -----------------------------------------------------------------

ACTIVE = frozenset({JobState.BLOCKED, JobState.QUEUED, JobState.RUNNING})


@dataclass(frozen=True)
class StepView:
    name: str
    job_id: int
    kind: str
    state: JobState
    after: tuple[str, ...]
    error: str | None = None


@dataclass(frozen=True)
class PipelineView:
    """A pipeline as stored, with its steps' jobs as they are now."""

    id: int
    tenant: str
    name: str
    origin: str | None
    created_at: float
    params: dict[str, Any]
    steps: tuple[StepView, ...]

    @property
    def state(self) -> str:
        """Derived from its jobs: ``succeeded`` (all did), ``running`` (some job runs or
        finished, others wait), ``waiting`` (nothing started yet), ``failed`` (finished,
        one dead), ``cancelled`` (finished, one cancelled)."""
        states = {s.state for s in self.steps}
        if states <= {JobState.SUCCEEDED}:
            return "succeeded"
        if states & ACTIVE:
            return "waiting" if states <= {JobState.BLOCKED, JobState.QUEUED} else "running"
        return "failed" if JobState.DEAD in states else "cancelled"


def _views(store: JobStore, conn: Connection, rows: list[Any]) -> list[PipelineView]:
    ids = [r.id for r in rows]
    jobs: dict[int, list[Job]] = {i: [] for i in ids}
    if ids:
        for job_row in conn.execute(sa.select(J).where(J.c.pipeline_id.in_(ids)).order_by(J.c.id)):
            job = store._job(job_row)
            jobs[job.pipeline_id].append(job)  # type: ignore[index]
    upstream = store.dependencies.upstream(conn, [j.id for js in jobs.values() for j in js])
    out = []
    for r in rows:
        names = {j.id: j.step or str(j.id) for j in jobs[r.id]}
        steps = tuple(
            StepView(
                name=names[j.id],
                job_id=j.id,
                kind=j.kind,
                state=j.state,
                after=tuple(names.get(u, str(u)) for u in upstream.get(j.id, [])),
                error=j.error,
            )
            for j in jobs[r.id]
        )
        out.append(
            PipelineView(
                id=r.id,
                tenant=r.tenant,
                name=r.name,
                origin=r.origin,
                created_at=r.created_at,
                params=r.params,
                steps=steps,
            )
        )
    return out


def get_pipeline(store: JobStore, pipeline_id: int, *, tenant: str | None = None) -> PipelineView:
    """``tenant`` None: any tenant's (an admin)."""
    from zhuge.jobs.store import reading

    query = sa.select(P).where(P.c.id == pipeline_id)
    if tenant is not None:
        query = query.where(P.c.tenant == tenant)
    with reading(store.engine) as conn:
        row = conn.execute(query).first()
        if row is None:
            raise PipelineNotFound(f"pipeline {pipeline_id} does not exist")
        return _views(store, conn, [row])[0]


def list_pipelines(
    store: JobStore, *, tenant: str | None = None, limit: int = 100, before_id: int | None = None
) -> list[PipelineView]:
    """Newest first; page with ``before_id``."""
    from zhuge.jobs.store import reading

    query = sa.select(P).order_by(P.c.id.desc()).limit(max(1, min(limit, 1000)))
    if tenant is not None:
        query = query.where(P.c.tenant == tenant)
    if before_id is not None:
        query = query.where(P.c.id < before_id)
    with reading(store.engine) as conn:
        return _views(store, conn, list(conn.execute(query)))


def cancel_pipeline(
    store: JobStore, pipeline_id: int, *, tenant: str | None = None
) -> PipelineView:
    """Cancel every unfinished step (blocked, queued or running); finished ones stay."""
    from zhuge.errors import InvalidTransition

    view = get_pipeline(store, pipeline_id, tenant=tenant)
    for step in view.steps:
        if step.state in ACTIVE:
            with contextlib.suppress(InvalidTransition):  # it finished meanwhile
                store.cancel(step.job_id, tenant=tenant)
    return get_pipeline(store, pipeline_id, tenant=tenant)
