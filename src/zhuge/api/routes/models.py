"""/v1/models: the tenant's model registry (list, show, promote, roll back, alias, remove,
configure the release gate).

Every route acts on the caller's own tenant: another tenant's model is a 404 exactly like a
missing one. Times are ISO 8601. Every change is audited under its route's name
(``model.promote``, ``model.rollback``, ...) and kept in the model's own history.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Request
from pydantic import BaseModel, ConfigDict, Field

from zhuge.api.audit import note
from zhuge.api.auth import CurrentPrincipal, StoreDep
from zhuge.api.schemas import iso
from zhuge.jobs.registry import ModelConfig, Registry

router = APIRouter(prefix="/v1/models", tags=["models"])

TIME_KEYS = frozenset({"created_at", "updated_at", "at"})

Name = Annotated[str, Path(max_length=200, description="The registered model's name.")]
Alias = Annotated[str, Path(max_length=64, description="An alias: champion, challenger, ...")]
Version = Annotated[int, Path(ge=1, description="A version number.")]


def get_registry(store: StoreDep) -> Registry:
    return Registry(store.engine, clock=store.clock)


RegistryDep = Annotated[Registry, Depends(get_registry)]


class VersionBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: int = Field(ge=1, description="The version the alias points at.")


class ConfigBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    config: dict[str, Any] = Field(description="Settings to change (the others are kept).")


def _times(value: Any) -> Any:
    """Epoch seconds under the time keys as ISO 8601, everywhere in a registry answer."""
    if isinstance(value, dict):
        return {
            k: iso(v) if k in TIME_KEYS and isinstance(v, int | float) else _times(v)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [_times(v) for v in value]
    return value


@router.get("", name="model.list")
def list_models(registry: RegistryDep, principal: CurrentPrincipal) -> list[dict[str, Any]]:
    """The tenant's registered models: versions, latest, aliases, gate settings."""
    return _times(registry.list(principal.tenant))


@router.get("/{name}", name="model.show")
def show_model(name: Name, registry: RegistryDep, principal: CurrentPrincipal) -> dict[str, Any]:
    """Versions (lineage, gate decision and evidence), aliases, alias history, every event
    and the live record."""
    return _times(registry.show(principal.tenant, name))


@router.get("/{name}/versions/{version}", name="model.version")
def show_version(
    name: Name, version: Version, registry: RegistryDep, principal: CurrentPrincipal
) -> dict[str, Any]:
    return _times(registry.version(principal.tenant, name, version).as_dict())


@router.post("/{name}/promote", name="model.promote")
def promote(
    name: Name,
    body: VersionBody,
    request: Request,
    registry: RegistryDep,
    principal: CurrentPrincipal,
) -> dict[str, Any]:
    """Make a version the champion by hand."""
    note(request, target=f"{name}@{body.version}")
    done = registry.promote(principal.tenant, name, body.version, actor=principal.token_id)
    return _times(done.as_dict())


@router.post("/{name}/rollback", name="model.rollback")
def rollback(
    name: Name, request: Request, registry: RegistryDep, principal: CurrentPrincipal
) -> dict[str, Any]:
    """Make the previous champion (from the alias history) champion again."""
    done = registry.rollback(principal.tenant, name, actor=principal.token_id)
    note(request, target=f"{name}@{done.version}")
    return _times(done.as_dict())


@router.put("/{name}/aliases/{alias}", name="model.alias")
def set_alias(
    name: Name,
    alias: Alias,
    body: VersionBody,
    registry: RegistryDep,
    principal: CurrentPrincipal,
) -> dict[str, Any]:
    """Point an alias at a version (``champion`` too: that is a promotion)."""
    done = registry.set_alias(
        principal.tenant,
        name,
        alias,
        body.version,
        actor=principal.token_id,
        action="promote" if alias == "champion" else "alias",
    )
    return _times(done.as_dict())


@router.delete("/{name}/versions/{version}", name="model.remove")
def remove_version(
    name: Name, version: Version, registry: RegistryDep, principal: CurrentPrincipal
) -> dict[str, Any]:
    """Remove a version no alias points at (409 otherwise); its job keeps its artifacts."""
    removed = registry.remove(principal.tenant, name, version, actor=principal.token_id)
    return {"name": name, "version": removed}


@router.patch("/{name}/config", name="model.config")
def set_config(
    name: Name, body: ConfigBody, registry: RegistryDep, principal: CurrentPrincipal
) -> ModelConfig:
    """Change the release gate's and drift's settings (metric, margin, level, test,
    min_series, manual, gate_windows, drift_factor, drift_scorings, drift_action)."""
    return registry.set_config(principal.tenant, name, body.config)
