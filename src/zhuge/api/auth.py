"""Bearer tokens: each names one tenant."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from zhuge.errors import AuthError
from zhuge.jobs.store import JobStore

_bearer = HTTPBearer(auto_error=False, description="A zhuge token (see ZHUGE_HOME/token).")


def get_store(request: Request) -> JobStore:
    return request.app.state.store


def current_tenant(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> str:
    if credentials is None or not credentials.credentials:
        raise AuthError("missing bearer token: send 'Authorization: Bearer <token>'")
    cache: dict[str, str] = request.app.state.token_cache
    token = credentials.credentials
    tenant = cache.get(token)
    if tenant is None:
        tenant = get_store(request).tenant_for_token(token)
        if tenant is None:
            raise AuthError("this token does not belong to any tenant")
        if len(cache) < 10_000:  # tokens are never revoked in place yet; bound the cache
            cache[token] = tenant
    return tenant


StoreDep = Annotated[JobStore, Depends(get_store)]
CurrentTenant = Annotated[str, Depends(current_tenant)]
