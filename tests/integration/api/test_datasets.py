"""Datasets: content-addressed, deduplicated, per tenant, streamed in and out, on SQLite and
PostgreSQL; the service, the HTTP API, the SDK and the CLI."""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from tests.conftest import empty_store
from zhuge import errors
from zhuge.api.app import create_app
from zhuge.client import Client
from zhuge.config import Settings
from zhuge.jobs.datasets import Datasets
from zhuge.jobs.store import JobStore

LIMIT = 64 * 1024  # bytes: the upload limit of these tests' API
CSV_V1 = b"series_id,timestamp,value\nvm-1,2026-01-01T00:00:00,0.5\n"
CSV_V2 = b"series_id,timestamp,value\nvm-1,2026-01-01T00:00:00,0.7\n"


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def parquet_bytes() -> bytes:
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    buf = io.BytesIO()
    pq.write_table(pa.table({"series_id": ["vm-1"], "value": [0.5]}), buf)
    return buf.getvalue()


def stored_files(root: Path) -> list[Path]:
    """Every file under the artifacts' datasets folder, temporary ones included."""
    return sorted(p for p in (root / "datasets").rglob("*") if p.is_file())


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request, tmp_path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'zhuge.db'}"
    return empty_store(request.getfixturevalue("postgres_url"))


@pytest.fixture
def store(db_url):
    s = JobStore.open(db_url)
    yield s
    s.dispose()


@pytest.fixture
def artifacts(tmp_path) -> Path:
    return tmp_path / "artifacts"


@pytest.fixture
def datasets(store, artifacts) -> Datasets:
    return Datasets(store.engine, artifacts.as_uri())


@pytest.fixture
def offline(artifacts) -> Datasets:
    """For what is refused before any database is asked."""
    return Datasets(sa.create_engine("sqlite://"), artifacts.as_uri())


def put(datasets: Datasets, name: str, data: bytes, tenant: str = "acme", **kwargs):
    chunks = [data[i : i + 7] for i in range(0, len(data), 7)]  # many small chunks
    return datasets.put(tenant, name, chunks, created_by="tok_1", max_bytes=LIMIT, **kwargs)


# -- the service ----------------------------------------------------------------------------


def test_same_content_twice_is_one_object_and_one_row(datasets, artifacts):
    first, created = put(datasets, "telemetry", CSV_V1)
    again, created_again = put(datasets, "telemetry", CSV_V1)
    assert (created, created_again) == (True, False)
    assert again == first
    assert first.ref == f"dataset://telemetry@sha256:{sha(CSV_V1)}"
    assert (first.size_bytes, first.format, first.created_by) == (len(CSV_V1), "csv", "tok_1")
    assert len(datasets.list("acme")) == 1
    assert stored_files(artifacts) == [artifacts / "datasets/acme/sha256" / sha(CSV_V1)]
    assert Path(first.url(artifacts.as_uri()).removeprefix("file://")).read_bytes() == CSV_V1


def test_same_content_under_another_name_is_two_rows_one_object(datasets, artifacts):
    a, _ = put(datasets, "telemetry", CSV_V1)
    b, created = put(datasets, "telemetry-copy", CSV_V1)
    assert created and a.path == b.path and a.id != b.id
    assert [d.name for d in datasets.list("acme")] == ["telemetry", "telemetry-copy"]
    assert len(stored_files(artifacts)) == 1


def test_a_name_means_its_newest_version_and_a_digest_one_exact_version(datasets):
    v1, _ = put(datasets, "telemetry", CSV_V1)
    v2, _ = put(datasets, "telemetry", CSV_V2)
    assert datasets.get("acme", "dataset://telemetry") == v2
    assert datasets.get("acme", v1.ref) == v1
    assert datasets.get("acme", f"dataset://telemetry@sha256:{v1.sha256.upper()}") == v1
    assert [d.sha256 for d in datasets.list("acme", "telemetry")] == [v2.sha256, v1.sha256]
    # putting old content again answers the version there; it does not become the newest
    assert put(datasets, "telemetry", CSV_V1) == (v1, False)
    assert datasets.get("acme", "dataset://telemetry") == v2
    assert datasets.by_digest("acme", v1.sha256) == v1
    assert datasets.by_digest("acme", v1.sha256, "other") is None


@pytest.mark.parametrize(
    "ref",
    [
        "telemetry",
        "dataset://",
        "dataset://../etc/passwd",
        "dataset://telemetry@sha256:abc",
        "dataset://telemetry@md5:" + "0" * 32,
        "s3://bucket/telemetry",
    ],
)
def test_a_malformed_reference_is_invalid_not_missing(offline, ref):
    with pytest.raises(errors.InvalidRequest):
        offline.get("acme", ref)


def test_a_missing_dataset_names_the_reference(datasets):
    put(datasets, "telemetry", CSV_V1)
    with pytest.raises(errors.DatasetNotFound, match="dataset://nope"):
        datasets.get("acme", "dataset://nope")
    ref = f"dataset://telemetry@sha256:{sha(CSV_V2)}"
    with pytest.raises(errors.DatasetNotFound) as info:
        datasets.get("acme", ref)
    assert ref in info.value.message


def test_content_goes_only_with_the_last_row_pointing_to_it(datasets, artifacts):
    v1, _ = put(datasets, "telemetry", CSV_V1)
    put(datasets, "copy", CSV_V1)
    v2, _ = put(datasets, "telemetry", CSV_V2)
    assert datasets.remove("acme", "telemetry", v1.sha256) == 1
    assert datasets.get("acme", "dataset://telemetry") == v2
    assert len(stored_files(artifacts)) == 2  # "copy" still points to v1's content
    assert datasets.remove("acme", "telemetry") == 1
    assert stored_files(artifacts) == [artifacts / "datasets/acme/sha256" / v1.sha256]
    assert datasets.remove("acme", "copy") == 1
    assert stored_files(artifacts) == []
    assert datasets.remove("acme", "copy") == 0


def test_tenants_never_see_each_other(datasets):
    mine, _ = put(datasets, "telemetry", CSV_V1, tenant="acme")
    with pytest.raises(errors.DatasetNotFound):
        datasets.get("globex", "dataset://telemetry")
    with pytest.raises(errors.DatasetNotFound):
        datasets.get("globex", mine.ref)
    assert datasets.by_digest("globex", mine.sha256) is None
    assert datasets.list("globex") == []
    assert datasets.remove("globex", "telemetry") == 0
    theirs, created = put(datasets, "telemetry", CSV_V1, tenant="globex")
    assert created and theirs.path != mine.path  # each tenant's content is its own
    assert [d.tenant for d in datasets.list(None)] == ["acme", "globex"]
    assert datasets.get("acme", "dataset://telemetry") == mine


def test_over_the_limit_leaves_no_object_and_no_row(datasets, artifacts):
    with pytest.raises(errors.PayloadTooLarge):
        put(datasets, "big", b"a,b\n" + b"1,2\n" * (LIMIT // 4))
    assert datasets.list(None) == []
    assert stored_files(artifacts) == []


def test_the_limit_stops_reading_at_the_first_chunk_past_it(datasets):
    read = []

    def endless():
        while True:
            read.append(1)
            yield b"x" * 1024

    with pytest.raises(errors.PayloadTooLarge):
        datasets.put("acme", "endless", endless(), created_by=None, max_bytes=LIMIT)
    assert len(read) == LIMIT // 1024 + 1


def test_parquet_is_told_by_its_magic_bytes(datasets):
    data = parquet_bytes()
    dataset, _ = put(datasets, "telemetry.csv", data)  # the content decides, not the name
    assert dataset.format == "parquet"
    assert put(datasets, "plain", CSV_V1, format="csv")[0].format == "csv"


@pytest.mark.parametrize(
    ("data", "format", "message"),
    [
        (b"", None, "empty"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", None, "neither Parquet"),
        (CSV_V1, "parquet", "declared format 'parquet'"),
        (b"PAR1" + b"\x00" * 64, None, "truncated"),
        (CSV_V1, "xlsx", "not one of csv, parquet"),
    ],
)
def test_what_is_not_csv_or_parquet_is_refused_and_leaves_nothing(
    datasets, artifacts, data, format, message
):
    with pytest.raises(errors.InvalidRequest, match=message):
        put(datasets, "bad", data, format=format)
    assert datasets.list(None) == []
    assert stored_files(artifacts) == []


@pytest.mark.parametrize(
    "name", ["", ".hidden", "-x", "a/b", "../x", "a b", "x" * 201, "naïve", "a\x00b"]
)
def test_names_follow_a_strict_pattern(offline, artifacts, name):
    with pytest.raises(errors.InvalidRequest, match="not allowed"):
        put(offline, name, CSV_V1)
    assert not artifacts.exists()


# -- the HTTP API ---------------------------------------------------------------------------


@pytest.fixture
def api(db_url, tmp_path):
    settings = Settings(home=tmp_path, db_url=db_url, max_upload_bytes=LIMIT)
    store = JobStore.open(db_url)
    tokens = {
        "acme": store.issue_token("acme"),
        "globex": store.issue_token("globex"),
        "admin": store.issue_token("ops", role="admin"),
    }
    with TestClient(create_app(settings, store=store)) as http:
        http.tokens = tokens
        http.artifacts = tmp_path / "artifacts"
        yield http
    store.dispose()


def auth(api, who: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {api.tokens[who]}"}


def upload(api, name: str, data: bytes, who: str = "acme", **params):
    return api.post(
        "/v1/datasets",
        params={"name": name, **params},
        content=data,
        headers={**auth(api, who), "Content-Type": "application/octet-stream"},
    )


def test_upload_is_201_then_200_for_the_same_content(api):
    first = upload(api, "telemetry", CSV_V1)
    assert first.status_code == 201, first.text
    body = first.json()
    assert body["ref"] == f"dataset://telemetry@sha256:{sha(CSV_V1)}"
    assert (body["tenant"], body["size_bytes"], body["format"]) == ("acme", len(CSV_V1), "csv")
    assert body["created_by"].startswith("tok_") and body["created_at"]
    again = upload(api, "telemetry", CSV_V1)
    assert again.status_code == 200 and again.json() == body
    listed = api.get("/v1/datasets", headers=auth(api, "acme")).json()["datasets"]
    assert listed == [body]


def test_download_streams_the_exact_version(api):
    v1 = upload(api, "telemetry", CSV_V1).json()
    upload(api, "telemetry", CSV_V2)
    newest = api.get("/v1/datasets/telemetry/content", headers=auth(api, "acme"))
    assert newest.status_code == 200 and newest.content == CSV_V2
    assert newest.headers["X-Zhuge-SHA256"] == sha(CSV_V2)
    assert newest.headers["content-type"].startswith("text/csv")
    old = api.get(
        "/v1/datasets/telemetry/content", params={"sha256": v1["sha256"]}, headers=auth(api, "acme")
    )
    assert old.content == CSV_V1 and old.headers["X-Zhuge-Ref"] == v1["ref"]
    described = api.get("/v1/datasets/telemetry", headers=auth(api, "acme")).json()
    assert described["sha256"] == sha(CSV_V2)


def test_a_dataset_may_be_named_like_a_route(api):
    upload(api, "by-digest", CSV_V1)
    r = api.get("/v1/datasets/by-digest/content", headers=auth(api, "acme"))
    assert r.status_code == 200 and r.content == CSV_V1
    assert api.get("/v1/datasets/by-digest", headers=auth(api, "acme")).json()["name"] == (
        "by-digest"
    )


def test_over_the_limit_is_413_and_stores_nothing(api):
    big = b"a,b\n" + b"1,2\n" * (LIMIT // 4)
    r = upload(api, "big", big)
    assert r.status_code == 413, r.text
    assert r.json()["error"]["type"] == "PayloadTooLarge"

    def unsized():  # no Content-Length: counted as it streams
        yield from (big[i : i + 4096] for i in range(0, len(big), 4096))

    r = api.post(
        "/v1/datasets", params={"name": "big"}, content=unsized(), headers=auth(api, "acme")
    )
    assert r.status_code == 413
    assert api.get("/v1/datasets", headers=auth(api, "acme")).json()["datasets"] == []
    assert stored_files(api.artifacts) == []


@pytest.mark.parametrize("name", ["", ".hidden", "a/b", "../x", "a b", "x" * 201])
def test_a_bad_name_is_422(api, name):
    r = upload(api, name, CSV_V1)
    assert r.status_code == 422, r.text
    assert not (api.artifacts / "datasets" / "acme" / "sha256").exists()


def test_a_bad_format_or_digest_is_422(api):
    assert upload(api, "t", CSV_V1, format="xlsx").status_code == 422
    assert upload(api, "t", CSV_V1, format="parquet").status_code == 422
    r = api.get("/v1/datasets/by-digest/not-a-digest", headers=auth(api, "acme"))
    assert r.status_code == 422


def test_another_tenant_gets_the_same_404_as_for_a_missing_dataset(api):
    mine = upload(api, "secret", CSV_V1).json()
    digest = mine["sha256"]

    def attempts(name: str) -> list:
        h = auth(api, "globex")
        return [
            api.get(f"/v1/datasets/by-digest/{digest}", headers=h),
            api.get(f"/v1/datasets/{name}/content", headers=h),
            api.get(f"/v1/datasets/{name}/content", params={"sha256": digest}, headers=h),
            api.delete(f"/v1/datasets/{name}", headers=h),
            api.delete(f"/v1/datasets/{name}", params={"sha256": digest}, headers=h),
        ]

    theirs = attempts("secret")
    assert [r.status_code for r in theirs] == [404] * 5
    nobody = [r.json() for r in attempts("nothing")]
    upload(api, "decoy", CSV_V2, who="globex")  # globex has data of its own, unrelated
    assert [json.loads(r.text.replace("secret", "nothing")) for r in theirs] == nobody
    assert (
        api.get("/v1/datasets", headers=auth(api, "globex")).json()["datasets"][0]["name"]
        == "decoy"
    )
    assert len(api.get("/v1/datasets", headers=auth(api, "globex")).json()["datasets"]) == 1
    # acme's dataset is untouched
    assert api.get("/v1/datasets/secret/content", headers=auth(api, "acme")).content == CSV_V1


def test_an_admin_lists_every_tenant_and_a_member_its_own(api):
    upload(api, "telemetry", CSV_V1, who="acme")
    upload(api, "telemetry", CSV_V2, who="globex")
    every = api.get("/v1/datasets", headers=auth(api, "admin")).json()["datasets"]
    assert [(d["tenant"], d["name"]) for d in every] == [
        ("acme", "telemetry"),
        ("globex", "telemetry"),
    ]
    own = api.get("/v1/datasets", params={"name": "telemetry"}, headers=auth(api, "acme"))
    assert [d["tenant"] for d in own.json()["datasets"]] == ["acme"]


def test_remove_is_by_name_or_one_version(api):
    v1 = upload(api, "telemetry", CSV_V1).json()
    upload(api, "telemetry", CSV_V2)
    r = api.delete(
        "/v1/datasets/telemetry", params={"sha256": v1["sha256"]}, headers=auth(api, "acme")
    )
    assert r.json() == {"name": "telemetry", "sha256": v1["sha256"], "removed": 1}
    assert api.delete("/v1/datasets/telemetry", headers=auth(api, "acme")).json()["removed"] == 1
    assert stored_files(api.artifacts) == []


def test_routes_are_named_for_the_audit_log(api):
    paths = {
        "dataset.put": {},
        "dataset.list": {},
        "dataset.download": {"name": "t"},
        "dataset.remove": {"name": "t"},
    }
    found = {name: api.app.url_path_for(name, **params) for name, params in paths.items()}
    assert found == {
        "dataset.put": "/v1/datasets",
        "dataset.list": "/v1/datasets",
        "dataset.download": "/v1/datasets/t/content",
        "dataset.remove": "/v1/datasets/t",
    }


def test_uploads_and_downloads_are_audited_with_name_and_digest(api):
    upload(api, "telemetry", CSV_V1)
    api.get("/v1/datasets/telemetry/content", headers=auth(api, "acme"))
    entries = api.get("/v1/audit", headers=auth(api, "admin")).json()["entries"]
    target = f"name=telemetry sha256={sha(CSV_V1)}"
    assert [(e["action"], e["target"], e["tenant"]) for e in entries[:2]] == [
        ("dataset.download", target, "acme"),
        ("dataset.put", target, "acme"),
    ]


# -- the SDK and the CLI --------------------------------------------------------------------


class Recording:
    """A transport that remembers the method and path of each request it passes on."""

    def __init__(self, inner) -> None:
        self.inner, self.seen = inner, []

    def handle_request(self, request):
        self.seen.append((request.method, request.url.path))
        return self.inner.handle_request(request)

    def close(self) -> None:
        pass


@pytest.fixture
def sdk(api):
    transport = Recording(api._transport)
    c = Client("http://testserver", api.tokens["acme"], transport=transport)
    c.seen = transport.seen
    return c


def test_sdk_uploads_only_what_the_name_does_not_have(sdk, tmp_path):
    path = tmp_path / "telemetry.csv"
    path.write_bytes(CSV_V1)
    phases = set()
    first = sdk.put_dataset(path, progress=lambda phase, done, total: phases.add(phase))
    assert first["name"] == "telemetry" and first["sha256"] == sha(CSV_V1)
    assert phases == {"hashing", "uploading"}
    sdk.seen.clear()
    assert sdk.put_dataset(path) == first
    assert sdk.seen == [("GET", f"/v1/datasets/by-digest/{sha(CSV_V1)}")]  # nothing sent
    copy = sdk.put_dataset(path, "copy")
    assert copy["name"] == "copy" and ("POST", "/v1/datasets") in sdk.seen
    assert [d["name"] for d in sdk.datasets()] == ["copy", "telemetry"]


def test_sdk_download_is_verified_and_replaces_dest_only_when_complete(sdk, tmp_path):
    path = tmp_path / "telemetry.csv"
    path.write_bytes(CSV_V1)
    sdk.put_dataset(path)
    dest = tmp_path / "out" / "t.csv"
    dest.parent.mkdir()
    assert sdk.download_dataset("telemetry", dest) == dest
    assert dest.read_bytes() == CSV_V1
    with pytest.raises(errors.DatasetNotFound):
        sdk.download_dataset("telemetry", dest, sha256=sha(CSV_V2))
    assert dest.read_bytes() == CSV_V1 and list(dest.parent.iterdir()) == [dest]
    assert sdk.remove_dataset("telemetry") == {"name": "telemetry", "sha256": None, "removed": 1}
    with pytest.raises(errors.DatasetNotFound):
        sdk.remove_dataset("telemetry")


def test_cli_put_ls_get_rm(api, tmp_path, monkeypatch):
    from zhuge.cli import app
    from zhuge.cli import datasets as cli_datasets

    monkeypatch.setattr(
        cli_datasets,
        "client",
        lambda url, token: Client(
            "http://testserver", api.tokens["acme"], transport=api._transport
        ),
    )
    path = tmp_path / "fleet.csv"
    path.write_bytes(CSV_V1)
    runner = CliRunner()
    put = runner.invoke(app, ["datasets", "put", str(path), "--name", "fleet"])
    assert put.exit_code == 0, put.output
    assert f"dataset://fleet@sha256:{sha(CSV_V1)}" in put.stdout
    ls = runner.invoke(app, ["datasets", "ls", "--json"])
    assert [d["name"] for d in json.loads(ls.stdout)] == ["fleet"]
    out = tmp_path / "copy.csv"
    got = runner.invoke(app, ["datasets", "get", "fleet", "--out", str(out)])
    assert got.exit_code == 0 and out.read_bytes() == CSV_V1
    rm = runner.invoke(app, ["datasets", "rm", "fleet", "--json"])
    assert json.loads(rm.stdout)["removed"] == 1
    missing = runner.invoke(app, ["datasets", "rm", "fleet"])
    assert missing.exit_code == 1 and "no dataset dataset://fleet" in missing.stderr


# -- a 1 GiB round trip in bounded memory ---------------------------------------------------

ONE_GIB = 1 << 30
MEMORY_BOUND = 300 * 1024**2  # bytes of peak RSS, per process: far below the file's size

SERVER = """
import sys
from pathlib import Path

import uvicorn

from zhuge.api.app import create_app
from zhuge.config import Settings
from zhuge.jobs.store import JobStore

settings = Settings(home=Path(sys.argv[1]), port=int(sys.argv[2]))
store = JobStore.open(settings.database_url)
print(store.issue_token("acme"), flush=True)
uvicorn.run(create_app(settings, store=store), port=settings.port, log_level="warning")
"""

CLIENT = """
import json, sys, time
from pathlib import Path

from zhuge.client import Client

url, token, source, dest = sys.argv[1:]
c = Client(url, token, timeout=120)
started = time.monotonic()
dataset = c.put_dataset(source, "big")
uploaded = time.monotonic()
c.download_dataset("big", dest)
print(json.dumps({
    "dataset": dataset,
    "upload_seconds": uploaded - started,
    "download_seconds": time.monotonic() - uploaded,
    # not getrusage: its ru_maxrss counts the forking parent's memory from before exec
    "peak_rss": next(
        int(line.split()[1]) * 1024
        for line in Path("/proc/self/status").read_text().splitlines()
        if line.startswith("VmHWM:")
    ),
}))
"""


def write_big_csv(path: Path, size: int) -> str:
    """A CSV of ``size`` bytes, written a MiB at a time: random hex rows, each block made
    unique by its number. Returns its SHA-256."""
    import os

    block = bytearray(
        b"".join(b"%07d,%s\n" % (j, os.urandom(28).hex().encode()) for j in range(16_384))
    )
    digest = hashlib.sha256()
    with path.open("wb") as fh:
        written, i = 0, 0
        while written < size:
            block[:7] = b"%07d" % i
            chunk = bytes(block[: size - written])
            fh.write(chunk)
            digest.update(chunk)
            written, i = written + len(chunk), i + 1
    return digest.hexdigest()


def peak_rss_of(pid: int) -> int:
    """The high-water mark of a live process's resident memory, in bytes (Linux)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM in /proc/{pid}/status")


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads peak RSS from /proc")
def test_a_1_gib_round_trip_stays_in_bounded_memory(tmp_path):
    import subprocess
    import sys
    import time

    import httpx

    from tests.conftest import free_port

    source, dest, home = tmp_path / "big.csv", tmp_path / "copy.csv", tmp_path / "home"
    home.mkdir()
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-c", SERVER, str(home), str(port)], stdout=subprocess.PIPE, text=True
    )
    try:
        digest = write_big_csv(source, ONE_GIB)
        token = server.stdout.readline().strip()
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{url}/healthz").is_success:
                    break
            except httpx.TransportError:
                pass
            assert server.poll() is None, "the server exited"
            assert time.monotonic() < deadline, "the server did not start"
            time.sleep(0.1)
        run = subprocess.run(
            [sys.executable, "-c", CLIENT, url, token, str(source), str(dest)],
            capture_output=True,
            text=True,
            timeout=240,
        )
        assert run.returncode == 0, run.stderr
        client = json.loads(run.stdout)
        server_peak = peak_rss_of(server.pid)
        stored = home / "artifacts" / "datasets" / "acme" / "sha256" / digest
        assert client["dataset"]["sha256"] == digest
        assert client["dataset"]["size_bytes"] == ONE_GIB == stored.stat().st_size
        assert dest.stat().st_size == ONE_GIB  # download_dataset checked its SHA-256
        print(
            f"1 GiB: upload {client['upload_seconds']:.1f} s, download "
            f"{client['download_seconds']:.1f} s; peak RSS: server {server_peak / 2**20:.0f} MiB, "
            f"client {client['peak_rss'] / 2**20:.0f} MiB"
        )
        assert server_peak < MEMORY_BOUND
        assert client["peak_rss"] < MEMORY_BOUND
    finally:
        server.terminate()
        server.wait(timeout=30)
        server.stdout.close()
        for big in (source, dest, *home.rglob("*")):
            if big.is_file():
                big.unlink()
