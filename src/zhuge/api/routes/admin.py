"""/v1/tenants, /v1/tokens, /v1/audit: who may use the platform, and what they did.

Admins only, except ``GET /v1/tokens``, which shows a member its own tenant's tokens. A token
is shown once, in the answer that creates it; every other answer names it by its id.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request, status
from pydantic import BaseModel, ConfigDict, Field

from zhuge.api import audit
from zhuge.api.auth import AdminPrincipal, CurrentPrincipal
from zhuge.api.schemas import iso
from zhuge.errors import Forbidden
from zhuge.jobs.store import JobStore
from zhuge.jobs.tenancy import AuditEntry, Tenancy, Tenant, TokenInfo, parse_duration

router = APIRouter(prefix="/v1", tags=["admin"])


def get_tenancy(request: Request) -> Tenancy:
    store: JobStore = request.app.state.store
    return store.tenancy


TenancyDep = Annotated[Tenancy, Depends(get_tenancy)]
TenantName = Annotated[str | None, Query(max_length=64, description="Only this tenant's.")]


class TenantCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(
        max_length=200, description="Lowercase letters, digits, '-' and '_'; 1 to 64."
    )


class TenantOut(BaseModel):
    name: str
    created_at: datetime | None
    data_roots: list[str] | None

    @classmethod
    def of(cls, t: Tenant) -> TenantOut:
        return cls(name=t.name, created_at=iso(t.created_at), data_roots=t.data_roots)


class TokenCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    tenant: str = Field(max_length=200, description="An existing tenant.")
    role: str = Field("member", max_length=32, description="member or admin.")
    name: str = Field("", max_length=100, description="A label, e.g. laptop or ci.")
    expires: str | None = Field(
        None, max_length=32, description="Lifetime, e.g. 90d, 12h, 30m, 2w; none: never."
    )


class TokenOut(BaseModel):
    id: str
    tenant: str
    role: str
    name: str
    description: str
    state: str = Field(description="active, revoked or expired.")
    created_at: datetime | None
    expires_at: datetime | None
    last_used_at: datetime | None = Field(description="To the minute.")
    revoked_at: datetime | None

    @classmethod
    def of(cls, t: TokenInfo, now: float) -> TokenOut:
        return cls(
            id=t.id,
            tenant=t.tenant,
            role=t.role,
            name=t.name,
            description=t.description,
            state=t.state(now),
            created_at=iso(t.created_at),
            expires_at=iso(t.expires_at),
            last_used_at=iso(t.last_used_at),
            revoked_at=iso(t.revoked_at),
        )


class TokenCreated(TokenOut):
    token: str = Field(description="The bearer token. Shown this once: it is not kept.")


class AuditOut(BaseModel):
    id: int
    at: datetime | None
    token_id: str | None
    tenant: str | None
    action: str
    target: str
    outcome: str
    client: str
    details: dict[str, Any] | None

    @classmethod
    def of(cls, e: AuditEntry) -> AuditOut:
        return cls(
            id=e.id,
            at=iso(e.at),
            token_id=e.token_id,
            tenant=e.tenant,
            action=e.action,
            target=e.target,
            outcome=e.outcome,
            client=e.client,
            details=e.details,
        )


class AuditList(BaseModel):
    entries: list[AuditOut]
    next_before_id: int | None


def _utc(t: datetime) -> datetime:
    return t if t.tzinfo is not None else t.replace(tzinfo=UTC)


def _now(request: Request) -> float:
    return request.app.state.store.clock()


@router.post("/tenants", name="tenant.create", status_code=status.HTTP_201_CREATED)
def create_tenant(
    body: TenantCreate, request: Request, tenancy: TenancyDep, _: AdminPrincipal
) -> TenantOut:
    audit.note(request, target=f"tenant={body.name}")
    return TenantOut.of(tenancy.create_tenant(body.name))


class DataRootsSet(BaseModel):
    model_config = ConfigDict(extra="forbid")

    roots: list[Annotated[str, Field(min_length=1, max_length=1000)]] = Field(
        max_length=100,
        description="Absolute server folders this tenant's jobs may read by path, beyond "
        "ZHUGE_DATA_ROOTS; [] clears them.",
    )


@router.put("/tenants/{name}/data-roots", name="tenant.data_roots")
def set_tenant_data_roots(
    name: Annotated[str, Path(max_length=64)],
    body: DataRootsSet,
    request: Request,
    tenancy: TenancyDep,
    _: AdminPrincipal,
) -> TenantOut:
    """Replace a tenant's own allowed roots (admin)."""
    audit.note(request, target=f"tenant={name}")
    return TenantOut.of(tenancy.set_data_roots(name, body.roots))


@router.get("/tenants", name="tenant.list")
def list_tenants(tenancy: TenancyDep, _: AdminPrincipal) -> list[TenantOut]:
    return [TenantOut.of(t) for t in tenancy.tenants()]


@router.post("/tokens", name="token.create", status_code=status.HTTP_201_CREATED)
def create_token(
    body: TokenCreate, request: Request, tenancy: TenancyDep, _: AdminPrincipal
) -> TokenCreated:
    audit.note(request, target=f"tenant={body.tenant}", role=body.role)
    expires_in = parse_duration(body.expires) if body.expires is not None else None
    token, info = tenancy.create_token(
        body.tenant, role=body.role, name=body.name, expires_in=expires_in
    )
    audit.note(request, target=f"token_id={info.id} tenant={info.tenant}")
    return TokenCreated(token=token, **TokenOut.of(info, _now(request)).model_dump())


@router.get("/tokens", name="token.list")
def list_tokens(
    request: Request, tenancy: TenancyDep, principal: CurrentPrincipal, tenant: TenantName = None
) -> list[TokenOut]:
    """Every tenant's tokens for an admin; a member sees its own tenant's only."""
    if not principal.is_admin:
        if tenant not in (None, principal.tenant):
            raise Forbidden("a member token lists its own tenant's tokens only")
        tenant = principal.tenant
    now = _now(request)
    return [TokenOut.of(t, now) for t in tenancy.tokens(tenant=tenant)]


@router.post("/tokens/{token_id}/revoke", name="token.revoke")
def revoke_token(
    token_id: Annotated[
        str, Path(pattern=r"^tok_[A-Za-z0-9_-]{1,28}$", description="A token's id.")
    ],
    request: Request,
    tenancy: TenancyDep,
    _: AdminPrincipal,
) -> TokenOut:
    """Refused at once, on every API process (tokens are looked up on every request)."""
    return TokenOut.of(tenancy.revoke_token(token_id), _now(request))


@router.get("/audit", name="audit.list")
def list_audit(
    tenancy: TenancyDep,
    _: AdminPrincipal,
    tenant: TenantName = None,
    since: Annotated[
        datetime | None, Query(description="ISO 8601 (UTC without a zone); entries since.")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    before_id: Annotated[int | None, Query(ge=1, le=2**63 - 1)] = None,
) -> AuditList:
    """Newest first. ``tenant`` is the acting token's tenant."""
    entries = tenancy.audit(
        tenant=tenant,
        since=_utc(since).timestamp() if since is not None else None,
        limit=limit,
        before_id=before_id,
    )
    return AuditList(
        entries=[AuditOut.of(e) for e in entries],
        next_before_id=entries[-1].id if len(entries) == limit else None,
    )
