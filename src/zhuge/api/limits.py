"""Request limits: what the API refuses before a handler, a parser or the database sees it.

Every request passes ``RequestLimits`` (an ASGI middleware) first:

- its path, query string and headers carry no NUL (PostgreSQL refuses NUL in text, so a
  ``?kind=%00`` would otherwise fail in the driver), nor its path a lone surrogate (the
  query string and headers cannot hold one: they are decoded with replacement, and Latin-1);
- its body is at most ``max_body_bytes``: a ``Content-Length`` over the limit is refused
  before a byte is read, and a body without one is counted as it arrives and refused at the
  first chunk past the limit, never read whole;
- a JSON body nests at most ``max_json_depth`` deep, and none of its strings or keys holds a
  lone surrogate (``"\\ud800"``: valid JSON text, but no UTF-8 can encode it, so it fails
  the response, the driver or the next listing) or a NUL, and none of its numbers is NaN or
  infinite (Python's parser accepts them; JSON has none).

Uploads (paths under ``UPLOAD_PREFIXES``) stream through untouched: their route applies their
own limit, ``max_upload_bytes``, the same way (Content-Length first, then counting).

A job's ``params`` are limited on their own by ``check_params_limits`` (the routes that
submit call it for each job, before anything is stored): ``max_params_bytes`` of canonical
JSON. (``zhuge.jobs.inputs.check_params`` is another check: what params may name as data.)

Refusals have the usual error body: 413 ``PayloadTooLarge``, 422 ``InvalidRequest`` with
``details`` naming where (``{"loc": ["body", "params", "s"], "msg": ..., "type": ...}``).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator
from typing import Any
from urllib.parse import unquote_to_bytes

import anyio.to_thread
from fastapi import FastAPI
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from zhuge.config import Settings
from zhuge.errors import InvalidRequest, PayloadTooLarge, ZhugeError

UPLOAD_PREFIXES = ("/v1/datasets",)
"""Paths whose bodies are uploads: streamed to their route, which applies max_upload_bytes."""

PARSE_IN_THREAD = 256 * 1024  # bytes: a JSON body this big is parsed off the event loop
MAX_PROBLEMS = 10  # problems listed in one refusal's details

_SURROGATE = re.compile("[\ud800-\udfff]")

Loc = tuple[str | int, ...]


def text_problem(text: str) -> tuple[str, str] | None:
    """``(type, msg)`` if ``text`` cannot be stored and sent back as it is, else None."""
    if "\x00" in text:
        return "string_nul", "contains a NUL character (\\u0000)"
    if _SURROGATE.search(text):
        return "string_surrogate", "contains a lone surrogate (no UTF-8 can encode it)"
    return None


def scrub(value: Any) -> Any:
    """``value`` with every lone surrogate in its strings and keys replaced by U+FFFD: for
    text on its way out (an error's details, a row written before these limits held)."""
    if isinstance(value, str):
        return _SURROGATE.sub("\ufffd", value)
    if isinstance(value, dict):
        return {scrub(k): scrub(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [scrub(v) for v in value]
    return value


def json_problems(value: Any, *, max_depth: int, loc: Loc = ()) -> Iterator[dict[str, Any]]:
    """Each problem of a parsed JSON value, as a ``{"loc", "msg", "type"}`` detail: nesting
    deeper than ``max_depth`` containers, a NUL or lone surrogate in a string or key, a
    number that is not finite. Walks with its own stack, so no depth makes it recurse."""
    stack: list[tuple[Any, int, Loc]] = [(value, 0, loc)]
    while stack:
        item, depth, where = stack.pop()
        if isinstance(item, dict | list):
            if depth >= max_depth:
                yield _detail(where, "json_too_deep", f"nested deeper than {max_depth} levels")
                continue
            if isinstance(item, dict):
                for key, child in item.items():
                    if (problem := text_problem(key)) is not None:
                        yield _detail((*where, key), f"key_{problem[0]}", f"key {problem[1]}")
                    stack.append((child, depth + 1, (*where, key)))
            else:
                stack.extend((child, depth + 1, (*where, i)) for i, child in enumerate(item))
        elif isinstance(item, str):
            if (problem := text_problem(item)) is not None:
                yield _detail(where, *problem)
        elif isinstance(item, float) and not math.isfinite(item):
            yield _detail(where, "number_not_finite", "is not a finite number")


def check_json(value: Any, *, max_depth: int, loc: Loc = ("body",)) -> None:
    """Raise InvalidRequest listing ``json_problems`` of ``value``, if it has any."""
    problems = []
    for problem in json_problems(value, max_depth=max_depth, loc=loc):
        problems.append(problem)
        if len(problems) == MAX_PROBLEMS:
            break
    if problems:
        where = ", ".join(".".join(str(p) for p in d["loc"]) for d in problems)
        raise InvalidRequest(f"unacceptable JSON at {where}", details=problems)


def canonical_size(value: Any) -> int:
    """Bytes of ``value`` as canonical JSON (sorted keys, no spaces, UTF-8): its size
    however the client formatted it."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return len(text.encode("utf-8", "surrogatepass"))


def check_params_limits(params: Any, settings: Settings, *, loc: Loc = ("body", "params")) -> None:
    """A job's params: acceptable JSON (``check_json``) of at most ``max_params_bytes``
    as canonical JSON; raises InvalidRequest or PayloadTooLarge."""
    check_json(params, max_depth=settings.max_json_depth, loc=loc)
    size = canonical_size(params)
    if size > settings.max_params_bytes:
        where = ".".join(str(p) for p in loc)
        raise PayloadTooLarge(
            f"{where} is {size:,} bytes of JSON, over the limit of "
            f"{settings.max_params_bytes:,} (ZHUGE_MAX_PARAMS_BYTES); pass large inputs "
            "as a dataset or URL instead",
            details=[
                _detail(loc, "params_too_large", f"{size} bytes > {settings.max_params_bytes}")
            ],
        )


def _detail(loc: Loc, kind: str, msg: str) -> dict[str, Any]:
    return {"loc": scrub(list(loc)), "msg": msg, "type": kind}


def _too_large(what: str, limit: int, setting: str) -> PayloadTooLarge:
    return PayloadTooLarge(
        f"{what} is over the limit of {limit:,} bytes ({setting})",
        details=[{"loc": ["body"], "msg": f"more than {limit} bytes", "type": "body_too_large"}],
    )


def _envelope_problem(scope: Scope) -> InvalidRequest | None:
    """NUL or lone surrogate in the path, query string or a header."""
    details = []
    if (problem := text_problem(scope["path"])) is not None:
        details.append(_detail(("path",), *problem))
    query = unquote_to_bytes(scope.get("query_string", b"").replace(b"+", b" "))
    if b"\x00" in query:
        details.append(_detail(("query",), "string_nul", "contains a NUL character (%00)"))
    for name, value in scope.get("headers", []):
        if b"\x00" in name or b"\x00" in value:
            header = name.replace(b"\x00", b"").decode("latin-1")
            details.append(_detail(("header", header), "string_nul", "contains a NUL character"))
    if not details:
        return None
    where = ", ".join(".".join(str(p) for p in d["loc"]) for d in details)
    return InvalidRequest(f"unacceptable characters in {where}", details=details)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", []):
        if name.lower() == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


def _is_upload(path: str) -> bool:
    return any(path == p or path.startswith(f"{p}/") for p in UPLOAD_PREFIXES)


def _is_json(scope: Scope) -> bool:
    """Whether FastAPI will parse this body as JSON: no Content-Type, or application/json
    or application/*+json (the rule of ``fastapi.routing``)."""
    for name, value in scope.get("headers", []):
        if name.lower() == b"content-type":
            media = value.split(b";", 1)[0].strip().lower()
            return media == b"application/json" or (
                media.startswith(b"application/") and media.endswith(b"+json")
            )
    return True


def _json_problem(body: bytes, max_depth: int) -> InvalidRequest | None:
    try:
        value = json.loads(body)
    except json.JSONDecodeError:
        return None  # malformed JSON: FastAPI answers it (422 json_invalid) where a body is due
    except RecursionError:
        return InvalidRequest(
            f"the JSON body is nested deeper than {max_depth} levels",
            details=[_detail(("body",), "json_too_deep", f"nested deeper than {max_depth}")],
        )
    except ValueError as exc:  # not UTF-8/16/32, or an integer of over 4,300 digits
        return InvalidRequest(
            f"the body is not acceptable JSON: {exc}",
            details=[_detail(("body",), "json_invalid", str(exc))],
        )
    try:
        check_json(value, max_depth=max_depth)
    except InvalidRequest as exc:
        return exc
    return None


async def refuse(exc: ZhugeError, scope: Scope, receive: Receive, send: Send) -> None:
    """Answer with ``exc``'s status and error body, as ``zhuge.api.errors`` would."""
    from zhuge.api.errors import error_body, status_for  # it imports scrub from here

    response = JSONResponse(
        error_body(type(exc).__name__, exc.message, exc.details), status_for(exc)
    )
    await response(scope, receive, send)


class RequestLimits:
    """ASGI middleware applying the limits of this module's docstring to every request."""

    def __init__(self, app: ASGIApp, *, settings: Settings) -> None:
        self.app = app
        self.max_body_bytes = settings.max_body_bytes
        self.max_json_depth = settings.max_json_depth

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if (problem := _envelope_problem(scope)) is not None:
            await refuse(problem, scope, receive, send)
            return
        if _is_upload(scope["path"]):
            await self.app(scope, receive, send)  # streamed; its route applies the limit
            return
        declared = _content_length(scope)
        if declared is not None and declared > self.max_body_bytes:
            await refuse(self._body_too_large(), scope, receive, send)
            return
        body = bytearray()
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return  # the client left; nobody to answer
            body.extend(message.get("body", b""))
            if len(body) > self.max_body_bytes:
                await refuse(self._body_too_large(), scope, receive, send)
                return
            if not message.get("more_body", False):
                break
        if body and _is_json(scope):
            if len(body) > PARSE_IN_THREAD:
                problem = await anyio.to_thread.run_sync(
                    _json_problem, bytes(body), self.max_json_depth
                )
            else:
                problem = _json_problem(bytes(body), self.max_json_depth)
            if problem is not None:
                await refuse(problem, scope, receive, send)
                return
        await self.app(scope, _replay(bytes(body), receive), send)

    def _body_too_large(self) -> PayloadTooLarge:
        return _too_large("the request body", self.max_body_bytes, "ZHUGE_MAX_BODY_BYTES")


def _replay(body: bytes, receive: Receive) -> Receive:
    """A receive that gives the buffered body once, then whatever the client sends next (a
    disconnect)."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if sent:
            return await receive()
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return replay


def install(app: FastAPI, settings: Settings) -> None:
    app.add_middleware(RequestLimits, settings=settings)
