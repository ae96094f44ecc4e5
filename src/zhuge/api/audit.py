"""The audit log's one writer: an ASGI middleware around every route.

It records every request that may change something (any method but GET, HEAD and OPTIONS),
every download (a route named ``*.download``, or a GET of a file under ``/artifacts/`` or of a
dataset's ``/content``), and every refusal (401, 403, 422) whatever its method, after the
response is sent:

- ``action``: the route's name (``job.submit``, ``token.revoke``; name new routes so), else
  ``unrouted``;
- ``target``: the route's path parameters as ``key=value``, or what the handler noted with
  ``note(request, target=...)`` (an id the request created);
- ``outcome``: ``ok``, or the error type of the body (``AuthError``, ``Forbidden``, ...);
- the token's id and tenant (none when it carried no valid token) and the client's address.

A failed audit write is logged and never fails the request it describes.
"""

from __future__ import annotations

import json
import logging
import re
from typing import Any

from fastapi import FastAPI, Request
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from zhuge.jobs.model import Principal

log = logging.getLogger(__name__)

READS = frozenset({"GET", "HEAD", "OPTIONS"})
REFUSALS = frozenset({401, 403, 422})
DOWNLOAD = re.compile(r"/artifacts/.|/datasets/[^/]+/content$")
QUERY_LIMIT = 500  # characters of a query string kept in an entry's details
ERROR_BODY_LIMIT = 64 * 1024  # bytes of an error response read for its type

_NOTE_KEY = "audit_note"


def note(request: Request, *, target: str | None = None, **details: Any) -> None:
    """Let a handler name what its request acted on (e.g. the id it created), and add
    details to its audit entry."""
    current = getattr(request.state, _NOTE_KEY, None) or {"target": None, "details": {}}
    if target is not None:
        current["target"] = target
    current["details"].update(details)
    setattr(request.state, _NOTE_KEY, current)


def printable(text: str) -> str:
    """``text`` with control characters and lone surrogates escaped (``\\x00``): an entry
    about a hostile request must still be storable, and readable."""
    return "".join(ch if ch.isprintable() else ascii(ch)[1:-1] for ch in text)


def is_audited(method: str, path: str, status: int, action: str) -> bool:
    return (
        method not in READS
        or status in REFUSALS
        or action.endswith(".download")
        or bool(DOWNLOAD.search(path))
    )


def outcome_of(status: int, body: bytes) -> str:
    if status < 400:
        return "ok"
    try:
        kind = json.loads(body)["error"]["type"]
    except (ValueError, KeyError, TypeError):
        kind = None
    return kind if isinstance(kind, str) and kind else f"HTTP{status}"


class AuditMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500
        error_body = bytearray()

        async def send_and_watch(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body" and status >= 400:
                room = ERROR_BODY_LIMIT - len(error_body)
                if room > 0:
                    error_body.extend(message.get("body", b"")[:room])
            await send(message)

        try:
            await self.app(scope, receive, send_and_watch)
        except Exception:
            await self._record(scope, 500, b'{"error": {"type": "InternalError"}}')
            raise
        await self._record(scope, status, bytes(error_body))

    async def _record(self, scope: Scope, status: int, body: bytes) -> None:
        method, path = scope["method"], scope["path"]
        action = getattr(scope.get("route"), "name", None) or "unrouted"
        if not is_audited(method, path, status, action):
            return
        try:
            entry = _entry(scope, action, status, body)
            tenancy = scope["app"].state.store.tenancy
            await run_in_threadpool(lambda: tenancy.record(**entry))
        except Exception:
            log.exception("could not write the audit entry of %s %s (%s)", method, path, status)


def _entry(scope: Scope, action: str, status: int, body: bytes) -> dict[str, Any]:
    state = scope.get("state") or {}
    noted = state.get(_NOTE_KEY) or {}
    params = scope.get("path_params") or {}
    target = noted.get("target") or " ".join(f"{k}={v}" for k, v in params.items())
    path = printable(scope["path"])
    principal = state.get("principal")
    client = scope.get("client")
    details: dict[str, Any] = {"method": scope["method"], "path": path, "status": status}
    query = scope.get("query_string", b"").decode("latin-1")
    if query:
        details["query"] = printable(query[:QUERY_LIMIT])
    return {
        "action": action,
        "outcome": outcome_of(status, body),
        "principal": principal if isinstance(principal, Principal) else None,
        "target": printable(target),
        "client": printable(client[0]) if client else "",
        "details": details | noted.get("details", {}),
    }


def install(app: FastAPI) -> None:
    """Add last, so it is the outermost middleware and sees what the others refuse."""
    app.add_middleware(AuditMiddleware)
