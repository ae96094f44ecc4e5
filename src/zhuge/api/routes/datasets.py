"""/v1/datasets: upload, list, download and remove the tenant's datasets.

An upload is the raw file as the request body, read chunk by chunk and streamed to the
artifact store while it is hashed: never held whole in memory, refused at the first byte
past ``max_upload_bytes`` (or at once, from a ``Content-Length`` over it). Another tenant's
dataset is a 404 exactly like a missing one.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from datetime import datetime
from typing import Annotated

import anyio.from_thread
import anyio.to_thread
from fastapi import APIRouter, Depends, Query, Request, Response, status
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field

from zhuge.api.audit import note
from zhuge.api.auth import CurrentPrincipal, StoreDep
from zhuge.api.schemas import iso
from zhuge.errors import DatasetNotFound, PayloadTooLarge
from zhuge.jobs.datasets import Dataset, Datasets

router = APIRouter(prefix="/v1/datasets", tags=["datasets"])

BATCH_BYTES = 1 << 20  # body bytes handed to the writing thread at a time

Digest = Annotated[str | None, Query(description="A version's SHA-256 (default: the newest).")]


def get_datasets(request: Request, store: StoreDep) -> Datasets:
    return Datasets(store.engine, request.app.state.settings.artifacts_root, clock=store.clock)


DatasetsDep = Annotated[Datasets, Depends(get_datasets)]


class DatasetOut(BaseModel):
    tenant: str
    name: str
    sha256: str
    size_bytes: int
    format: str = Field(description="csv or parquet.")
    ref: str = Field(description="dataset://NAME@sha256:HEX: this exact version, for job params.")
    created_at: datetime | None
    created_by: str | None = Field(description="The id of the token that uploaded it.")

    @classmethod
    def of(cls, d: Dataset) -> DatasetOut:
        return cls(
            tenant=d.tenant,
            name=d.name,
            sha256=d.sha256,
            size_bytes=d.size_bytes,
            format=d.format,
            ref=d.ref,
            created_at=iso(d.created_at),
            created_by=d.created_by,
        )


class DatasetList(BaseModel):
    datasets: list[DatasetOut] = Field(description="Every version, by name, newest first.")


class DatasetRemoved(BaseModel):
    name: str
    sha256: str | None
    removed: int = Field(description="Versions removed.")


def _body_in_thread(request: Request) -> Iterator[bytes]:
    """The request body as a blocking iterator, for a worker thread: each step fetches about
    ``BATCH_BYTES`` from the event loop, so the thread hops are few and memory stays small."""
    stream: AsyncIterator[bytes] = request.stream()

    async def next_batch() -> bytes:
        parts: list[bytes] = []
        size = 0
        async for chunk in stream:
            parts.append(chunk)
            size += len(chunk)
            if size >= BATCH_BYTES:
                break
        return b"".join(parts)

    while batch := anyio.from_thread.run(next_batch):
        yield batch


@router.post(
    "",
    name="dataset.put",
    status_code=status.HTTP_201_CREATED,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/octet-stream": {"schema": {"type": "string"}}},
        }
    },
    responses={
        200: {"description": "This name already had this content: the version there."},
        413: {"description": "Over the upload limit (ZHUGE_MAX_UPLOAD_BYTES)."},
    },
)
async def put_dataset(
    request: Request,
    response: Response,
    principal: CurrentPrincipal,
    datasets: DatasetsDep,
    name: Annotated[str, Query(max_length=200, description="The dataset's name.")],
    format: Annotated[
        str | None, Query(pattern="^(csv|parquet)$", description="Default: from the content.")
    ] = None,
) -> DatasetOut:
    """Upload a CSV or Parquet file (the raw request body) as a version of ``name``."""
    limit = request.app.state.settings.max_upload_bytes
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(
            f"upload of {int(declared):,} bytes exceeds the limit of {limit:,} bytes "
            "(ZHUGE_MAX_UPLOAD_BYTES)",
            details={"max_bytes": limit},
        )
    dataset, created = await anyio.to_thread.run_sync(
        lambda: datasets.put(
            principal.tenant,
            name,
            _body_in_thread(request),
            created_by=principal.token_id,
            max_bytes=limit,
            format=format,
        )
    )
    note(
        request,
        target=f"name={dataset.name} sha256={dataset.sha256}",
        size_bytes=dataset.size_bytes,
        created=created,
    )
    if not created:
        response.status_code = status.HTTP_200_OK
    return DatasetOut.of(dataset)


@router.get("", name="dataset.list")
def list_datasets(
    principal: CurrentPrincipal,
    datasets: DatasetsDep,
    name: Annotated[str | None, Query(max_length=200)] = None,
) -> DatasetList:
    """The caller's tenant's datasets (an admin's: every tenant's)."""
    return DatasetList(datasets=[DatasetOut.of(d) for d in datasets.list(principal.scope, name)])


@router.get(
    "/{name}/content",
    name="dataset.download",
    response_class=StreamingResponse,
    responses={
        200: {
            "description": "The content: CSV or Parquet, as it was uploaded.",
            "content": {
                "text/csv": {"schema": {"type": "string"}},
                "application/vnd.apache.parquet": {
                    "schema": {"type": "string", "format": "binary"}
                },
            },
        }
    },
)
def download_dataset(
    name: str,
    request: Request,
    principal: CurrentPrincipal,
    datasets: DatasetsDep,
    sha256: Digest = None,
) -> StreamingResponse:
    """A version's content, streamed; its digest in ``X-Zhuge-SHA256``. Declared before
    ``/by-digest/{sha256}``, so a dataset named "by-digest" can still be downloaded."""
    dataset = datasets.resolve(principal.tenant, name, sha256)
    note(request, target=f"name={dataset.name} sha256={dataset.sha256}")
    return StreamingResponse(
        datasets.open(dataset),
        media_type="text/csv" if dataset.format == "csv" else "application/vnd.apache.parquet",
        headers={
            "Content-Length": str(dataset.size_bytes),
            "Content-Disposition": f'attachment; filename="{dataset.name}"',
            "ETag": f'"sha256:{dataset.sha256}"',
            "X-Zhuge-SHA256": dataset.sha256,
            "X-Zhuge-Ref": dataset.ref,
        },
    )


@router.get("/by-digest/{sha256}", name="dataset.by_digest")
def dataset_by_digest(
    sha256: str,
    principal: CurrentPrincipal,
    datasets: DatasetsDep,
    name: Annotated[str | None, Query(max_length=200, description="Only under this name.")] = None,
) -> DatasetOut:
    """The caller's tenant's newest version with this content: a client need not upload
    what is already there."""
    found = datasets.by_digest(principal.tenant, sha256, name)
    if found is None:
        raise DatasetNotFound(f"no dataset with content sha256:{sha256} in this tenant")
    return DatasetOut.of(found)


@router.get("/{name}", name="dataset.get")
def get_dataset(
    name: str, principal: CurrentPrincipal, datasets: DatasetsDep, sha256: Digest = None
) -> DatasetOut:
    """A version of ``name``: the newest, or the one with ``sha256``."""
    return DatasetOut.of(datasets.resolve(principal.tenant, name, sha256))


@router.delete("/{name}", name="dataset.remove")
def remove_dataset(
    name: str, principal: CurrentPrincipal, datasets: DatasetsDep, sha256: Digest = None
) -> DatasetRemoved:
    """Remove every version of ``name``, or the one with ``sha256``."""
    removed = datasets.remove(principal.tenant, name, sha256)
    if not removed:
        ref = f"dataset://{name}" + (f"@sha256:{sha256}" if sha256 else "")
        raise DatasetNotFound(f"no dataset {ref} in this tenant", details={"ref": ref})
    return DatasetRemoved(name=name, sha256=sha256, removed=removed)
