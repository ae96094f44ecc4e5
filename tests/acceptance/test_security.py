"""The trust boundary, attacked by a second, non-admin tenant against a real `zhuge up`.

`zhuge up` runs as a subprocess (SQLite, and PostgreSQL when ``ZHUGE_TEST_POSTGRES_URL`` is
set) with ``ZHUGE_DATA_ROOTS`` set to a folder of its own. Tenant ``blue`` (the victim) runs a
job that writes artifacts, uploads a dataset and is given a connection; canary files lie
outside the roots. Tenant ``red`` (the attacker, a member) then tries every attack of the
report that opened the trust-boundary work, and more: server paths and URLs as inputs
(``file:``, loopback ``http:``, ``memory:``, ``../``, a symlink out of the roots, globs, NUL,
Windows paths), ``out=``, ``db=`` (the platform's own database, a new SQLite file), blue's
dataset, model and connection, SQL that writes, attaches, copies or forges a token through a
connection of its own (and, on PostgreSQL, ``COPY ... TO PROGRAM`` and ``pg_read_file``),
unknown resources, bodies that cannot be stored (lone surrogates, NUL, 900-deep, 20 MB), and
an admin's endpoints. Each is refused with the standard error body naming the rule (or, when
only the run can tell, the job ends dead saying why), and nothing an attack named changed:
blue's jobs, datasets and artifacts, the canaries, the tokens.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from tests.conftest import empty_store, free_port, wait_for
from zhuge.client import Client
from zhuge.migration import MigrationModel, synthetic_fleet, synthetic_history

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

ZHUGE = [sys.executable, "-m", "zhuge"]
SECRET = "hunter2-canary-5e0b"  # in every file and row red must not read; never in an answer
SHADOW = "root:$6$canarysalt$"


@dataclass
class Platform:
    backend: str
    url: str
    db_url: str
    home: Path
    roots: Path
    outside: Path
    tokens: dict[str, str]
    blue_job: int
    blue_dataset: str
    extra: dict

    def http(self, who: str) -> httpx.Client:
        return httpx.Client(
            base_url=self.url,
            headers={"Authorization": f"Bearer {self.tokens[who]}"},
            timeout=60,
        )

    def sdk(self, who: str) -> Client:
        return Client(self.url, self.tokens[who], timeout=60)

    def submit(self, who: str, kind: str, params: dict, **extra) -> httpx.Response:
        with self.http(who) as c:
            return c.post("/v1/jobs", json={"kind": kind, "params": params, **extra})

    def plan(self, **changes) -> dict:
        return {
            "forecast": str(self.roots / "forecast.parquet"),
            "vms": str(self.roots / "vms.parquet"),
            "window": "1h",
            **changes,
        }


def refused(r: httpx.Response, status: int | tuple[int, ...], *rules: str) -> dict:
    """The standard error body, naming one of ``rules``, echoing no canary."""
    statuses = status if isinstance(status, tuple) else (status,)
    assert r.status_code in statuses, (r.status_code, r.text[:2000])
    error = r.json()["error"]
    assert isinstance(error["type"], str) and isinstance(error["message"], str), r.text
    said = " ".join((error["type"], error["message"], json.dumps(error.get("details")))).lower()
    assert any(rule.lower() in said for rule in rules), (rules, r.text[:2000])
    assert SECRET not in r.text and SHADOW not in r.text
    return error


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _tree(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` (links not followed) and its hash."""
    out = {}
    for path in sorted(folder.rglob("*")):
        if path.is_symlink():
            out[str(path)] = "-> " + os.readlink(path)
        elif path.is_file():
            out[str(path)] = _sha(path.read_bytes())
    return out


def snapshot(p: Platform) -> dict:
    """What no attack may change: blue's jobs, datasets and artifacts (through the admin API),
    the canaries and the roots, the tokens, the connections."""
    state: dict = {}
    with p.http("admin") as admin, p.http("blue") as blue:
        jobs = admin.get("/v1/jobs", params={"limit": 1000}).json()["jobs"]
        blue_jobs = [j for j in jobs if j["tenant"] == "blue"]
        assert len(blue_jobs) == 2, jobs
        state["blue_jobs"] = _sha(json.dumps(blue_jobs, sort_keys=True).encode())
        for job in blue_jobs:
            listing = admin.get(f"/v1/jobs/{job['id']}/artifacts").json()
            for a in listing["artifacts"]:
                r = admin.get(f"/v1/jobs/{job['id']}/artifacts/{a['name']}")
                state[f"job {job['id']} {a['name']}"] = _sha(r.content)
        datasets = [
            d for d in admin.get("/v1/datasets").json()["datasets"] if d["tenant"] == "blue"
        ]
        state["blue_datasets"] = _sha(json.dumps(datasets, sort_keys=True).encode())
        for d in datasets:
            r = blue.get(f"/v1/datasets/{d['name']}/content", params={"sha256": d["sha256"]})
            state[f"dataset {d['name']} {d['sha256']}"] = _sha(r.content)
        state["tokens"] = sorted(
            (t["id"], t["tenant"], t["role"], t.get("state"))
            for t in admin.get("/v1/tokens").json()
        )
        state["tenants"] = sorted(t["name"] for t in admin.get("/v1/tenants").json())
        state["connections"] = admin.get("/v1/connections").json()
    state["outside"] = _tree(p.outside)
    state["roots"] = _tree(p.roots)
    state["token_file"] = _sha((p.home / "token").read_bytes())
    if p.backend == "sqlite":
        state["home"] = sorted(x.name for x in p.home.iterdir())
    return state


def _write_inputs(roots: Path, outside: Path) -> None:
    fleet = synthetic_fleet(12, seed=3, hours=24, vms_per_host=3, hosts_per_cluster=2)
    fleet.vms.to_parquet(roots / "vms.parquet")
    fleet.forecast.to_parquet(roots / "forecast.parquet")
    (roots / "vm_list.txt").write_text("vm000000\nvm000001\n")
    synthetic_history(30, MigrationModel(), n_vms=5, seed=1).to_csv(
        outside / "history.csv", index=False
    )
    secret_csv = outside / "secret.csv"
    secret_csv.write_text(f"vm_id,password\nvm000000,{SECRET}\n")
    secret_csv.chmod(0o600)
    (outside / "shadow.txt").write_text(f"{SECRET}\n{SHADOW}hash:19000:0:99999:7:::\n")
    (roots / "link-out.txt").symlink_to(outside / "shadow.txt")
    for name in ("blue.db", "red.db"):
        with sqlite3.connect(outside / name) as conn:
            conn.execute("CREATE TABLE metrics (vm TEXT, ts INTEGER, cpu REAL)")
            conn.executemany(
                "INSERT INTO metrics VALUES (?, ?, ?)",
                [(f"vm-{v}", 1_700_000_000 + 300 * i, 10.0 + v + i % 7)
                 for v in range(3) for i in range(48)],
            )  # fmt: skip
            conn.execute("CREATE TABLE tokens (token TEXT, role TEXT)")
            if name == "blue.db":
                conn.execute("INSERT INTO tokens VALUES (?, 'admin')", (SECRET,))
        conn.close()


def _pg_victim(postgres_url: str) -> tuple[dict, callable]:
    """A PostgreSQL database that is not the platform's, a reader role that is no superuser
    (for red's connection), and its cleanup."""
    admin_url = sa.make_url(postgres_url).set(query={})
    suffix = uuid.uuid4().hex[:8]
    database, reader = f"zt_sec_{suffix}", f"zt_secr_{suffix}"
    admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f"CREATE DATABASE {database}")
        conn.exec_driver_sql(f"CREATE ROLE {reader} LOGIN PASSWORD 'pw-{suffix}'")
    victim = sa.create_engine(admin_url.set(database=database), isolation_level="AUTOCOMMIT")
    with victim.connect() as conn:
        conn.exec_driver_sql("CREATE TABLE metrics (vm text, ts bigint, cpu float8)")
        conn.exec_driver_sql(
            "INSERT INTO metrics SELECT 'vm-' || v, 1700000000 + 300 * i, 10 + v + mod(i, 7) "
            "FROM generate_series(0, 2) v, generate_series(0, 47) i"
        )
        conn.exec_driver_sql(f"GRANT ALL ON metrics TO {reader}")
        conn.exec_driver_sql(f"GRANT CREATE ON SCHEMA public TO {reader}")

    def state() -> tuple:
        with victim.connect() as conn:
            rows = conn.exec_driver_sql("SELECT * FROM metrics ORDER BY vm, ts").all()
            tables = conn.exec_driver_sql(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
            ).all()
        return rows, tables

    def cleanup() -> None:
        victim.dispose()
        with admin.connect() as conn:
            conn.exec_driver_sql(f"DROP DATABASE {database} WITH (FORCE)")
            conn.exec_driver_sql(f"DROP ROLE {reader}")
        admin.dispose()

    host = f"{admin_url.host or '127.0.0.1'}:{admin_url.port or 5432}"
    info = {
        "reader": f"postgresql://{reader}:pw-{suffix}@{host}/{database}",
        "superuser": admin_url.set(database=database).render_as_string(hide_password=False),
        "password": f"pw-{suffix}",
        "state": state,
    }
    return info, cleanup


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def platform(request, tmp_path_factory):
    tmp = tmp_path_factory.mktemp(f"security-{request.param}")
    home, roots, outside = tmp / "home", tmp / "roots", tmp / "outside"
    for folder in (home, roots, outside):
        folder.mkdir()
    _write_inputs(roots, outside)
    cleanups = []
    extra: dict = {}
    if request.param == "postgres":
        postgres_url = request.getfixturevalue("postgres_url")
        db_url = empty_store(postgres_url)
        extra["pg"], cleanup = _pg_victim(postgres_url)
        cleanups.append(cleanup)
    else:
        db_url = f"sqlite:///{home / 'zhuge.db'}"
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {
        **os.environ,
        "ZHUGE_HOME": str(home),
        "ZHUGE_DB_URL": db_url,
        "ZHUGE_DATA_ROOTS": str(roots),
        "ZHUGE_URL": url,
        "ZHUGE_POLL_SECONDS": "0.1",
        "ZHUGE_RETRY_BASE_SECONDS": "0.1",
    }
    env.pop("ZHUGE_TOKEN", None)
    log = tmp / "server.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [*ZHUGE, "up", "--port", str(port), "--workers", "1", "--log-level", "warning"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=tmp,
            start_new_session=True,
        )

    def healthy() -> bool:
        assert proc.poll() is None, log.read_text()
        try:
            return httpx.get(f"{url}/healthz", timeout=2).status_code == 200
        except httpx.TransportError:
            return False

    try:
        wait_for(healthy, what="zhuge up to answer /healthz", timeout=120, interval=0.2)
        admin_token = (home / "token").read_text().strip()
        with Client(url, admin_token, timeout=60) as admin:
            tokens = {"admin": admin_token}
            for tenant in ("blue", "red"):
                admin.create_tenant(tenant)
                tokens[tenant] = admin.create_token(tenant, name=f"{tenant}-laptop")["token"]
            admin.add_connection("blue-db", f"sqlite:///{outside / 'blue.db'}", tenant="blue")
            admin.add_connection("red-db", f"sqlite:///{outside / 'red.db'}", tenant="red")
            if "pg" in extra:
                admin.add_connection("red-pg", extra["pg"]["reader"], tenant="red")
        with Client(url, tokens["blue"], timeout=60) as blue:
            ref = blue.put_dataset(outside / "history.csv", name="blue-history")["ref"]
            calibrated = blue.submit("calibrate-migration", {"history": ref})
            echoed = blue.submit("echo", {"secret": SECRET})
            for job in (calibrated, echoed):
                done = blue.wait(job.id, timeout=180)
                assert done.state == "succeeded", done.raw
            assert blue.artifacts(calibrated.id)
        p = Platform(
            backend=request.param,
            url=url,
            db_url=db_url,
            home=home,
            roots=roots,
            outside=outside,
            tokens=tokens,
            blue_job=calibrated.id,
            blue_dataset=ref,
            extra=extra,
        )
        before = p.extra["before"] = snapshot(p)
        # the snapshot holds what it should: blue's two jobs, its artifacts, its dataset
        assert sum(k.startswith(f"job {calibrated.id} ") for k in before) >= 2, before
        assert sum(k.startswith("dataset blue-history ") for k in before) == 1, before
        assert {t[1] for t in before["tokens"]} == {"default", "blue", "red"}
        yield p
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
        for cleanup in cleanups:
            cleanup()


# -- refused at submit ------------------------------------------------------------------------

PATHS = [
    ("file:///etc/shadow", "scheme 'file'"),
    ("file://{outside}/secret.csv", "scheme 'file'"),
    ("{outside}/secret.csv", "outside your allowed roots"),
    ("{roots}/../outside/secret.csv", "outside your allowed roots"),
    ("{roots}/link-out.txt", "outside your allowed roots"),
    ("{home}/token", "outside your allowed roots", "platform's own files"),
    ("/etc/shadow", "outside your allowed roots"),
    ("{url}/v1/tokens", "scheme 'http'"),
    ("http://localhost:5432/", "scheme 'http'"),
    ("memory://secret.csv", "scheme 'memory'"),
    ("simplecache::file:///etc/shadow", "scheme 'simplecache'"),
    ("{roots}/*.txt", "wildcards"),
    ("{roots}/vm_list.tx[t]", "wildcards"),
    ("{roots}/vm_list.t?t", "wildcards"),
    ("{roots}/vm_list.txt\x00.parquet", "NUL"),
    ("C:\\Windows\\win.ini", "Windows"),
    ("\\\\fileserver\\share\\secret.csv", "Windows"),
    ("{roots}\\..\\outside\\secret.csv", "Windows", "backslash"),
    ("~/secret.csv", "~"),
    ("outside/secret.csv", "relative path"),
    ("connection://blue-db/x.csv", "no object store connection"),
    ("connection://red-db/../secret.csv", "no object store connection", "'..'"),
]


@pytest.mark.parametrize("attack", PATHS, ids=[a[0][:40] for a in PATHS])
def test_a_path_or_url_red_may_not_read_is_refused_at_submit(platform, attack):
    ref, *rules = attack
    ref = ref.format(
        roots=platform.roots, outside=platform.outside, home=platform.home, url=platform.url
    )
    error = refused(
        platform.submit("red", "plan-migration", platform.plan(vm_list=ref)), 422, *rules
    )
    assert "vm_list" in error["message"] + json.dumps(error.get("details"))


def test_blues_dataset_model_connection_and_jobs_are_as_if_missing(platform):
    digest = platform.blue_dataset.rsplit(":", 1)[1]
    for ref in (
        platform.blue_dataset,
        "dataset://blue-history",
        f"dataset://blue-history@sha256:{digest}",
    ):
        refused(
            platform.submit("red", "calibrate-migration", {"history": ref}),
            422,
            "is no dataset of your tenant",
        )
    for kind, params in (
        ("forecast", {"input": str(platform.roots / "forecast.parquet")}),
        ("cluster-predict", {"input": str(platform.roots / "vms.parquet")}),
    ):
        refused(
            platform.submit("red", kind, {**params, "model_from": platform.blue_job}),
            422,
            "no such job in your tenant",
        )
    refused(
        platform.submit("red", "plan-migration", platform.plan(calibration=str(platform.blue_job))),
        422,
        "no such job in your tenant",
    )
    refused(
        platform.submit("red", "prepare", {"sql": "SELECT * FROM tokens", "connection": "blue-db"}),
        422,
        "no SQL database connection 'blue-db'",
    )
    with platform.http("red") as red:
        job = platform.blue_job
        for path in (
            f"/v1/jobs/{job}",
            f"/v1/jobs/{job}/events",
            f"/v1/jobs/{job}/logs",
            f"/v1/jobs/{job}/artifacts",
            f"/v1/jobs/{job}/artifacts/calibration/calibration.json",
        ):
            refused(red.get(path), 404, "JobNotFound", "no such job", "does not exist")
        for method, path in (("POST", f"/v1/jobs/{job}/cancel"), ("POST", f"/v1/jobs/{job}/retry")):
            refused(red.request(method, path), 404, "does not exist", "no such job")
        for path in (
            "/v1/datasets/blue-history",
            "/v1/datasets/blue-history/content",
            f"/v1/datasets/by-digest/{digest}",
        ):
            refused(red.get(path, params={"name": "blue-history"}), 404, "dataset")
        refused(red.delete("/v1/datasets/blue-history"), 404, "dataset")
        assert red.get("/v1/datasets").json()["datasets"] == []
        assert [c["name"] for c in red.get("/v1/connections").json()] == ["red-db", "red-pg"][
            : 2 if platform.backend == "postgres" else 1
        ]


def test_out_and_db_parameters_are_refused_and_create_nothing(platform):
    target = platform.outside / "written-by-red.csv"
    error = refused(
        platform.submit("red", "prepare", {"input": str(platform.roots / "forecast.parquet"),
                                           "out": str(target)}),
        422,
        "own artifacts",
    )  # fmt: skip
    assert "out" in json.dumps(error)
    new_db = platform.outside / "new" / "path.db"
    for db in (platform.db_url, f"sqlite:///{new_db}", f"sqlite:///{platform.home}/zhuge.db"):
        r = platform.submit("red", "prepare", {"sql": "SELECT 1", "db": db})
        refused(r, 422, "connection=NAME")
        assert db not in r.text and "zhuge.db" not in r.text
    assert not target.exists() and not new_db.parent.exists()


def test_unknown_resources_are_refused_at_submit(platform):
    refused(platform.submit("red", "echo", {}, resources={"FOO": 1}), (409, 422), "cannot run here")


def test_bodies_that_cannot_be_stored_are_refused(platform):
    with platform.http("red") as red:
        headers = {"Content-Type": "application/json"}
        surrogate = b'{"kind": "echo", "params": {"s": "\\ud800"}}'
        refused(red.post("/v1/jobs", content=surrogate, headers=headers), 422, "surrogate")
        key = b'{"kind": "echo", "params": {"\\udfff": 1}}'
        refused(red.post("/v1/jobs", content=key, headers=headers), 422, "surrogate")
        nul = b'{"kind": "echo", "params": {"s": "a\\u0000b"}}'
        refused(red.post("/v1/jobs", content=nul, headers=headers), 422, "NUL")
        deep = b'{"kind": "echo", "params": {"x": ' + b"[" * 900 + b"]" * 900 + b"}}"
        refused(red.post("/v1/jobs", content=deep, headers=headers), 422, "deep", "depth")
        big = {"kind": "echo", "params": {"x": "a" * (20 * 2**20)}}
        refused(red.post("/v1/jobs", json=big), 413, "too large", "limit")
        params = {"kind": "echo", "params": {"x": "a" * (2 * 2**20)}}
        refused(red.post("/v1/jobs", json=params), 413, "params")
        refused(
            red.post("/v1/jobs", content=b"\xff\xfe{}", headers=headers),
            422,
            "UTF-8",
            "JSON decode error",
        )
        refused(
            red.post(
                "/v1/jobs", content=b'{"kind": "echo", "params": {"x": NaN}}', headers=headers
            ),
            422,
            "NaN",
            "number",
        )
    with platform.http("admin") as admin:  # nothing of it was stored
        assert not [
            j for j in admin.get("/v1/jobs", params={"limit": 1000}).json()["jobs"]
            if j.get("tenant") == "red" and j["kind"] == "echo"
        ]  # fmt: skip


def test_a_member_is_forbidden_every_admin_endpoint(platform):
    with platform.sdk("admin") as admin:
        blue_token_id = next(t["id"] for t in admin.tokens(tenant="blue"))
    with platform.http("red") as red:
        for method, path, body in (
            ("POST", "/v1/tenants", {"name": "red2"}),
            ("GET", "/v1/tenants", None),
            ("POST", "/v1/tokens", {"tenant": "red", "role": "admin", "name": "x"}),
            ("POST", "/v1/tokens", {"tenant": "blue", "role": "member", "name": "x"}),
            ("POST", f"/v1/tokens/{blue_token_id}/revoke", None),
            ("GET", "/v1/audit", None),
            ("POST", "/v1/connections", {"name": "x", "url": f"sqlite:///{platform.outside}/x.db",
                                         "tenant": "red"}),
            ("POST", "/v1/connections", {"name": "own", "url": platform.db_url, "tenant": "red"}),
            ("DELETE", "/v1/connections/blue-db", None),
        ):  # fmt: skip
            refused(red.request(method, path, json=body), 403, "Forbidden", "admin")
        refused(red.get("/v1/tokens", params={"tenant": "blue"}), (403, 404), "Forbidden", "admin")
        mine = red.get("/v1/tokens").json()
        assert {t["tenant"] for t in mine} == {"red"}


def test_the_platforms_own_database_is_never_a_connection(platform):
    admin = platform.http("admin")
    urls = [platform.db_url]
    if platform.backend == "sqlite":
        alias = platform.outside / "alias.db"
        alias.symlink_to(platform.home / "zhuge.db")
        urls.append(f"sqlite:///{alias}")
    else:
        url = sa.make_url(platform.db_url)
        urls.append(f"postgresql://{url.username}@localhost:{url.port or 5432}/{url.database}")
        urls.append(platform.extra["pg"]["superuser"])  # another database, but a superuser
    try:
        for url in urls:
            r = admin.post("/v1/connections", json={"name": "own", "url": url, "tenant": "red"})
            refused(r, 422, "platform's own database", "superuser")
            assert platform.extra.get("pg", {}).get("password", "\0") not in r.text
        for prefix in (platform.home, platform.home / "artifacts"):
            r = admin.post("/v1/connections", json={"name": "own", "url": f"file://{prefix}"})
            refused(r, 422, "platform's own files")
    finally:
        if platform.backend == "sqlite":
            (platform.outside / "alias.db").unlink()
        admin.close()


def test_artifact_names_are_looked_up_never_joined(platform):
    with platform.sdk("red") as red:
        job = red.submit("echo", {"x": 1})
        assert red.wait(job.id, timeout=120).state == "succeeded"
    with platform.http("red") as c:
        for name in ("..%2F..%2Ftoken", "%2e%2e/%2e%2e/token", "%2Fetc%2Fshadow", "a%5C..%5Cb",
                     "a%00b"):  # fmt: skip
            r = c.get(f"/v1/jobs/{job.id}/artifacts/{name}")
            assert r.status_code in (404, 422), (name, r.status_code, r.text)
            refused(r, r.status_code, "artifact", "NUL", "name", "path")


# -- refused only when the job runs -----------------------------------------------------------

SQLITE_ATTACKS = [
    ("SELECT vm FROM metrics; DELETE FROM metrics", "one statement"),
    ("SELECT vm FROM metrics; COMMIT; DELETE FROM metrics", "one statement"),
    ("DELETE FROM metrics", "authoriz"),
    ("INSERT INTO tokens VALUES ('forged', 'admin')", "authoriz"),
    (
        "CREATE TRIGGER forge AFTER INSERT ON metrics BEGIN "
        "INSERT INTO tokens VALUES ('forged', 'admin'); END",
        "authoriz",
    ),
    ("ATTACH DATABASE '{home}/zhuge.db' AS platform", "authoriz"),
    ("ATTACH DATABASE '{outside}/attached.db' AS a", "authoriz"),
    ("VACUUM INTO '{outside}/copy.db'", "authoriz"),
    ("PRAGMA writable_schema = 1", "authoriz"),
    ("SELECT load_extension('/tmp/evil.so')", "authoriz"),
    ("COMMIT", "authoriz"),
]

PG_ATTACKS = [
    ("SELECT pg_read_file('/etc/hostname')", "permission denied"),
    ("SELECT pg_read_file('{outside}/secret.csv')", "permission denied"),
    ("COPY (SELECT 1) TO PROGRAM 'touch {outside}/pwned'", "pg_execute_server_program"),
    ("SELECT 1 AS x; DROP TABLE metrics", "multiple commands"),
    ("SELECT 1 AS x; COMMIT; CREATE TABLE persisted (a int)", "multiple commands"),
    ("CREATE TABLE persisted (a int)", "read-only transaction"),
    ("WITH d AS (DELETE FROM metrics RETURNING *) SELECT * FROM d", "read-only transaction"),
]


def test_sql_through_reds_own_connection_cannot_write_attach_copy_or_forge(platform):
    """Submitted together, waited for together: each ends dead saying why, and quoting
    nothing red could not read (red's own ``tokens`` rows are red's to read)."""
    fmt = {"outside": platform.outside, "home": platform.home}
    attacks = [("red-db", q.format(**fmt), rule) for q, rule in SQLITE_ATTACKS]
    if platform.backend == "postgres":
        attacks += [("red-pg", q.format(**fmt), rule) for q, rule in PG_ATTACKS]
        pg_before = platform.extra["pg"]["state"]()
    red_db = _sha((platform.outside / "red.db").read_bytes())
    with platform.sdk("red") as red:
        jobs = red.submit_many(
            [
                {"kind": "prepare", "params": {"sql": q, "connection": c}, "max_attempts": 1}
                for c, q, _ in attacks
            ]
        )
        ids = [j.id for j in jobs]
        done = wait_for(
            lambda: [red.get(i) for i in ids],
            what="every SQL attack to end",
            until=lambda js: all(j.done for j in js),
            timeout=300,
            interval=0.5,
        )
        for (_conn, query, rule), job in zip(attacks, done, strict=True):
            assert job.state == "dead", (query, job.raw)
            assert rule.lower() in (job.raw.get("error") or "").lower(), (query, job.raw)
            logs = json.dumps(red.logs(job.id))
            text = json.dumps(job.raw) + logs
            assert SECRET not in text and SHADOW not in text, (query, text)
            if platform.backend == "postgres":
                assert platform.extra["pg"]["password"] not in text
    assert _sha((platform.outside / "red.db").read_bytes()) == red_db
    if platform.backend == "postgres":
        assert platform.extra["pg"]["state"]() == pg_before
    for name in ("attached.db", "copy.db", "pwned"):
        assert not (platform.outside / name).exists()


# -- afterwards -------------------------------------------------------------------------------


def test_zz_nothing_of_blue_nor_outside_the_artifacts_changed(platform):
    """Runs last in the module: every attack above left blue, the canaries, the roots and
    the tokens as they were, and every tenant still lists its jobs."""
    after = snapshot(platform)
    before = platform.extra["before"]
    assert after["tokens"] == before["tokens"]
    assert after == before
    for who in ("admin", "blue", "red"):
        with platform.http(who) as c:
            assert c.get("/v1/jobs").status_code == 200, who
    with platform.http("blue") as blue:
        jobs = blue.get("/v1/jobs").json()["jobs"]
        assert {j["tenant"] for j in jobs} == {"blue"} and len(jobs) == 2
