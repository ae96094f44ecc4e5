"""OpenAPI-driven fuzzing (schemathesis) of every operation the API documents, in process
against ``create_app`` over a real store, as an admin so that requests reach the handlers.

- Each operation, with cases that fit its documented inputs (positive) and cases that break
  them (negative): no answer is a server error, and each has a status code, content type and
  body that the operation documents.
- Sequences of calls chained by the links schemathesis infers from the document (a job's
  ``id`` from POST /v1/jobs into /v1/jobs/{job_id}/..., a token's from GET /v1/tokens into
  its revoke), with the same checks.

It covers whatever routes exist when it runs: a new route is fuzzed without a word here.
Bounded, and seeded per operation and database (not random), so CI cannot flake.

Nothing is dialled: fuzzing may register a connection to any URL it makes up, and a
database connection is checked by connecting to it, so while it runs any connection to a
host other than this machine is refused before it leaves the process (``no_dialling``).
"""

from __future__ import annotations

import ipaddress
import socket
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import hypothesis
import psycopg
import pytest
import schemathesis
from fastapi import FastAPI
from fastapi.testclient import TestClient
from hypothesis.errors import Unsatisfiable
from psycopg.conninfo import conninfo_to_dict
from schemathesis import GenerationMode, checks

from tests.conftest import empty_store, free_port
from zhuge.api.app import create_app
from zhuge.config import Settings
from zhuge.jobs.kinds import all_kinds
from zhuge.jobs.store import JobStore

EXAMPLES = {GenerationMode.POSITIVE: 15, GenerationMode.NEGATIVE: 10}  # per operation
SCENARIOS, STEPS = 10, 6  # call sequences, calls in each

SETTINGS = hypothesis.settings(
    deadline=None,
    database=None,  # nothing carried between runs: each run makes the same cases
    suppress_health_check=list(hypothesis.HealthCheck),
)
CHECKS = [
    checks.not_a_server_error,
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_schema_conformance,
]


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request, tmp_path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'zhuge.db'}"
    return empty_store(request.getfixturevalue("postgres_url"))


def _is_local(host: str | None) -> bool:
    if not host or host.startswith("/") or host == "localhost":
        return True  # a Unix socket, or this machine
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # any other name: even resolving it asks the outside


@pytest.fixture
def no_dialling(monkeypatch) -> list[str]:
    """Refuse, before it leaves the process, any connection to a host that is not this
    machine: through libpq (PostgreSQL, which does not use Python's sockets) and through
    Python's sockets (everything else). Returns what was refused."""
    refused: list[str] = []
    pg_connect = psycopg.Connection.connect.__func__

    def local_pg(cls: Any, conninfo: str = "", **kwargs: Any) -> Any:
        params = conninfo_to_dict(conninfo, **kwargs)
        hosts = str(params.get("hostaddr") or params.get("host") or "").split(",")
        if not all(_is_local(h) for h in hosts):
            refused.append(f"PostgreSQL at {params.get('host')!r}")
            raise psycopg.OperationalError("dialling is off while fuzzing")
        return pg_connect(cls, conninfo, **kwargs)

    getaddrinfo = socket.getaddrinfo

    def local_lookup(host: Any, *args: Any, **kwargs: Any) -> Any:
        name = host.decode() if isinstance(host, bytes) else host
        if not _is_local(name):
            refused.append(f"lookup of {name!r}")
            raise socket.gaierror(socket.EAI_NONAME, "dialling is off while fuzzing")
        return getaddrinfo(host, *args, **kwargs)

    sock_connect = socket.socket.connect

    def local_connect(self: socket.socket, address: Any) -> Any:
        if self.family in (socket.AF_INET, socket.AF_INET6) and not _is_local(address[0]):
            refused.append(f"socket to {address[0]!r}")
            raise ConnectionRefusedError("dialling is off while fuzzing")
        return sock_connect(self, address)

    monkeypatch.setattr(psycopg.Connection, "connect", classmethod(local_pg))
    monkeypatch.setattr(psycopg, "connect", psycopg.Connection.connect)
    monkeypatch.setattr(socket, "getaddrinfo", local_lookup)
    monkeypatch.setattr(socket.socket, "connect", local_connect)
    return refused


def test_no_dialling_refuses_other_hosts_and_lets_this_one_through(no_dialling):
    with pytest.raises(psycopg.OperationalError, match="dialling is off"):
        psycopg.connect("postgresql://user:pw@db.example.com/x", connect_timeout=1)
    with pytest.raises(psycopg.OperationalError, match="dialling is off"):
        psycopg.connect("host=10.1.2.3 dbname=x", connect_timeout=1)
    with pytest.raises(OSError, match="dialling is off"):
        socket.create_connection(("example.com", 443), timeout=1)
    with pytest.raises(OSError, match="dialling is off"):
        socket.create_connection(("192.0.2.1", 443), timeout=1)
    assert len(no_dialling) == 4
    with pytest.raises(ConnectionRefusedError) as refused:  # by this machine: nothing listens
        socket.create_connection(("127.0.0.1", free_port()), timeout=1)
    assert "dialling is off" not in str(refused.value) and len(no_dialling) == 4


@dataclass
class Fuzzed:
    app: FastAPI
    store: JobStore
    headers: dict[str, str]
    schema: Any  # schemathesis' OpenApiSchema
    db: str

    def admin_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.store.issue_token('default', role='admin')}"}


@pytest.fixture
def fuzzed(request, db_url, tmp_path, no_dialling) -> Iterator[Fuzzed]:
    all_kinds()  # the registry imports the ML libraries: not while a request waits for it
    store = JobStore.open(db_url)
    app = create_app(Settings(home=tmp_path / "home", db_url=db_url), store=store)
    with TestClient(app):  # the app's start-up and shut-down, as under a server
        schema = schemathesis.openapi.from_asgi("/openapi.json", app)
        target = Fuzzed(app, store, {}, schema, request.node.callspec.params["db_url"])
        target.headers = target.admin_headers()
        yield target
    store.dispose()


def fuzz(target: Fuzzed, operation: Any, mode: GenerationMode) -> str | None:
    """What went wrong calling ``operation`` with the cases it makes in ``mode``, or None."""

    @hypothesis.seed(zlib.crc32(f"{target.db} {operation.label} {mode.value}".encode()))
    @hypothesis.settings(SETTINGS, max_examples=EXAMPLES[mode])
    @hypothesis.given(case=operation.as_strategy(generation_mode=mode))
    def calls(case: schemathesis.Case) -> None:
        case.call_and_validate(headers=target.headers, checks=CHECKS)

    try:
        calls()
    except Unsatisfiable:
        return None  # nothing to break: an operation with no inputs has no negative cases
    except Exception as exc:  # schemathesis' FailureGroup, or what the app raised
        return f"{operation.label} ({mode.value}): {exc}"
    return None


def test_every_operation_answers_as_documented(fuzzed):
    operations = [result.ok() for result in fuzzed.schema.get_all_operations()]
    assert {"POST /v1/jobs", "GET /v1/jobs/{job_id}"} <= {op.label for op in operations}
    failures = [
        failure
        for operation in operations
        for mode in EXAMPLES
        if (failure := fuzz(fuzzed, operation, mode)) is not None
    ]
    assert not failures, "\n\n".join(failures)
    listing = TestClient(fuzzed.app).get("/v1/jobs", headers=fuzzed.headers)
    assert listing.status_code == 200  # whatever was stored can be read back


def test_call_sequences_answer_as_documented(fuzzed):
    calls: list[str] = []

    class Scenarios(fuzzed.schema.as_state_machine()):  # type: ignore[misc]
        def setup(self) -> None:
            # Its own admin token: a sequence may revoke the one it found in GET /v1/tokens.
            self.headers = fuzzed.admin_headers()

        def get_call_kwargs(self, case: schemathesis.Case) -> dict[str, Any]:
            calls.append(case.operation.label)
            return {"headers": self.headers}

        def validate_response(self, response: Any, case: schemathesis.Case, *_: Any, **__: Any):
            case.validate_response(response, checks=CHECKS, headers=self.headers)

    assert "POST /v1/jobs -> 201" in Scenarios.bundles  # a job's id feeds the calls on it
    Scenarios.run(
        settings=hypothesis.settings(
            SETTINGS, max_examples=SCENARIOS, stateful_step_count=STEPS, derandomize=True
        )
    )
    assert len(calls) > SCENARIOS  # sequences, not single calls
