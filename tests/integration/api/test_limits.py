"""Request limits (``zhuge.api.limits``): what used to answer 500, be stored, or be read whole
is refused with 413 or 422 and the usual error body, stores nothing, and leaves the tenant's
listing working. Over a real store on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from fastapi.testclient import TestClient

from tests.conftest import empty_store
from zhuge.api.app import create_app
from zhuge.api.errors import error_body
from zhuge.config import MiB, Settings
from zhuge.jobs.store import JobStore

JSON = {"Content-Type": "application/json"}


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request, tmp_path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'zhuge.db'}"
    return empty_store(request.getfixturevalue("postgres_url"))


@contextmanager
def make_api(db_url: str, tmp_path, **limits: int) -> Iterator[TestClient]:
    """A TestClient as the platform's admin, over an app with these limits."""
    store = JobStore.open(db_url)
    token = store.issue_token("default", role="admin")
    app = create_app(Settings(home=tmp_path, db_url=db_url, **limits), store=store)
    with TestClient(app, raise_server_exceptions=False) as http:
        http.headers["Authorization"] = f"Bearer {token}"
        http.store = store
        yield http
    store.dispose()


@pytest.fixture
def api(db_url, tmp_path):
    with make_api(db_url, tmp_path) as http:
        yield http


def nothing_stored(api: TestClient) -> bool:
    listing = api.get("/v1/jobs")
    assert listing.status_code == 200, listing.text
    return listing.json()["jobs"] == []


def refusal(response, status: int, kind: str) -> dict:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["type"] == kind and error["message"]
    return error


@pytest.mark.parametrize(
    ("path", "raw", "loc", "type_"),
    [
        ("/v1/jobs", r'{"kind": "echo", "params": {"s": "\ud800"}}', ["body", "params", "s"],
         "string_surrogate"),
        ("/v1/jobs", r'{"kind": "echo", "params": {"\udfff": 1}}', ["body", "params", "\ufffd"],
         "key_string_surrogate"),
        ("/v1/jobs", r'{"kind": "\ud800"}', ["body", "kind"], "string_surrogate"),
        ("/v1/jobs", r'{"kind": "echo", "params": {"s": "a\u0000b"}}', ["body", "params", "s"],
         "string_nul"),
        ("/v1/jobs", r'{"kind": "echo", "params": {"a\u0000": 1}}', ["body", "params", "a\x00"],
         "key_string_nul"),
        ("/v1/jobs", '{"kind": "echo", "params": {"x": NaN}}', ["body", "params", "x"],
         "number_not_finite"),
        ("/v1/jobs", '{"kind": "echo", "params": {"x": 1e999}}', ["body", "params", "x"],
         "number_not_finite"),
        ("/v1/jobs/batch", r'{"jobs": [{"kind": "echo"}, {"kind": "echo", "params": {"s": "\ud83d"}}]}',
         ["body", "jobs", 1, "params", "s"], "string_surrogate"),
        ("/v1/jobs/batch", r'{"jobs": [{"kind": "echo", "idempotency_key": "k\u0000"}]}',
         ["body", "jobs", 0, "idempotency_key"], "string_nul"),
    ],
)  # fmt: skip
def test_unencodable_text_is_422_naming_where_and_stores_nothing(api, path, raw, loc, type_):
    # Raw text: httpx would refuse to encode a lone surrogate itself.
    error = refusal(api.post(path, content=raw.encode(), headers=JSON), 422, "InvalidRequest")
    assert {"loc": loc, "type": type_} in [
        {"loc": d["loc"], "type": d["type"]} for d in error["details"]
    ]
    assert nothing_stored(api)


def test_a_surrogate_pair_is_one_character_and_accepted(api):
    r = api.post("/v1/jobs", content=rb'{"kind": "echo", "params": {"s": "\ud83d\ude00"}}',
                 headers=JSON)  # fmt: skip
    assert r.status_code == 201 and r.json()["params"]["s"] == "\U0001f600"


@pytest.mark.parametrize(
    ("url", "headers", "loc"),
    [
        ("/v1/jobs?kind=%00", {}, ["query"]),
        ("/v1/jobs?kind=echo%00x&limit=5", {}, ["query"]),
        ("/v1/status?x=%00", {}, ["query"]),
    ],
)
def test_nul_in_the_query_string_is_422(api, url, headers, loc):
    error = refusal(api.get(url, headers=headers), 422, "InvalidRequest")
    assert error["details"][0]["loc"] == loc


def test_nul_in_the_idempotency_key_is_422_and_stores_nothing(api):
    r = api.post("/v1/jobs", json={"kind": "echo"}, headers={"Idempotency-Key": "k\x00"})
    error = refusal(r, 422, "InvalidRequest")
    assert error["details"][0]["loc"] == ["header", "idempotency-key"]
    assert nothing_stored(api)


@pytest.mark.parametrize("depth", [65, 900, 100_000])
def test_deep_nesting_is_422_and_stores_nothing(api, depth):
    params = '{"a": ' + "[" * depth + "]" * depth + "}"
    r = api.post("/v1/jobs", content=f'{{"kind": "echo", "params": {params}}}', headers=JSON)
    error = refusal(r, 422, "InvalidRequest")
    assert error["details"][0]["type"] == "json_too_deep"
    assert nothing_stored(api)


def test_nesting_within_the_limit_is_accepted(api):
    depth = 60  # the body's own two levels plus 60 plus the params object: 63 <= 64
    params = '{"a": ' + "[" * depth + "]" * depth + "}"
    r = api.post("/v1/jobs", content=f'{{"kind": "echo", "params": {params}}}', headers=JSON)
    assert r.status_code == 201, r.text


def test_twenty_megabytes_of_params_are_413_and_store_nothing(api):
    body = json.dumps({"kind": "echo", "params": {"blob": "x" * 20_000_000}})
    error = refusal(api.post("/v1/jobs", content=body, headers=JSON), 413, "PayloadTooLarge")
    assert "ZHUGE_MAX_BODY_BYTES" in error["message"]
    assert nothing_stored(api)


def test_params_over_their_limit_in_a_body_within_its_own_are_413(api):
    blob = "é" * (MiB // 2)  # 1 MiB of UTF-8 as canonical JSON; 6 MiB as \u escapes
    body = json.dumps({"kind": "echo", "params": {"blob": blob}})  # ASCII: \u00e9 each
    error = refusal(api.post("/v1/jobs", content=body, headers=JSON), 413, "PayloadTooLarge")
    assert error["details"][0]["loc"] == ["body", "params"]
    assert "ZHUGE_MAX_PARAMS_BYTES" in error["message"]
    jobs = [{"kind": "echo"}, {"kind": "echo", "params": {"blob": blob}}]
    r = api.post("/v1/jobs/batch", json={"jobs": jobs})
    error = refusal(r, 413, "PayloadTooLarge")
    assert error["details"][0]["loc"] == ["body", "jobs", 1, "params"]
    assert nothing_stored(api)


def test_a_batch_of_a_thousand_jobs_with_some_params_still_fits(api):
    jobs = [{"kind": "echo", "params": {"n": i, "pad": "x" * 4000}} for i in range(1000)]
    r = api.post("/v1/jobs/batch", json={"jobs": jobs})
    assert r.status_code == 201, r.text[:300]
    assert len(r.json()["jobs"]) == 1000


def test_a_row_stored_before_the_limits_no_longer_breaks_the_listing(api):
    """What a poisoned tenant had: a job whose params (or a kind's result) hold a lone
    surrogate. It is read back with U+FFFD in its place."""
    job, _ = api.store.submit(tenant="default", kind="echo", params={"s": "a\ud800b"})
    listing = api.get("/v1/jobs")
    assert listing.status_code == 200
    assert listing.json()["jobs"][0]["params"] == {"s": "a\ufffdb"}
    assert api.get(f"/v1/jobs/{job.id}").json()["params"] == {"s": "a\ufffdb"}


def test_an_unexpected_exception_is_a_logged_500_without_a_traceback(api, caplog):
    def boom() -> None:
        raise RuntimeError("secret detail of the server")

    api.app.add_api_route("/v1/boom", boom)
    with caplog.at_level(logging.ERROR, logger="zhuge.api.errors"):
        r = api.get("/v1/boom")
    error = refusal(r, 500, "InternalError")
    assert "secret" not in r.text and "Traceback" not in r.text and error["details"] is None
    assert "secret detail of the server" in caplog.text


def test_error_bodies_are_encodable_whatever_they_echo():
    body = error_body("X", "bad \ud800", [{"loc": ["body", "\udc80"], "msg": "m", "type": "t"}])
    text = json.dumps(body, ensure_ascii=False).encode("utf-8")  # raises if a surrogate is left
    assert b"\xef\xbf\xbd" in text


# The body limit, seen from the client's side of the ASGI interface: how much was read.


def call_asgi(app, *, headers: list[tuple[bytes, bytes]], chunks: Iterator[bytes]):
    """POST /v1/jobs with the body as ``chunks``; ``(status, body, chunks read)``."""
    read = 0
    sent: list[dict] = []

    async def receive() -> dict:
        nonlocal read
        chunk = next(chunks, None)
        if chunk is None:
            return {"type": "http.request", "body": b"", "more_body": False}
        read += 1
        return {"type": "http.request", "body": chunk, "more_body": True}

    async def send(message: dict) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/v1/jobs",
        "raw_path": b"/v1/jobs",
        "root_path": "",
        "query_string": b"",
        "headers": [(b"host", b"testserver"), (b"content-type", b"application/json"), *headers],
        "client": ("127.0.0.1", 50000),
        "server": ("testserver", 80),
        "state": {},
    }
    asyncio.run(app(scope, receive, send))
    status = next(m["status"] for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return status, json.loads(body), read


def endless(chunk: bytes, limit: int) -> Iterator[bytes]:
    for _ in range(limit):
        yield chunk


def test_a_body_over_the_limit_is_refused_while_it_streams(db_url, tmp_path):
    with make_api(db_url, tmp_path, max_body_bytes=1 * MiB) as api:
        chunks = endless(b" " * 65536, 100_000)  # would be 6.5 GB
        status, body, read = call_asgi(api.app, headers=[], chunks=chunks)
        assert status == 413 and body["error"]["type"] == "PayloadTooLarge"
        assert read == 17  # 16 chunks make 1 MiB; the 17th is over: nothing more is read
        assert next(chunks, None) is not None  # the generator was far from exhausted
        assert nothing_stored(api)


def test_a_declared_content_length_over_the_limit_is_refused_before_reading(db_url, tmp_path):
    with make_api(db_url, tmp_path) as api:
        chunks = endless(b" " * 65536, 10)
        headers = [(b"content-length", str(20 * 1024**3).encode())]
        status, body, read = call_asgi(api.app, headers=headers, chunks=chunks)
        assert status == 413 and "ZHUGE_MAX_BODY_BYTES" in body["error"]["message"]
        assert read == 0
        assert nothing_stored(api)


def test_uploads_are_not_held_to_the_body_limit(db_url, tmp_path):
    """Dataset uploads stream to their route, which applies ZHUGE_MAX_UPLOAD_BYTES."""
    with make_api(db_url, tmp_path, max_body_bytes=1024) as api:
        csv = b"a,b\n" + b"1,2\n" * 1000
        r = api.post("/v1/datasets?name=limits", content=csv,
                     headers={"Content-Type": "application/octet-stream"})  # fmt: skip
        assert r.status_code != 413 and "ZHUGE_MAX_BODY_BYTES" not in r.text
    assert Settings().max_upload_bytes == 10 * 1024**3 > Settings().max_body_bytes


def test_the_limits_are_settings():
    env = {
        "ZHUGE_MAX_BODY_BYTES": "2048",
        "ZHUGE_MAX_PARAMS_BYTES": "1024",
        "ZHUGE_MAX_JSON_DEPTH": "8",
    }
    s = Settings.from_env(env)
    assert (s.max_body_bytes, s.max_params_bytes, s.max_json_depth) == (2048, 1024, 8)
    d = Settings.from_env({})
    assert (d.max_body_bytes, d.max_params_bytes, d.max_json_depth) == (16 * MiB, MiB, 64)


def test_lower_limits_hold(db_url, tmp_path):
    with make_api(db_url, tmp_path, max_params_bytes=100, max_json_depth=4) as api:
        assert (
            api.post("/v1/jobs", json={"kind": "echo", "params": {"s": "x" * 200}}).status_code
            == 413
        )
        deep = {"kind": "echo", "params": {"a": [[[[1]]]]}}
        assert api.post("/v1/jobs", json=deep).status_code == 422
        assert (
            api.post("/v1/jobs", json={"kind": "echo", "params": {"a": [[1]]}}).status_code == 201
        )
