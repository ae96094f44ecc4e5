"""Tenants, roles, tokens, the audit log and the metrics token, through the HTTP API, the SDK
and the CLI, over a real store on SQLite and PostgreSQL. No Dask: the API only writes rows."""

from __future__ import annotations

import hashlib
import json
import logging
import time

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from tests.conftest import FakeClock, empty_store
from zhuge.api.app import create_app
from zhuge.cli import admin as cli_admin
from zhuge.cli import app as cli_app
from zhuge.client import Client
from zhuge.config import Settings
from zhuge.jobs.store import JobStore


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request, tmp_path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'zhuge.db'}"
    return empty_store(request.getfixturevalue("postgres_url"))


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def store(db_url, clock):
    s = JobStore.open(db_url, clock=clock)
    yield s
    s.dispose()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


class Api:
    """A TestClient acting as the platform's admin (as ``zhuge up`` writes it), with helpers
    to act as other tokens."""

    def __init__(self, http: TestClient, store: JobStore, admin: str) -> None:
        self.http, self.store, self.admin = http, store, admin

    def call(self, method: str, path: str, token: str | None = None, **kw):
        return self.http.request(method, path, headers=bearer(token or self.admin), **kw)

    def member(self, tenant: str, **kw) -> str:
        if tenant not in {t.name for t in self.store.tenancy.tenants()}:
            assert self.call("POST", "/v1/tenants", json={"name": tenant}).status_code == 201
        r = self.call("POST", "/v1/tokens", json={"tenant": tenant, **kw})
        assert r.status_code == 201, r.text
        return r.json()["token"]

    def audit(self, **params) -> list[dict]:
        r = self.call("GET", "/v1/audit", params=params)
        assert r.status_code == 200, r.text
        return r.json()["entries"]


def make_app(store: JobStore, tmp_path, **settings):
    return create_app(
        Settings(home=tmp_path, db_url=str(store.engine.url), **settings), store=store
    )


@pytest.fixture
def api(store, tmp_path):
    admin = store.issue_token("default", "admin token written by zhuge up", role="admin")
    with TestClient(make_app(store, tmp_path)) as http:
        yield Api(http, store, admin)


# -- tenants ------------------------------------------------------------------------------


def test_admin_creates_tenants_and_refuses_duplicates_and_bad_names_changing_nothing(api):
    r = api.call("POST", "/v1/tenants", json={"name": "acme"})
    assert r.status_code == 201 and r.json()["name"] == "acme"
    dup = api.call("POST", "/v1/tenants", json={"name": "acme"})
    assert dup.status_code == 409 and "already exists" in dup.json()["error"]["message"]
    for bad in ["Acme", "1acme", "a" * 65, "ac me", "", "acme/../x", "ácme"]:
        r = api.call("POST", "/v1/tenants", json={"name": bad})
        assert r.status_code == 422, bad
        assert r.json()["error"]["type"] == "InvalidRequest"
    names = [t["name"] for t in api.call("GET", "/v1/tenants").json()]
    assert names == ["acme", "default"]


# -- tokens -------------------------------------------------------------------------------


def test_token_is_shown_once_then_only_by_id(api):
    api.call("POST", "/v1/tenants", json={"name": "acme"})
    r = api.call("POST", "/v1/tokens", json={"tenant": "acme", "name": "laptop"})
    assert r.status_code == 201
    created = r.json()
    token = created["token"]
    assert token.startswith("zt_") and created["id"].startswith("tok_")
    assert (created["tenant"], created["role"], created["name"]) == ("acme", "member", "laptop")

    listing = api.call("GET", "/v1/tokens")
    assert token not in listing.text
    mine = [t for t in listing.json() if t["id"] == created["id"]]
    assert len(mine) == 1 and "token" not in mine[0]
    assert mine[0]["state"] == "active" and mine[0]["name"] == "laptop"
    with api.store.engine.connect() as conn:
        assert token not in str(conn.execute(sa.text("select * from tokens")).all())

    job = api.call("POST", "/v1/jobs", token, json={"kind": "echo"})
    assert job.status_code == 201 and job.json()["tenant"] == "acme"
    used = next(t for t in api.call("GET", "/v1/tokens").json() if t["id"] == created["id"])
    assert used["last_used_at"] is not None


@pytest.mark.parametrize(
    ("body", "status", "says"),
    [
        ({"tenant": "acme", "role": "root"}, 422, "role must be one of member, admin"),
        ({"tenant": "acme", "expires": "soon"}, 422, "e.g. 90d, 12h"),
        ({"tenant": "acme", "expires": "0d"}, 422, "e.g. 90d, 12h"),
        ({"tenant": "acme", "expires": "-1h"}, 422, "e.g. 90d, 12h"),
        ({"tenant": "acme", "expires": "99999w"}, 422, "within 10 years"),
        ({"tenant": "acme", "name": "x" * 101}, 422, "name"),
        ({"tenant": "acme", "bogus": 1}, 422, "bogus"),
        ({"tenant": "nobody"}, 404, "tenant 'nobody' does not exist"),
    ],
)
def test_token_create_refuses_bad_input_and_creates_nothing(api, body, status, says):
    api.call("POST", "/v1/tenants", json={"name": "acme"})
    before = api.call("GET", "/v1/tokens").json()
    r = api.call("POST", "/v1/tokens", json=body)
    assert r.status_code == status, r.text
    assert says in r.text
    assert api.call("GET", "/v1/tokens").json() == before


def test_revoked_token_is_refused_at_once_by_every_api_process(api, store, tmp_path):
    token = api.member("acme")
    token_id = api.call("GET", "/v1/tokens", params={"tenant": "acme"}).json()[0]["id"]
    other_store = JobStore.open(str(store.engine.url))  # a second API process on the database
    try:
        with TestClient(make_app(other_store, tmp_path)) as other:
            assert other.get("/v1/jobs", headers=bearer(token)).status_code == 200
            r = api.call("POST", f"/v1/tokens/{token_id}/revoke")
            assert r.status_code == 200 and r.json()["state"] == "revoked"
            deadline = time.monotonic() + 30
            statuses = []
            while time.monotonic() < deadline:
                statuses.append(other.get("/v1/jobs", headers=bearer(token)).status_code)
                if statuses[-1] == 401:
                    break
            assert statuses == [401], "the revocation should hold at the very next request"
    finally:
        other_store.dispose()
    assert api.call("GET", "/v1/jobs", token).status_code == 401
    first = api.call("GET", "/v1/tokens", params={"tenant": "acme"}).json()[0]["revoked_at"]
    again = api.call("POST", f"/v1/tokens/{token_id}/revoke")
    assert again.status_code == 200 and again.json()["revoked_at"] == first
    assert api.call("POST", "/v1/tokens/tok_0000000000000000/revoke").status_code == 404
    assert api.call("POST", "/v1/tokens/not-a-token-id/revoke").status_code == 422


def test_expired_token_is_refused(api, clock):
    token = api.member("acme", expires="1h")
    assert api.call("GET", "/v1/jobs", token).status_code == 200
    clock.advance(3600 - 1)
    assert api.call("GET", "/v1/jobs", token).status_code == 200
    clock.advance(2)
    r = api.call("GET", "/v1/jobs", token)
    assert r.status_code == 401 and r.json()["error"]["type"] == "AuthError"
    (info,) = api.call("GET", "/v1/tokens", params={"tenant": "acme"}).json()
    assert info["state"] == "expired"


# -- roles --------------------------------------------------------------------------------


def test_a_member_sees_and_acts_on_its_own_tenant_only_and_an_admin_on_all(api):
    acme, globex = api.member("acme"), api.member("globex")
    mine = api.call("POST", "/v1/jobs", acme, json={"kind": "echo"}).json()["id"]
    theirs = api.call("POST", "/v1/jobs", globex, json={"kind": "echo"}).json()["id"]

    assert [j["id"] for j in api.call("GET", "/v1/jobs", acme).json()["jobs"]] == [mine]
    assert api.call("GET", f"/v1/jobs/{theirs}", acme).status_code == 404
    assert api.call("POST", f"/v1/jobs/{theirs}/cancel", acme).status_code == 404
    assert api.call("GET", f"/v1/jobs/{theirs}").json()["state"] == "queued"

    tokens = api.call("GET", "/v1/tokens", acme)
    assert tokens.status_code == 200 and {t["tenant"] for t in tokens.json()} == {"acme"}
    assert api.call("GET", "/v1/tokens", acme, params={"tenant": "globex"}).status_code == 403
    globex_id = api.call("GET", "/v1/tokens", globex).json()[0]["id"]
    for method, path, body in [
        ("GET", "/v1/audit", None),
        ("GET", "/v1/tenants", None),
        ("POST", "/v1/tenants", {"name": "evil"}),
        ("POST", "/v1/tokens", {"tenant": "acme", "role": "admin"}),
        ("POST", f"/v1/tokens/{globex_id}/revoke", None),
    ]:
        r = api.call(method, path, acme, json=body)
        assert r.status_code == 403, (method, path)
        assert r.json()["error"]["type"] == "Forbidden"
    assert api.call("GET", "/v1/jobs", globex).status_code == 200  # not revoked
    assert "evil" not in [t["name"] for t in api.call("GET", "/v1/tenants").json()]

    assert {j["id"] for j in api.call("GET", "/v1/jobs").json()["jobs"]} == {mine, theirs}
    assert {t["tenant"] for t in api.call("GET", "/v1/tokens").json()} == {
        "acme",
        "default",
        "globex",
    }
    assert api.call("GET", f"/v1/jobs/{theirs}").status_code == 200


def test_an_admin_token_of_any_tenant_is_platform_wide(api):
    ops = api.member("ops", role="admin")
    assert api.call("POST", "/v1/tenants", ops, json={"name": "newco"}).status_code == 201
    assert api.call("GET", "/v1/audit", ops).status_code == 200


# -- audit log ----------------------------------------------------------------------------


def test_audit_records_mutations_and_refusals_with_who_what_and_outcome(api):
    acme = api.member("acme")
    acme_id = api.call("GET", "/v1/tokens", acme).json()[0]["id"]
    admin_id = next(
        t["id"] for t in api.call("GET", "/v1/tokens").json() if t["tenant"] == "default"
    )
    job = api.call("POST", "/v1/jobs", acme, json={"kind": "echo"}).json()["id"]
    api.call("POST", f"/v1/jobs/{job}/cancel", acme)
    api.call("GET", "/v1/jobs", acme)  # a read: not audited
    created = api.call("POST", "/v1/tokens", json={"tenant": "acme", "name": "ci"}).json()
    api.call("POST", f"/v1/tokens/{created['id']}/revoke")
    api.call("POST", "/v1/tenants", acme, json={"name": "evil"})  # 403
    api.call("POST", "/v1/jobs", "zt_stolen", json={"kind": "echo"})  # 401
    api.call("POST", "/v1/jobs", acme, json={"kind": "echo", "priority": "high"})  # 422
    api.call("GET", "/v1/audit", acme)  # a refused read: audited

    got = [
        (e["action"], e["target"], e["outcome"], e["token_id"], e["tenant"])
        for e in reversed(api.audit())
    ]
    assert got[-8:] == [
        ("job.submit", f"job_id={job}", "ok", acme_id, "acme"),
        ("job.cancel", f"job_id={job}", "ok", acme_id, "acme"),
        ("token.create", f"token_id={created['id']} tenant=acme", "ok", admin_id, "default"),
        ("token.revoke", f"token_id={created['id']}", "ok", admin_id, "default"),
        ("tenant.create", "", "Forbidden", acme_id, "acme"),  # refused before its handler
        ("job.submit", "", "AuthError", None, None),
        ("job.submit", "", "InvalidRequest", acme_id, "acme"),
        ("audit.list", "", "Forbidden", acme_id, "acme"),
    ]
    entries = api.audit()
    assert all(e["client"] == "testclient" for e in entries)
    assert not any(e["action"] == "job.list" for e in entries)
    assert entries[0]["details"] == {"method": "GET", "path": "/v1/audit", "status": 403}

    only_acme = api.audit(tenant="acme")
    assert only_acme and {e["tenant"] for e in only_acme} == {"acme"}
    page = api.audit(limit=2)
    rest = api.audit(before_id=page[-1]["id"])
    assert [e["id"] for e in page + rest] == [e["id"] for e in entries]


def test_audit_records_downloads_but_not_other_reads(api):
    acme = api.member("acme")
    put = api.call("POST", "/v1/datasets", acme, params={"name": "tiny"}, content=b"a,b\n1,2\n")
    assert put.status_code == 201, put.text
    assert api.call("GET", "/v1/datasets", acme).status_code == 200
    got = api.call("GET", "/v1/datasets/tiny/content", acme)
    assert got.status_code == 200 and got.content == b"a,b\n1,2\n"
    entries = api.audit(tenant="acme")
    digest = hashlib.sha256(b"a,b\n1,2\n").hexdigest()
    assert [(e["action"], e["target"], e["outcome"]) for e in entries[:2]] == [
        ("dataset.download", f"name=tiny sha256={digest}", "ok"),
        ("dataset.put", f"name=tiny sha256={digest}", "ok"),
    ]
    assert entries[1]["details"]["query"] == "name=tiny"
    assert not any(e["action"] == "dataset.list" for e in entries)


def test_a_hostile_request_is_audited_with_its_bytes_escaped(api):
    r = api.call("POST", "/v1/tokens/tok_%00%1b/revoke")
    assert r.status_code == 422
    (entry,) = [e for e in api.audit() if e["outcome"] != "ok"]
    assert entry["details"]["path"] == "/v1/tokens/tok_\\x00\\x1b/revoke"
    assert entry["outcome"] == "InvalidRequest"


def test_audit_since_filters_by_time(api, clock):
    api.member("acme")
    clock.advance(3600)
    api.call("POST", "/v1/tenants", json={"name": "later"})
    since = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(clock.now - 60))
    assert [e["action"] for e in api.audit(since=since)] == ["tenant.create"]
    assert len(api.audit()) > 1


def test_a_failed_audit_write_is_logged_and_the_request_still_succeeds(api, caplog, monkeypatch):
    def broken(**_):
        raise RuntimeError("audit table on fire")

    monkeypatch.setattr(api.store.tenancy, "record", broken)
    with caplog.at_level(logging.ERROR, logger="zhuge.api.audit"):
        r = api.call("POST", "/v1/tenants", json={"name": "acme"})
    assert r.status_code == 201
    assert "could not write the audit entry of POST /v1/tenants" in caplog.text


# -- metrics token ------------------------------------------------------------------------


def test_metrics_needs_the_metrics_token_when_one_is_set(store, tmp_path):
    admin = store.issue_token("default", role="admin")
    with TestClient(make_app(store, tmp_path)) as open_metrics:
        assert open_metrics.get("/metrics").status_code == 200
    with TestClient(make_app(store, tmp_path, metrics_token="scrape-me")) as http:
        assert http.get("/metrics").status_code == 401
        assert http.get("/metrics", headers=bearer("wrong")).status_code == 401
        assert http.get("/metrics", headers=bearer(admin)).status_code == 401
        ok = http.get("/metrics", headers=bearer("scrape-me"))
        assert ok.status_code == 200 and "zhuge_queue_depth" in ok.text
    refused = [e for e in store.tenancy.audit() if e.action == "system.metrics"]
    assert [e.outcome for e in refused] == ["AuthError"] * 3


def test_metrics_token_is_read_from_the_environment_and_not_shown(tmp_path):
    settings = Settings.from_env({"ZHUGE_HOME": str(tmp_path), "ZHUGE_METRICS_TOKEN": "s3"})
    assert settings.metrics_token == "s3" and "s3" not in repr(settings)
    assert Settings.from_env({"ZHUGE_HOME": str(tmp_path)}).metrics_token is None


# -- SDK and CLI --------------------------------------------------------------------------


@pytest.fixture
def cli(api, monkeypatch):
    """Run ``zhuge`` commands in-process against ``api``, as its admin by default."""

    def connect(url=None, token=None):
        return Client("http://testserver", token or api.admin, transport=api.http._transport)

    monkeypatch.setattr(cli_admin, "client", connect)
    runner = CliRunner()

    def run(*args: str):
        return runner.invoke(cli_app, list(args), env={"COLUMNS": "200"})

    return run


def test_cli_tenants_tokens_and_audit(cli, api):
    r = cli("tenants", "create", "acme")
    assert r.exit_code == 0 and "tenant acme created" in r.stdout
    r = cli("tenants", "create", "Bad Name")
    assert r.exit_code == 1 and "must start with a lowercase letter" in r.stderr
    r = cli("tenants", "ls", "--json")
    assert [t["name"] for t in json.loads(r.stdout)] == ["acme", "default"]

    r = cli("tokens", "create", "--tenant", "acme", "--name", "laptop", "--expires", "90d")
    assert r.exit_code == 0, r.output
    plain = r.stdout.strip()
    assert plain.startswith("zt_") and "\n" not in plain and "shown this once" in r.stderr
    r = cli("tokens", "create", "--tenant", "acme", "--role", "admin", "--json")
    created = json.loads(r.stdout)
    assert created["token"].startswith("zt_") and created["id"].startswith("tok_")
    assert created["role"] == "admin"
    r = cli("tokens", "create", "--tenant", "acme", "--expires", "soon")
    assert r.exit_code == 1 and "e.g. 90d, 12h" in r.stderr

    r = cli("tokens", "ls", "--tenant", "acme")
    assert r.exit_code == 0 and "laptop" in r.stdout and created["id"] in r.stdout
    listed = cli("tokens", "ls", "--json")
    assert plain not in listed.stdout and created["token"] not in listed.stdout
    assert {t["tenant"] for t in json.loads(listed.stdout)} == {"acme", "default"}

    r = cli("tokens", "revoke", created["id"])
    assert r.exit_code == 0 and "revoked" in r.stdout
    assert api.call("GET", "/v1/jobs", created["token"]).status_code == 401
    assert api.call("GET", "/v1/jobs", plain).status_code == 200

    r = cli("audit", "ls", "--json", "--since", "2000-01-01T00:00:00")
    entries = json.loads(r.stdout)
    assert [(e["action"], e["outcome"]) for e in entries[:4]] == [
        ("job.list", "AuthError"),  # the revoked token, refused
        ("token.revoke", "ok"),
        ("token.create", "InvalidRequest"),  # --expires soon
        ("token.create", "ok"),
    ]
    r = cli("audit", "ls", "--since", "yesterday")
    assert r.exit_code == 1 and "neither a duration" in r.stderr
    r = cli("audit", "ls", "--tenant", "default")
    assert r.exit_code == 0 and "token.revoke" in r.stdout


def test_sdk_as_a_member_gets_forbidden_for_admin_calls(api):
    from zhuge.errors import Forbidden

    member = api.member("acme")
    with Client("http://testserver", member, transport=api.http._transport) as c:
        assert [t["tenant"] for t in c.tokens()] == ["acme"]
        for call in (
            c.tenants,
            c.audit,
            lambda: c.create_tenant("x"),
            lambda: c.tokens(tenant="default"),
        ):
            with pytest.raises(Forbidden):
                call()


# -- a tenant's own data roots --------------------------------------------------------------


def test_an_admin_sets_a_tenants_data_roots_and_they_extend_what_it_may_read(api, tmp_path):
    token = api.member("blue")
    shared = tmp_path / "shared"
    (shared / "sub").mkdir(parents=True)
    before = api.call("GET", "/v1/data-roots", token).json()["roots"]
    assert str(shared.resolve()) not in before
    # stored resolved: a path with .. names the same folder
    r = api.call("PUT", "/v1/tenants/blue/data-roots", json={"roots": [f"{shared}/sub/.."]})
    assert r.status_code == 200, r.text
    assert r.json()["data_roots"] == [str(shared.resolve())]
    assert api.call("GET", "/v1/data-roots", token).json()["roots"] == [
        *before,
        str(shared.resolve()),
    ]
    # another tenant's roots are untouched
    other = api.member("red")
    assert str(shared.resolve()) not in api.call("GET", "/v1/data-roots", other).json()["roots"]
    # cleared
    r = api.call("PUT", "/v1/tenants/blue/data-roots", json={"roots": []})
    assert r.status_code == 200 and r.json()["data_roots"] is None
    assert api.call("GET", "/v1/data-roots", token).json()["roots"] == before


@pytest.mark.parametrize(
    ("roots", "status", "words"),
    [
        (["relative/path"], 422, "absolute"),
        (["/no/such/folder/anywhere"], 422, "not a folder"),
    ],
)
def test_bad_data_roots_are_refused_and_change_nothing(api, roots, status, words):
    api.member("blue")
    r = api.call("PUT", "/v1/tenants/blue/data-roots", json={"roots": roots})
    assert r.status_code == status and words in r.json()["error"]["message"]
    assert {t.name: t.data_roots for t in api.store.tenancy.tenants()}["blue"] is None


def test_only_an_admin_sets_data_roots_and_only_of_a_tenant_that_exists(api, tmp_path):
    token = api.member("blue")
    r = api.call("PUT", "/v1/tenants/blue/data-roots", token, json={"roots": [str(tmp_path)]})
    assert r.status_code == 403
    r = api.call("PUT", "/v1/tenants/nobody/data-roots", json={"roots": [str(tmp_path)]})
    assert r.status_code == 404
    assert {t.name: t.data_roots for t in api.store.tenancy.tenants()}["blue"] is None
