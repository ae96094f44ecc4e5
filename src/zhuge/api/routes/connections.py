"""/v1/connections (admins add and remove; members list their tenant's) and /v1/data-roots.

A connection's URL, with its credentials, goes in and never comes out: answers show its
kind, tenant and a location without user, password or options.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Request, status
from pydantic import BaseModel, ConfigDict, Field

from zhuge.api.auth import AdminPrincipal, CurrentPrincipal
from zhuge.api.schemas import iso
from zhuge.jobs.connections import Connection, Connections
from zhuge.jobs.inputs import allowed_roots, private_paths

router = APIRouter(prefix="/v1", tags=["connections"])


def get_connections(request: Request) -> Connections:
    return Connections(request.app.state.store.engine)


ConnectionsDep = Annotated[Connections, Depends(get_connections)]
ConnectionName = Annotated[str, Path(max_length=64, description="The connection's name.")]


class ConnectionCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(max_length=64, description="Letters, digits, '_' and '-'; 1 to 64.")
    url: str = Field(
        max_length=2000,
        description="postgresql://user:password@host/db, sqlite:////path/file.db, or an object "
        "prefix s3://bucket/prefix, gs://bucket/prefix, file:///folder. Never shown back.",
    )
    tenant: str | None = Field(
        None, max_length=64, description="The tenant whose jobs may use it; none: admins only."
    )


class ConnectionOut(BaseModel):
    name: str
    kind: str = Field(description="sql or objects.")
    tenant: str | None = Field(description="Whose jobs may use it; null: admins only.")
    location: str = Field(description="Engine, host and database, or the object prefix.")
    created_at: datetime | None
    created_by: str | None

    @classmethod
    def of(cls, c: Connection) -> ConnectionOut:
        return cls(
            name=c.name,
            kind=c.kind,
            tenant=c.tenant,
            location=c.location,
            created_at=iso(c.created_at),
            created_by=c.created_by,
        )


class DataRootsOut(BaseModel):
    roots: list[str] = Field(description="Server folders this token's jobs may read directly.")


@router.post("/connections", name="connection.add", status_code=status.HTTP_201_CREATED)
def add_connection(
    body: ConnectionCreate,
    request: Request,
    connections: ConnectionsDep,
    principal: AdminPrincipal,
) -> ConnectionOut:
    """Register a SQL database or an object-store prefix (admins). Refused: another scheme,
    the platform's own database or files, a PostgreSQL role that can read server files."""
    settings = request.app.state.settings
    return ConnectionOut.of(
        connections.add(
            body.name,
            body.url,
            tenant=body.tenant,
            created_by=principal.token_id,
            platform_db_url=settings.database_url,
            private=private_paths(settings),
        )
    )


@router.get("/connections", name="connection.list")
def list_connections(
    connections: ConnectionsDep, principal: CurrentPrincipal
) -> list[ConnectionOut]:
    """Every connection (admins), or those of the caller's tenant."""
    return [ConnectionOut.of(c) for c in connections.list(principal)]


@router.delete("/connections/{name}", name="connection.remove")
def remove_connection(
    name: ConnectionName, connections: ConnectionsDep, _: AdminPrincipal
) -> ConnectionOut:
    """Remove a connection (admins); jobs naming it fail when they start."""
    return ConnectionOut.of(connections.remove(name))


@router.get("/data-roots", name="data_roots.list")
def data_roots(request: Request, principal: CurrentPrincipal) -> DataRootsOut:
    """The server folders the caller's jobs may read by path: the server's roots and the
    tenant's own, resolved. Anything else is read as a dataset or through a connection."""
    settings = request.app.state.settings
    engine = request.app.state.store.engine
    return DataRootsOut(roots=allowed_roots(engine, principal.tenant, settings.data_roots))
