"""The one place where errors become HTTP status codes.

Every error body has one shape: ``{"error": {"type": ..., "message": ..., "details": ...}}``.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from zhuge import errors
from zhuge.api.limits import scrub

log = logging.getLogger(__name__)

STATUS: list[tuple[type[errors.ZhugeError], int]] = [
    (errors.AuthError, 401),
    (errors.Forbidden, 403),
    (errors.NotFound, 404),
    (errors.Conflict, 409),
    (errors.QuotaExceeded, 429),
    (errors.PayloadTooLarge, 413),
    (errors.InvalidRequest, 422),
    (errors.MissingDependency, 501),
    (errors.StoreError, 503),
    (errors.ZhugeError, 500),
]


def status_for(exc: errors.ZhugeError) -> int:
    for cls, code in STATUS:
        if isinstance(exc, cls):
            return code
    return 500


def error_body(kind: str, message: str, details: object = None) -> dict[str, object]:
    """The error body. Its text is scrubbed of lone surrogates, which no UTF-8 can encode:
    what a caller sent (a kind's name, a key) is often echoed back."""
    return {"error": {"type": kind, "message": scrub(message), "details": scrub(details)}}


def install(app: FastAPI) -> None:
    @app.exception_handler(errors.ZhugeError)
    async def _zhuge(_: Request, exc: errors.ZhugeError) -> JSONResponse:
        code = status_for(exc)
        headers = {"WWW-Authenticate": "Bearer"} if code == 401 else None
        return JSONResponse(
            error_body(type(exc).__name__, exc.message, exc.details), code, headers=headers
        )

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        details = [
            {"loc": list(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type", "")}
            for e in exc.errors()
        ]
        fields = ", ".join(".".join(str(p) for p in d["loc"]) for d in details)
        return JSONResponse(
            error_body("InvalidRequest", f"invalid request: {fields}", details), 422
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse(
            error_body("HTTPError", str(exc.detail)), exc.status_code, headers=exc.headers
        )

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return JSONResponse(
            error_body("InternalError", "internal error; the server log has the details"), 500
        )
