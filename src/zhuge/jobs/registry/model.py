"""What the registry's rows mean: a version (:class:`ModelVersion`), a model's release gate
and drift settings (:class:`ModelConfig`), names, aliases and references (``NAME@ALIAS``,
``NAME@VERSION``), and the check that a version's saved artifact is the one registered."""

from __future__ import annotations

import hashlib
import re
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from zhuge import errors
from zhuge.artifacts import MANIFEST, ArtifactDir

CHAMPION = "champion"
CHALLENGER = "challenger"
# the task of the models a job kind's model_from takes (every other kind: forecast models)
KIND_TASKS = {"cluster-predict": "cluster"}
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$")
ALIAS_PATTERN = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,63}$")
REF_PATTERN = re.compile(
    r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._-]{0,199})@(?P<at>[A-Za-z0-9_-]{1,64})$"
)


class ModelConfig(BaseModel):
    """A registered model's release gate and drift settings (``zhuge models config``)."""

    model_config = ConfigDict(extra="forbid")

    metric: str = Field("mase", description="Gate metric (lower is better): mase, or a plug-in.")
    margin: float = Field(0.02, ge=0, lt=1, description="Relative improvement needed: 0.02 = 2 %.")
    level: float = Field(0.05, gt=0, lt=1, description="Significance level of the test.")
    test: Literal["dm", "bootstrap"] = Field(
        "dm", description="Diebold-Mariano on per-series losses, or a paired bootstrap."
    )
    min_series: int = Field(10, ge=2, description="Fewer series scored: never promoted.")
    manual: bool = Field(False, description="Never promote automatically.")
    gate_windows: int = Field(3, ge=1, le=20, description="Horizons held out for the gate.")
    drift_factor: float = Field(
        1.5, gt=1, description="Live error above this times the gate's error counts as drift."
    )
    drift_scorings: int = Field(3, ge=1, description="Consecutive drifted scorings that act.")
    drift_action: Literal["none", "retrain", "rollback"] = Field(
        "none", description="What drift does: nothing, retrain, or roll back if better."
    )


def check_config(values: dict[str, Any] | None) -> ModelConfig:
    try:
        return ModelConfig.model_validate(values or {})
    except ValidationError as exc:
        details = [
            {"loc": ["config", *e["loc"]], "msg": e["msg"], "type": e["type"]} for e in exc.errors()
        ]
        fields = ", ".join(".".join(map(str, d["loc"][1:])) for d in details)
        raise errors.InvalidParams(f"invalid model config: {fields}", details=details) from exc


@dataclass(frozen=True)
class ModelVersion:
    tenant: str
    model: str
    version: int
    created_at: float
    created_by: str | None
    job_id: int | None
    artifact: str  # the model folder, relative to the artifacts root
    manifest_sha256: str
    lineage: dict[str, Any]
    metrics: dict[str, Any] | None = None
    gate: dict[str, Any] | None = None
    aliases: tuple[str, ...] = field(default=())

    @property
    def ref(self) -> str:
        return f"{self.model}@{self.version}"

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "aliases": list(self.aliases), "ref": self.ref}


def check_name(name: str) -> str:
    if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name):
        raise errors.InvalidRequest(
            f"model name {name!r} is not allowed: 1 to 200 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit",
            details=[{"loc": ["name"], "msg": "invalid model name", "type": "value_error"}],
        )
    return name


def check_alias(alias: str) -> str:
    if not isinstance(alias, str) or not ALIAS_PATTERN.fullmatch(alias) or alias.isdigit():
        raise errors.InvalidRequest(
            f"alias {alias!r} is not allowed: a letter, then up to 63 letters, digits, '_' or '-'",
            details=[{"loc": ["alias"], "msg": "invalid alias", "type": "value_error"}],
        )
    return alias


def task_of_kind(kind: str) -> str:
    """``forecast`` or ``cluster``: what a model ``kind``'s ``model_from`` names must be."""
    return KIND_TASKS.get(kind, "forecast")


def parse_ref(ref: str) -> tuple[str, int | str]:
    """``NAME@ALIAS`` → (name, alias); ``NAME@VERSION`` → (name, version number)."""
    match = REF_PATTERN.fullmatch(ref) if isinstance(ref, str) else None
    if match is None:
        raise errors.InvalidRequest(
            f"{ref!r} is not a model reference: NAME@ALIAS (fleet-cpu@champion) or "
            "NAME@VERSION (fleet-cpu@3)"
        )
    at = match["at"]
    return match["name"], int(at) if at.isdigit() else at


def manifest_digest(manifest_bytes: bytes) -> str:
    return hashlib.sha256(manifest_bytes).hexdigest()


def verified_folder(root: ArtifactDir, version: ModelVersion) -> ArtifactDir:
    """The version's model folder, refused (``DataError``) unless its manifest is the one
    registered. Each file's hash against the manifest is checked when the model is loaded."""
    folder = root.child(version.artifact)
    try:
        found = manifest_digest(folder.read_bytes(MANIFEST))
    except errors.ModelNotFound as exc:
        raise errors.DataError(f"model {version.ref}: its artifact is gone") from exc
    if found != version.manifest_sha256:
        raise errors.DataError(
            f"model {version.ref}: its manifest's SHA-256 is {found[:16]}..., not the "
            f"{version.manifest_sha256[:16]}... registered: the artifact was changed after "
            "registration; refusing to load it"
        )
    return folder
