"""Bearer tokens: each names one tenant and a role (``Principal``).

A token is looked up in the store on every request, never cached: a revoked or expired token
is refused at once, on every API process. ``request.state.principal`` keeps who made the
request, for the audit log.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from zhuge.errors import AuthError, Forbidden
from zhuge.jobs.model import Principal
from zhuge.jobs.store import JobStore

_bearer = HTTPBearer(auto_error=False, description="A zhuge token (see ZHUGE_HOME/token).")


def get_store(request: Request) -> JobStore:
    return request.app.state.store


def current_principal(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    if credentials is None or not credentials.credentials:
        raise AuthError("missing bearer token: send 'Authorization: Bearer <token>'")
    principal = get_store(request).principal_for_token(credentials.credentials)
    if principal is None:
        raise AuthError("this token is unknown, revoked or expired")
    request.state.principal = principal
    return principal


def require_admin(principal: Annotated[Principal, Depends(current_principal)]) -> Principal:
    if not principal.is_admin:
        raise Forbidden("this needs an admin token")
    return principal


def current_tenant(principal: Annotated[Principal, Depends(current_principal)]) -> str:
    return principal.tenant


StoreDep = Annotated[JobStore, Depends(get_store)]
CurrentPrincipal = Annotated[Principal, Depends(current_principal)]
AdminPrincipal = Annotated[Principal, Depends(require_admin)]
CurrentTenant = Annotated[str, Depends(current_tenant)]
"""The caller's own tenant: where what it creates belongs."""
