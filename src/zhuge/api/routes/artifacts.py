"""/v1/jobs/{id}/artifacts: what a job wrote, listed and downloaded (the CLI's ``--out``).

Jobs write only into their own attempt folder; this is how their outputs reach a caller, on
the same machine or not. A job outside the caller's tenant is 404, like every job route.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import IO

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field

from zhuge.api.auth import CurrentPrincipal, StoreDep
from zhuge.api.routes.jobs import JobId
from zhuge.jobs.job_artifacts import attempt_artifacts, content_type, open_artifact

router = APIRouter(prefix="/v1/jobs", tags=["artifacts"])

CHUNK_BYTES = 1 << 20  # read and sent at a time: memory per download stays at one chunk


class ArtifactOut(BaseModel):
    name: str = Field(
        description="Path relative to the attempt's folder, e.g. model/manifest.json."
    )
    size_bytes: int


class ArtifactList(BaseModel):
    job_id: int
    attempt: int = Field(description="The attempt whose folder is listed (0: none ran yet).")
    committed: bool = Field(
        description="True: the committed attempt of a succeeded job. False: the latest attempt "
        "of a job that has not succeeded; its files may be partial."
    )
    artifacts: list[ArtifactOut]


@router.get("/{job_id}/artifacts", name="artifact.list")
def list_artifacts(
    job_id: JobId, request: Request, store: StoreDep, principal: CurrentPrincipal
) -> ArtifactList:
    job = store.get(job_id, tenant=principal.scope)
    found = attempt_artifacts(job, request.app.state.settings.artifacts_root)
    return ArtifactList(
        job_id=found.job_id,
        attempt=found.attempt,
        committed=found.committed,
        artifacts=[ArtifactOut(name=n, size_bytes=s) for n, s in found.files.items()],
    )


@router.get(
    "/{job_id}/artifacts/{name:path}",
    name="artifact.download",
    response_class=StreamingResponse,
    responses={200: {"content": {"application/octet-stream": {}}}},
)
def download_artifact(
    job_id: JobId, name: str, request: Request, store: StoreDep, principal: CurrentPrincipal
) -> StreamingResponse:
    """One file of the listing, streamed; ``name`` must be one of the listed names."""
    job = store.get(job_id, tenant=principal.scope)
    found = attempt_artifacts(job, request.app.state.settings.artifacts_root)
    fh, size = open_artifact(found, name)
    filename = name.rsplit("/", 1)[-1].encode("ascii", "ignore").decode().replace('"', "")
    return StreamingResponse(
        _chunks(fh),
        media_type=content_type(name),
        headers={
            "Content-Length": str(size),
            "Content-Disposition": f'attachment; filename="{filename}"',
            "X-Zhuge-Attempt": str(found.attempt),
        },
    )


def _chunks(fh: IO[bytes]) -> Iterator[bytes]:
    with fh:
        while chunk := fh.read(CHUNK_BYTES):
            yield chunk
