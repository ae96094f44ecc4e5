"""The OpenAPI document's error responses: the ones ``zhuge.api.errors`` and ``limits`` send.

FastAPI documents a 422 of its own shape (``HTTPValidationError``) and no other error; every
error zhuge sends is an ``ErrorOut``. ``document_errors`` rewrites each declared error response
to ``ErrorOut`` and adds to every operation the refusals any request may get (413 and 422, from
the request limits) and a ``default`` for the rest (401, 403, 404, 409, 429, 503), so that a
client generated from the document, or a fuzzer checking answers against it, is told the truth.
It works on the finished document, so routes added later are covered without a word.
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import FastAPI

from zhuge.api.schemas import ErrorOut

METHODS = frozenset({"get", "put", "post", "delete", "options", "head", "patch", "trace"})
REFUSALS = {
    "413": "Request body over ZHUGE_MAX_BODY_BYTES, or a job's params over ZHUGE_MAX_PARAMS_BYTES.",
    "422": "Invalid request: details name each field. Also NUL characters, lone surrogates, "
    "JSON nested deeper than ZHUGE_MAX_JSON_DEPTH.",
}
OTHER_ERRORS = (
    "An error: 401 no valid token, 403 not allowed to this token's role, 404 not found, "
    "409 conflict, 429 over quota, 503 database unavailable."
)
FASTAPI_ERROR_SCHEMAS = ("HTTPValidationError", "ValidationError")


def document_errors(app: FastAPI) -> None:
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = with_error_bodies(build())
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def with_error_bodies(schema: dict[str, Any]) -> dict[str, Any]:
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    error = ErrorOut.model_json_schema(ref_template="#/components/schemas/{model}")
    components.update(error.pop("$defs", {}))
    components["ErrorOut"] = error
    content = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorOut"}}}
    for path_item in schema.get("paths", {}).values():
        for method, operation in path_item.items():
            if method not in METHODS:
                continue
            responses = operation.setdefault("responses", {})
            for code, response in responses.items():
                if code[0] in "45" or code == "default":
                    response["content"] = content
            for code, description in REFUSALS.items():
                responses.setdefault(code, {"description": description, "content": content})
            responses.setdefault("default", {"description": OTHER_ERRORS, "content": content})
    for name in FASTAPI_ERROR_SCHEMAS:  # HTTPValidationError first: it refers to the other
        if f'"#/components/schemas/{name}"' not in json.dumps(schema):
            components.pop(name, None)
    return schema
