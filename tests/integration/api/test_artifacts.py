"""GET /v1/jobs/{id}/artifacts[/{name}]: a job's outputs leave the server only this way, only
to its own tenant, only from its own folder, streamed."""

from __future__ import annotations

import hashlib
import os
import socket

import pytest
from fastapi.testclient import TestClient

from zhuge.api.app import create_app
from zhuge.api.private_server import serve_privately
from zhuge.api.routes import artifacts as artifact_routes
from zhuge.artifacts import ArtifactDir
from zhuge.client import Client
from zhuge.config import Settings
from zhuge.errors import ArtifactNotFound, JobNotFound
from zhuge.jobs.store import JobStore

SECRET = b"another job's or the server's file"


@pytest.fixture
def platform(tmp_path):
    settings = Settings(home=tmp_path, db_url=f"sqlite:///{tmp_path / 'zhuge.db'}")
    store = JobStore.open(settings.database_url)
    app = create_app(settings, store=store)
    tokens = {
        "acme": store.issue_token("acme"),
        "globex": store.issue_token("globex"),
        "admin": store.issue_token("default", role="admin"),
    }
    yield settings, store, app, tokens
    store.dispose()


@pytest.fixture
def http(platform):
    _, _, app, tokens = platform
    with TestClient(app) as client:
        client.headers["Authorization"] = f"Bearer {tokens['acme']}"
        yield client


def make_job(platform, files: dict[str, bytes], *, tenant: str = "acme", succeed: bool = True):
    """A job of ``tenant`` whose first attempt wrote ``files`` (and succeeded, if asked);
    beside its attempt folder lies a file no artifact name may reach."""
    settings, store, _, _ = platform
    job, _ = store.submit(tenant=tenant, kind="echo", params={})
    (claimed,) = store.claim(limit=1, owner="test", lease_seconds=60)
    root = ArtifactDir(settings.artifacts_root)
    root.child(f"jobs/{job.id}").write_bytes("secret.txt", SECRET)
    folder = root.child(claimed.artifact_prefix())
    for name, data in files.items():
        folder.write_bytes(name, data)
    if succeed:
        assert store.complete(job.id, claimed.attempt, result={"output": "forecast.parquet"})
    return job.id


FILES = {
    "forecast.parquet": b"PAR1" + b"x" * 100,
    "summary.json": b'{"ok": true}',
    "model/manifest.json": b"{}",
}


def test_the_list_names_the_committed_attempts_files_with_sizes_and_subfolders(platform, http):
    job_id = make_job(platform, FILES)
    body = http.get(f"/v1/jobs/{job_id}/artifacts").json()
    assert body["attempt"] == 1 and body["committed"] is True
    listed = {a["name"]: a["size_bytes"] for a in body["artifacts"]}
    assert listed == {name: len(data) for name, data in FILES.items()}


def test_a_job_that_has_not_succeeded_lists_its_latest_attempt_marked_uncommitted(platform, http):
    job_id = make_job(platform, {"staged/part-00000.parquet": b"1234"}, succeed=False)
    body = http.get(f"/v1/jobs/{job_id}/artifacts").json()
    assert (body["attempt"], body["committed"]) == (1, False)
    assert body["artifacts"] == [{"name": "staged/part-00000.parquet", "size_bytes": 4}]


def test_a_download_is_the_file_with_a_content_type_by_its_extension(platform, http):
    job_id = make_job(platform, FILES)
    for name, media in [
        ("forecast.parquet", "application/vnd.apache.parquet"),
        ("summary.json", "application/json"),
        ("model/manifest.json", "application/json"),
    ]:
        r = http.get(f"/v1/jobs/{job_id}/artifacts/{name}")
        assert r.status_code == 200, r.text
        assert r.content == FILES[name] and r.headers["content-type"] == media
        assert r.headers["content-length"] == str(len(FILES[name]))


def test_another_tenant_gets_404_for_list_and_download_and_an_admin_sees_it(platform, http):
    _, _, _, tokens = platform
    job_id = make_job(platform, FILES)
    for who, code in [("globex", 404), ("admin", 200)]:
        headers = {"Authorization": f"Bearer {tokens[who]}"}
        listing = http.get(f"/v1/jobs/{job_id}/artifacts", headers=headers)
        download = http.get(f"/v1/jobs/{job_id}/artifacts/summary.json", headers=headers)
        assert (listing.status_code, download.status_code) == (code, code), who
        if code == 404:
            assert listing.json()["error"]["type"] == "JobNotFound"
            assert download.json()["error"]["type"] == "JobNotFound"
            assert b"ok" not in download.content


@pytest.mark.parametrize(
    ("name", "code"),
    [
        ("%2e%2e/secret.txt", 422),
        ("%2E%2E%2Fsecret.txt", 422),
        ("model/%2e%2e/%2e%2e/secret.txt", 422),
        ("/etc/passwd", 422),  # the request path is .../artifacts//etc/passwd
        ("%2Fetc%2Fpasswd", 422),
        ("%2E/summary.json", 422),
        ("model//manifest.json", 422),
        ("..%5Csecret.txt", 422),
        ("secret.txt", 404),  # exists, but outside the attempt's folder
        ("model", 404),  # a folder, not a file
        ("nope.parquet", 404),
    ],
)
def test_names_outside_the_listing_are_refused(platform, http, name, code):
    job_id = make_job(platform, FILES)
    r = http.get(f"/v1/jobs/{job_id}/artifacts/{name}")
    assert r.status_code == code, r.text
    assert SECRET not in r.content
    expected = "InvalidRequest" if code == 422 else "ArtifactNotFound"
    assert r.json()["error"]["type"] == expected


def _raw_get(sock_path: str, target: str, token: str) -> bytes:
    """A request line sent as written: no client normalises the ``..`` away."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.connect(sock_path)
        s.sendall(
            f"GET {target} HTTP/1.1\r\nHost: zhuge\r\nAuthorization: Bearer {token}\r\n"
            "Connection: close\r\n\r\n".encode()
        )
        chunks = []
        while data := s.recv(65536):
            chunks.append(data)
    return b"".join(chunks)


@pytest.mark.skipif(not hasattr(socket, "AF_UNIX"), reason="needs Unix sockets")
def test_a_literal_dot_dot_on_the_wire_is_refused(platform):
    _, _, app, tokens = platform
    job_id = make_job(platform, FILES)
    with serve_privately(app) as api:
        for target in (
            f"/v1/jobs/{job_id}/artifacts/../secret.txt",
            f"/v1/jobs/{job_id}/artifacts/model/../../secret.txt",
        ):
            answer = _raw_get(api.socket_path, target, tokens["acme"])
            assert answer.startswith(b"HTTP/1.1 422"), answer[:200]
            assert SECRET not in answer


def test_the_sdk_lists_and_downloads_and_a_failed_download_leaves_the_old_file(platform, tmp_path):
    _, _, app, tokens = platform
    job_id = make_job(platform, FILES)
    dest = tmp_path / "out" / "forecast.parquet"
    dest.parent.mkdir()
    dest.write_bytes(b"the old forecast")
    with (
        serve_privately(app) as api,
        Client(api.url, tokens["acme"], transport=api.transport) as c,
    ):
        assert {a["name"] for a in c.artifacts(job_id)} == set(FILES)
        with pytest.raises(ArtifactNotFound):
            c.download_artifact(job_id, "nope.parquet", dest)
        assert dest.read_bytes() == b"the old forecast"
        assert os.listdir(dest.parent) == ["forecast.parquet"]  # no temporary file left
        assert c.download_artifact(job_id, "forecast.parquet", dest) == dest
        assert dest.read_bytes() == FILES["forecast.parquet"]
    with (
        serve_privately(app) as api,
        Client(api.url, tokens["globex"], transport=api.transport) as c,
        pytest.raises(JobNotFound),
    ):
        c.artifacts(job_id)


def test_a_big_artifact_streams_in_chunks(platform, tmp_path, monkeypatch):
    _, _, app, tokens = platform
    big = os.urandom(3 << 20) * 8  # 24 MiB
    job_id = make_job(platform, {"forecast.parquet": big})
    monkeypatch.setattr(artifact_routes, "CHUNK_BYTES", 1 << 20)
    reads: list[int] = []
    original = ArtifactDir.open

    def counting_open(self, name):
        fh = original(self, name)
        read = fh.read

        def recorded(size=-1):
            data = read(size)
            reads.append(len(data))
            return data

        fh.read = recorded
        return fh

    monkeypatch.setattr(ArtifactDir, "open", counting_open)
    dest = tmp_path / "big.parquet"
    with (
        serve_privately(app) as api,
        Client(api.url, tokens["acme"], transport=api.transport) as c,
    ):
        c.download_artifact(job_id, "forecast.parquet", dest)
    assert hashlib.sha256(dest.read_bytes()).digest() == hashlib.sha256(big).digest()
    assert max(reads) <= 1 << 20 and len(reads) >= 24  # never the whole file at once


@pytest.mark.parametrize(
    ("kind", "params"),
    [
        ("prepare", {"input": "dataset://fleet"}),
        ("forecast", {"input": "dataset://fleet"}),
        ("cluster", {"input": "dataset://table"}),
        ("cluster-predict", {"model_from": 1, "input": "dataset://table"}),
        ("plan-migration", {"forecast": "dataset://forecast", "vms": "dataset://vms"}),
        ("calibrate-migration", {}),
    ],
)
def test_an_out_parameter_is_refused_jobs_write_only_their_own_artifacts(http, kind, params):
    r = http.post("/v1/jobs", json={"kind": kind, "params": {**params, "out": "/etc/cron.d/x"}})
    assert r.status_code == 422, r.text
    details = r.json()["error"]["details"]
    (refusal,) = [d for d in details if d["loc"] == ["out"]]
    assert refusal["type"] == "extra_forbidden"
    assert "GET /v1/jobs/{id}/artifacts/{name}" in refusal["msg"]  # where outputs are now
    assert http.get("/v1/jobs").json()["jobs"] == []
