"""Tenants, their tokens, and the audit log: who may ask, and what they asked.

A token is a random secret shown once; only its SHA-256 is kept, beside a short ``id`` that
names it everywhere else (``tokens ls``, revocation, the audit log). A token is looked up on
every request, never cached, so revoking one or its expiry holds at once on every API process.

``admin`` tokens are platform-wide, whatever their tenant; ``member`` tokens act on their own
tenant only (``Principal.scope``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from zhuge.errors import Conflict, InvalidRequest, TenantNotFound, TokenNotFound
from zhuge.jobs import schema
from zhuge.jobs.model import Principal

if TYPE_CHECKING:
    from zhuge.jobs.store import JobStore

ROLES = ("member", "admin")
TENANT_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,63}$")
TOKEN_NAME_MAX = 100
TOKEN_USE_RESOLUTION = 60.0  # seconds: a token's last use is recorded to this precision
MAX_TOKEN_LIFETIME = 10 * 365 * 86400.0  # seconds
MAX_AUDIT_PAGE = 1000

_DURATION = re.compile(r"^\s*([0-9]{1,6})\s*([smhdw])\s*$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_duration(text: str) -> float:
    """Seconds in ``90d``, ``12h``, ``30m``, ``45s`` or ``2w``; InvalidRequest otherwise."""
    match = _DURATION.match(text)
    if not match or int(match.group(1)) == 0:
        raise InvalidRequest(
            f"duration {text!r} is not a positive number and a unit: e.g. 90d, 12h, 30m, 2w"
        )
    return int(match.group(1)) * _UNIT_SECONDS[match.group(2)]


def check_tenant_name(name: str) -> str:
    if not TENANT_NAME.match(name):
        raise InvalidRequest(
            f"tenant name {name!r} must start with a lowercase letter and hold only lowercase "
            "letters, digits, '-' and '_' (at most 64 characters)"
        )
    return name


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class Tenant:
    name: str
    created_at: float
    data_roots: list[str] | None = None


@dataclass(frozen=True)
class TokenInfo:
    """Everything about a token but the token itself, which is never kept."""

    id: str
    tenant: str
    role: str
    name: str
    created_at: float
    expires_at: float | None
    last_used_at: float | None
    revoked_at: float | None
    description: str = ""

    def state(self, now: float) -> str:
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at is not None and self.expires_at <= now:
            return "expired"
        return "active"


@dataclass(frozen=True)
class AuditEntry:
    id: int
    at: float
    token_id: str | None  # None: the request carried no valid token
    tenant: str | None
    action: str  # e.g. job.submit, token.revoke
    target: str
    outcome: str  # "ok", or the refusal's error type
    client: str
    details: dict[str, Any] | None = None


def _limit(text: str | None, n: int) -> str:
    return (text or "")[:n]


class Tenancy:
    """Tenants, tokens and the audit log, on the store's engine, clock and transactions."""

    def __init__(self, store: JobStore) -> None:
        self._store = store

    # -- tenants --------------------------------------------------------------------------

    def ensure_tenant(self, name: str) -> None:
        """Create ``name`` unless it exists (the platform's own tenant, v0.1.0's tokens)."""
        T = schema.tenants
        try:
            with self._store._tx() as conn:
                if not conn.execute(sa.select(T.c.name).where(T.c.name == name)).first():
                    conn.execute(T.insert().values(name=name, created_at=self._store.clock()))
        except IntegrityError:
            pass  # another process (two servers starting at once) created it meanwhile

    def create_tenant(self, name: str) -> Tenant:
        check_tenant_name(name)
        tenant = Tenant(name=name, created_at=self._store.clock())
        try:
            with self._store._tx() as conn:
                conn.execute(
                    schema.tenants.insert().values(name=name, created_at=tenant.created_at)
                )
        except IntegrityError as exc:
            raise Conflict(f"tenant {name!r} already exists") from exc
        return tenant

    def tenants(self) -> list[Tenant]:
        T = schema.tenants
        with self._store.engine.connect() as conn:
            rows = conn.execute(sa.select(T).order_by(T.c.name)).all()
        return [Tenant(name=r.name, created_at=r.created_at, data_roots=r.data_roots) for r in rows]

    def set_data_roots(self, name: str, roots: list[str]) -> Tenant:
        """Replace the server paths ``name``'s jobs may read beyond ``ZHUGE_DATA_ROOTS``.

        Each must be an absolute path to an existing folder; it is stored resolved (``..``
        and symlinks followed), as the checks compare resolved paths."""
        resolved: list[str] = []
        for root in roots:
            path = Path(root)
            if "\x00" in root or not path.is_absolute():
                raise InvalidRequest(f"data root {root!r} must be an absolute path")
            if not path.is_dir():
                raise InvalidRequest(f"data root {root!r} is not a folder on the server")
            if str(path.resolve()) not in resolved:
                resolved.append(str(path.resolve()))
        T = schema.tenants
        with self._store._tx() as conn:
            self._check_tenant_exists(conn, name)
            conn.execute(T.update().where(T.c.name == name).values(data_roots=resolved or None))
            row = conn.execute(sa.select(T).where(T.c.name == name)).one()
        return Tenant(name=row.name, created_at=row.created_at, data_roots=row.data_roots)

    def _check_tenant_exists(self, conn: sa.Connection, name: str) -> None:
        T = schema.tenants
        if not conn.execute(sa.select(T.c.name).where(T.c.name == name)).first():
            raise TenantNotFound(
                f"tenant {name!r} does not exist: create it first (zhuge tenants create {name})"
            )

    # -- tokens ---------------------------------------------------------------------------

    def issue_token(
        self,
        tenant: str,
        description: str = "",
        *,
        role: str = "member",
        name: str = "",
        expires_in: float | None = None,
    ) -> str:
        """A new token for ``tenant`` (created if new): what the platform issues itself."""
        self.ensure_tenant(tenant)
        return self._insert_token(tenant, role, name, expires_in, description)[0]

    def create_token(
        self,
        tenant: str,
        *,
        role: str = "member",
        name: str = "",
        expires_in: float | None = None,
    ) -> tuple[str, TokenInfo]:
        """A new token for an existing tenant, as an admin asks: ``(token, info)``. The
        token is returned here only; the store keeps its hash."""
        return self._insert_token(tenant, role, name, expires_in, "", must_exist=True)

    def _insert_token(
        self,
        tenant: str,
        role: str,
        name: str,
        expires_in: float | None,
        description: str,
        *,
        must_exist: bool = False,
    ) -> tuple[str, TokenInfo]:
        if role not in ROLES:
            raise InvalidRequest(f"role must be one of {', '.join(ROLES)}, not {role!r}")
        if len(name) > TOKEN_NAME_MAX:
            raise InvalidRequest(f"a token's name is at most {TOKEN_NAME_MAX} characters")
        if expires_in is not None and not 0 < expires_in <= MAX_TOKEN_LIFETIME:
            raise InvalidRequest("a token expires after more than 0 seconds and within 10 years")
        now = self._store.clock()
        token = "zt_" + secrets.token_urlsafe(32)
        info = TokenInfo(
            id="tok_" + secrets.token_hex(8),
            tenant=tenant,
            role=role,
            name=name,
            created_at=now,
            expires_at=None if expires_in is None else now + expires_in,
            last_used_at=None,
            revoked_at=None,
            description=description,
        )
        with self._store._tx() as conn:
            if must_exist:
                self._check_tenant_exists(conn, tenant)
            conn.execute(
                schema.tokens.insert().values(
                    token_sha256=hash_token(token),
                    id=info.id,
                    tenant=info.tenant,
                    role=info.role,
                    name=info.name,
                    created_at=info.created_at,
                    expires_at=info.expires_at,
                    description=info.description,
                )
            )
        return token, info

    def tokens(self, *, tenant: str | None = None) -> list[TokenInfo]:
        """Every token (of ``tenant``), oldest first; revoked and expired ones too."""
        T = schema.tokens
        query = sa.select(*_TOKEN_COLUMNS).order_by(T.c.created_at, T.c.id)
        if tenant is not None:
            query = query.where(T.c.tenant == tenant)
        with self._store.engine.connect() as conn:
            return [TokenInfo(**r._mapping) for r in conn.execute(query)]

    def token(self, token_id: str, *, tenant: str | None = None) -> TokenInfo:
        T = schema.tokens
        query = sa.select(*_TOKEN_COLUMNS).where(T.c.id == token_id)
        if tenant is not None:
            query = query.where(T.c.tenant == tenant)
        with self._store.engine.connect() as conn:
            row = conn.execute(query).first()
        if row is None:
            raise TokenNotFound(f"token {token_id!r} does not exist")
        return TokenInfo(**row._mapping)

    def revoke_token(self, token_id: str, *, tenant: str | None = None) -> TokenInfo:
        """Revoke at once; revoking a revoked token changes nothing (its first time stays)."""
        T = schema.tokens
        self.token(token_id, tenant=tenant)
        with self._store._tx() as conn:
            conn.execute(
                T.update()
                .where(T.c.id == token_id, T.c.revoked_at.is_(None))
                .values(revoked_at=self._store.clock())
            )
        return self.token(token_id, tenant=tenant)

    def principal_for_token(self, token: str) -> Principal | None:
        """Who ``token`` is, or None if it is unknown, revoked or expired. Read from the
        database on every call, so a revocation holds at once on every API process."""
        T = schema.tokens
        now = self._store.clock()
        with self._store.engine.connect() as conn:
            row = conn.execute(
                sa.select(T.c.id, T.c.tenant, T.c.role, T.c.last_used_at).where(
                    T.c.token_sha256 == hash_token(token),
                    T.c.revoked_at.is_(None),
                    sa.or_(T.c.expires_at.is_(None), T.c.expires_at > now),
                )
            ).first()
        if row is None:
            return None
        if row.last_used_at is None or row.last_used_at < now - TOKEN_USE_RESOLUTION:
            with self._store._tx() as conn:  # at most one write a minute per token
                conn.execute(T.update().where(T.c.id == row.id).values(last_used_at=now))
        return Principal(token_id=row.id, tenant=row.tenant, role=row.role)

    def tenant_for_token(self, token: str) -> str | None:
        principal = self.principal_for_token(token)
        return principal.tenant if principal else None

    # -- audit log ------------------------------------------------------------------------

    def record(
        self,
        *,
        action: str,
        outcome: str,
        principal: Principal | None = None,
        target: str = "",
        client: str = "",
        details: dict[str, Any] | None = None,
    ) -> None:
        A = schema.audit_log
        with self._store._tx() as conn:
            conn.execute(
                A.insert().values(
                    at=self._store.clock(),
                    token_id=principal.token_id if principal else None,
                    tenant=principal.tenant if principal else None,
                    action=_limit(action, A.c.action.type.length),
                    target=_limit(target, A.c.target.type.length),
                    outcome=_limit(outcome, A.c.outcome.type.length),
                    client=_limit(client, A.c.client.type.length),
                    details=details,
                )
            )

    def audit(
        self,
        *,
        tenant: str | None = None,
        since: float | None = None,
        limit: int = 100,
        before_id: int | None = None,
    ) -> list[AuditEntry]:
        """Newest first; page with ``before_id`` (the smallest id of the previous page)."""
        A = schema.audit_log
        query = sa.select(A).order_by(A.c.id.desc()).limit(max(1, min(limit, MAX_AUDIT_PAGE)))
        if tenant is not None:
            query = query.where(A.c.tenant == tenant)
        if since is not None:
            query = query.where(A.c.at >= since)
        if before_id is not None:
            query = query.where(A.c.id < before_id)
        with self._store.engine.connect() as conn:
            return [AuditEntry(**r._mapping) for r in conn.execute(query)]


_TOKEN_COLUMNS = [schema.tokens.c[f.name] for f in dataclasses.fields(TokenInfo)]
