"""What a running job does with the registry, without loading any model library: the
version its ``model_from`` resolved to (checked against the task the job needs), the lineage
of a version it registers, and registering a clustering model (``zhuge cluster --register``).

A forecast model's versions go through the release gate (:mod:`zhuge.jobs.registry.kinds`);
a clustering model's do not: there is no held-out truth to judge a segmentation by, so its
first version becomes champion and later ones are registered without an alias, to be
promoted by hand (``zhuge models promote NAME VERSION``).
"""

from __future__ import annotations

import hashlib
import os
from typing import Any

import zhuge
from zhuge.artifacts import MANIFEST, ArtifactDir, library_versions
from zhuge.errors import DataError, ModelNotFound
from zhuge.jobs.context import JobContext
from zhuge.jobs.registry.model import CHAMPION, ModelVersion, check_name, manifest_digest
from zhuge.jobs.registry.store import Registry

CLUSTER_LIBRARIES = ("numpy", "pandas", "pyarrow", "scikit-learn")


def registry_of(ctx: JobContext) -> Registry:
    from zhuge.jobs.store import store_for

    if not ctx.db_url:
        raise DataError("the model registry needs the platform's store")
    return Registry(store_for(ctx.db_url).engine)


def used_version(ctx: JobContext, task: str) -> str | None:
    """``NAME@VERSION`` the job's ``model_from`` resolved to as it started (None when it
    named a job id); ``DataError`` when that model is not a ``task`` model."""
    if not ctx.db_url:
        return None
    registry = registry_of(ctx)
    _, version = registry.recorded(ctx.tenant, ctx.job_id)
    if version is None:
        return None
    name = version.rsplit("@", 1)[0]
    found = registry.task(ctx.tenant, name)
    if found != task:
        raise DataError(f"model {version} is a {found} model; this job needs a {task} model")
    return version


def relative(ctx: JobContext, folder: ArtifactDir) -> str:
    root = ctx.artifacts_root.url.rstrip("/") + "/"
    if not folder.url.startswith(root):
        raise DataError(f"model folder {folder.url} is outside the artifacts root")
    return folder.url[len(root) :]


def file_sha256(path: str) -> str | None:
    if not os.path.isfile(path):
        return None
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def lineage(params: Any, ctx: JobContext, libraries: tuple[str, ...]) -> dict[str, Any]:
    """What made this version: each input (a dataset's name and digest as read), its
    parameters as submitted, the job, zhuge's and the libraries' versions."""
    from zhuge.jobs.store import store_for

    submitted = store_for(ctx.db_url).get(ctx.job_id).params if ctx.db_url else {}
    inputs = []
    for key in ("input", "vms"):
        given, read = submitted.get(key), getattr(params, key, None)
        if not given:
            continue
        entry: dict[str, Any] = {"param": key, "ref": given, "name": None, "sha256": None}
        if str(given).startswith("dataset://") and "/sha256/" in str(read):
            sha256 = str(read).rsplit("/sha256/", 1)[1]
            name = str(given)[len("dataset://") :].split("@", 1)[0]
            entry.update(ref=f"dataset://{name}@sha256:{sha256}", name=name, sha256=sha256)
        elif read and os.path.isabs(str(read)):
            entry["sha256"] = file_sha256(str(read))  # a path: its content as read now
        inputs.append(entry)
    if submitted.get("sql"):
        inputs.append(
            {
                "param": "sql",
                "ref": f"connection {submitted.get('connection')}",
                "sql": submitted["sql"],
            }
        )
    return {
        "datasets": inputs,
        "params": submitted,
        "job_id": ctx.job_id,
        "zhuge": zhuge.__version__,
        "libraries": library_versions(libraries),
    }


def register_cluster_model(
    ctx: JobContext, name: str, params: Any, folder: ArtifactDir, metrics: dict[str, Any]
) -> dict[str, Any]:
    """Register the clustering model this job saved in ``folder`` as the next version of
    ``name`` (a retried job finds the version it registered and keeps it)."""
    from zhuge.jobs.outputs import json_safe

    check_name(name)
    registry = registry_of(ctx)
    try:
        task = registry.task(ctx.tenant, name)
        mine = [v for v in registry.versions(ctx.tenant, name) if v.job_id == ctx.job_id]
    except ModelNotFound:
        task, mine = "cluster", []
    if task != "cluster":
        raise DataError(
            f"model {name!r} holds {task} models, not clustering models: register under "
            "another name"
        )
    version: ModelVersion
    if mine:
        version = mine[0]
    else:
        try:
            first = CHAMPION not in registry.aliases(ctx.tenant, name)
        except ModelNotFound:
            first = True
        gate = (
            {"decision": "champion", "reason": "the first version of a model becomes champion"}
            if first
            else {
                "decision": "registered",
                "reason": "clustering models have no release gate: promote it by hand "
                f"(zhuge models promote {name} VERSION)",
            }
        )
        version = registry.register(
            ctx.tenant,
            name,
            artifact=relative(ctx, folder),
            manifest_sha256=manifest_digest(folder.read_bytes(MANIFEST)),
            lineage=json_safe(lineage(params, ctx, CLUSTER_LIBRARIES)),
            job_id=ctx.job_id,
            metrics=json_safe(metrics),
            task="cluster",
            gate=gate,
        )
        ctx.log(f"registered {version.ref}: {gate['reason']}")
    return {
        "model": name,
        "version": version.version,
        "ref": version.ref,
        "aliases": list(version.aliases),
        "gate": version.gate,
    }
