"""The job-kind registry: one place that maps a kind's name to its parameters and its code.

A kind is a pydantic parameter model plus a run function ``run(params, ctx) -> result``; the
result must be JSON-serialisable (big outputs go to ``ctx.artifacts``)::

    class SleepParams(BaseModel):
        seconds: float = Field(1.0, ge=0)

    @kind("sleep", params=SleepParams, description="Sleep, for testing the platform.")
    def run_sleep(params: SleepParams, ctx: JobContext) -> dict: ...

Modules that define kinds are listed in ``KIND_MODULES`` and imported on first use, so
importing the registry stays cheap and nothing heavy loads in processes that never run jobs.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, ValidationError

from zhuge.errors import InvalidParams, UnknownKind

if TYPE_CHECKING:
    from zhuge.jobs.context import JobContext

KIND_MODULES: tuple[str, ...] = (
    "zhuge.jobs.builtin",
    "zhuge.jobs.migration",
    "zhuge.jobs.forecast",
    "zhuge.jobs.cluster",
    "zhuge.jobs.registry.kinds",
    "zhuge.jobs.registry.live",
)

DEFAULT_RESOURCES: dict[str, float] = {"CPU": 1.0}
DEFAULT_TIMEOUT_S = 6 * 3600.0
"""How long an attempt of a kind that names no limit may run (a job may ask for another)."""
# Parameters earlier versions took, and what replaced them (said when a caller still sends one).
REMOVED_PARAMS = {
    "out": "jobs write only into their own artifacts: download the result's output with "
    "GET /v1/jobs/{id}/artifacts/{name} (the CLI's --out FILE does)",
    "db": "sql runs on a connection an admin registered, never a database URL: give "
    "connection=NAME (zhuge connections ls)",
}


class KindParams(BaseModel):
    """Base for parameter models: unknown fields are an error, not silently dropped."""

    model_config = ConfigDict(extra="forbid")


RunFunction = Callable[[Any, "JobContext"], Any]


@dataclass(frozen=True)
class Kind:
    name: str
    params: type[BaseModel]
    run: RunFunction
    resources: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_RESOURCES))
    description: str = ""
    timeout_s: float = DEFAULT_TIMEOUT_S
    """An attempt running longer is stopped (a job may ask for another limit)."""

    def parse(self, params: dict[str, Any] | None) -> BaseModel:
        try:
            return self.params.model_validate(params or {})
        except ValidationError as exc:
            errors = [
                {"loc": list(e["loc"]), "msg": _message(e), "type": e["type"]} for e in exc.errors()
            ]
            fields = ", ".join(".".join(str(p) for p in e["loc"]) or "(params)" for e in errors)
            raise InvalidParams(
                f"invalid parameters for kind {self.name!r}: {fields}", details=errors
            ) from exc

    def normalise(self, params: dict[str, Any] | None) -> dict[str, Any]:
        """Validated parameters with defaults filled in, as stored on the job row."""
        return self.parse(params).model_dump(mode="json")


def _message(error: Any) -> str:
    if error["type"] == "extra_forbidden" and len(error["loc"]) == 1:
        replaced = REMOVED_PARAMS.get(str(error["loc"][0]))
        if replaced:
            return f"no longer a parameter: {replaced}"
    return error["msg"]


_REGISTRY: dict[str, Kind] = {}
_loaded = False


def kind(
    name: str,
    *,
    params: type[BaseModel],
    resources: dict[str, float] | None = None,
    description: str = "",
    timeout_s: float = 0.0,
) -> Callable[[RunFunction], RunFunction]:
    """Register ``run`` as the code of job kind ``name``."""

    def register(run: RunFunction) -> RunFunction:
        if name in _REGISTRY and _REGISTRY[name].run is not run:
            raise ValueError(f"job kind {name!r} is registered twice")
        doc = description or (run.__doc__ or "").strip().splitlines()[0:1]
        _REGISTRY[name] = Kind(
            name=name,
            params=params,
            run=run,
            resources=dict(resources or DEFAULT_RESOURCES),
            description=doc if isinstance(doc, str) else "".join(doc),
            timeout_s=timeout_s or DEFAULT_TIMEOUT_S,
        )
        return run

    return register


def _load() -> None:
    global _loaded
    if not _loaded:
        for module in KIND_MODULES:
            importlib.import_module(module)
        _loaded = True


def get_kind(name: str) -> Kind:
    _load()
    try:
        return _REGISTRY[name]
    except KeyError:
        known = ", ".join(sorted(_REGISTRY))
        raise UnknownKind(f"unknown job kind {name!r}; known kinds: {known}") from None


def all_kinds() -> list[Kind]:
    _load()
    return [_REGISTRY[n] for n in sorted(_REGISTRY)]
