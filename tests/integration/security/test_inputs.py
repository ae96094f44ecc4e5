"""The trust boundary for data, attacked through the API by a member of tenant ``evil``.

Every attack of the report that opened this work is replayed: server files and URLs as job
inputs (``file:///etc/shadow`` as ``vm_list``, ``../``, a symlink out of a root, loopback
HTTP, ``memory://``, wildcards, NUL, Windows paths), SQL on the platform's own database or
writing through a connection (several statements, ``ATTACH``, ``VACUUM INTO``, ``COPY ... TO
PROGRAM``, ``pg_read_file``, a trigger, a data-modifying CTE), and another tenant's dataset
and model. Each is refused with an error naming the rule, echoes nothing it could have read,
and changes nothing: canary files outside the artifacts and tenant ``acme``'s rows hash the
same after as before. Legitimate uses of the same parameters succeed, so the refusals are not
just everything failing.

Jobs run in this process through the real runner (``run_attempt``), which checks every
reference again as the job starts.
"""

from __future__ import annotations

import hashlib
import http.server
import json
import os
import sqlite3
import threading
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from zhuge.api.app import create_app
from zhuge.config import Settings
from zhuge.jobs import schema
from zhuge.jobs.datasets import Datasets
from zhuge.jobs.inputs import private_paths
from zhuge.jobs.runner import AttemptSpec, run_attempt
from zhuge.jobs.store import JobStore
from zhuge.migration import MigrationModel, synthetic_fleet, synthetic_history

SECRET = "hunter2-canary-9f1c"  # in every file a member must not read; never in an answer


@dataclass
class World:
    http: TestClient
    store: JobStore
    settings: Settings
    tmp: Path
    root: Path  # ZHUGE_DATA_ROOTS
    outside: Path  # canaries: no root covers it
    tokens: dict[str, str]
    acme_job: int
    acme_dataset: str
    canaries: list[Path] = field(default_factory=list)

    def headers(self, who: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[who]}"}

    def submit(self, who: str, kind: str, params: dict) -> dict:
        r = self.http.post(
            "/v1/jobs", json={"kind": kind, "params": params}, headers=self.headers(who)
        )
        return {"status": r.status_code, "text": r.text, **r.json()}

    def run_queued(self) -> list:
        """Run every queued job in this process, as a worker would."""
        done = []
        for job in self.store.claim(limit=50, owner="test", lease_seconds=120):
            spec = AttemptSpec(
                db_url=self.settings.database_url,
                artifacts_url=self.settings.artifacts_root,
                job_id=job.id,
                attempt=job.attempt,
                lease_seconds=120,
                heartbeat_seconds=10,
                data_roots=tuple(str(r) for r in self.settings.data_roots),
                private_paths=private_paths(self.settings),
            )
            run_attempt(spec)
            done.append(self.store.get(job.id))
        return done

    def run(self, who: str, kind: str, params: dict):
        submitted = self.submit(who, kind, params)
        assert submitted["status"] == 201, submitted["text"]
        (job,) = self.run_queued()
        return job

    def add_connection(self, name: str, url: str, tenant: str | None = "evil") -> dict:
        r = self.http.post(
            "/v1/connections",
            json={"name": name, "url": url, "tenant": tenant},
            headers=self.headers("admin"),
        )
        return {"status": r.status_code, "text": r.text, **r.json()}

    def snapshot(self) -> dict:
        """What no refused attack may change: the canaries' bytes, acme's rows, the
        connections, and how many jobs evil has."""
        state = {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in self.canaries}
        state["outside"] = sorted(os.listdir(self.outside))
        with self.store.engine.connect() as conn:
            for table in (schema.jobs, schema.datasets, schema.tokens):
                rows = conn.execute(sa.select(table).where(table.c.tenant == "acme")).all()
                state[table.name] = sorted(map(repr, rows))
            state["connections"] = sorted(map(repr, conn.execute(sa.select(schema.connections))))
            state["evil_jobs"] = conn.execute(
                sa.select(sa.func.count()).where(schema.jobs.c.tenant == "evil")
            ).scalar()
        return state


def _write_fleet(folder: Path) -> None:
    fleet = synthetic_fleet(12, seed=3, hours=24, vms_per_host=3, hosts_per_cluster=2)
    fleet.vms.to_parquet(folder / "vms.parquet")
    fleet.forecast.to_parquet(folder / "forecast.parquet")
    (folder / "vm_list.txt").write_text("vm000000\nvm000001\n")
    synthetic_history(30, MigrationModel(), n_vms=5, seed=1).to_csv(
        folder / "history.csv", index=False
    )


@pytest.fixture
def world(db_url, tmp_path):
    root, outside = tmp_path / "root", tmp_path / "outside"
    home = root / ".zhuge"  # inside the root, as the embedded platform's is
    for folder in (root, outside, home):
        folder.mkdir(parents=True, exist_ok=True)
    _write_fleet(root)
    secret_csv = outside / "secret.csv"
    secret_csv.write_text(f"vm_id,password\nvm000000,{SECRET}\n")
    secret_csv.chmod(0o600)
    secret_txt = outside / "secret.txt"
    secret_txt.write_text(f"{SECRET}\nroot:$6$salt$hash:19000:0:99999:7:::\n")
    (root / "link-out.txt").symlink_to(secret_txt)
    victim = outside / "victim.db"
    with sqlite3.connect(victim) as conn:
        conn.execute("CREATE TABLE metrics (vm TEXT, ts INTEGER, cpu REAL)")
        conn.executemany(
            "INSERT INTO metrics VALUES (?, ?, ?)",
            [(f"vm-{v}", 1_700_000_000 + 300 * i, 10.0 + v + i % 7) for v in range(3)
             for i in range(48)],
        )  # fmt: skip
        conn.execute("CREATE TABLE tokens (token TEXT, role TEXT)")
    settings = Settings(home=home, db_url=db_url, data_roots=(root,))
    store = JobStore.open(db_url)
    tokens = {
        "admin": store.issue_token("default", role="admin"),
        "acme": store.issue_token("acme"),
        "evil": store.issue_token("evil"),
    }
    (home / "token").write_text(tokens["admin"] + "\n")
    acme_job, _ = store.submit(tenant="acme", kind="echo", params={"secret": SECRET})
    datasets = Datasets(store.engine, settings.artifacts_root)
    acme_dataset, _ = datasets.put(
        "acme", "secret", [secret_csv.read_bytes()], created_by=None, max_bytes=2**20
    )
    with TestClient(create_app(settings, store=store)) as http:
        world = World(
            http=http,
            store=store,
            settings=settings,
            tmp=tmp_path,
            root=root,
            outside=outside,
            tokens=tokens,
            acme_job=acme_job.id,
            acme_dataset=acme_dataset.ref,
            canaries=[secret_csv, secret_txt, victim, home / "token"],
        )
        (done,) = world.run_queued()  # acme's job: succeeded, with artifacts
        assert done.state.value == "succeeded"
        yield world
    store.dispose()


def _plan(root: Path, **changes) -> dict:
    return {
        "forecast": str(root / "forecast.parquet"),
        "vms": str(root / "vms.parquet"),
        "window": "1h",
        **changes,
    }


def _refused(answer: dict, rule: str, field_name: str) -> None:
    """A 422 that names the field and the rule, and echoes nothing it could have read."""
    assert answer["status"] == 422, answer["text"]
    error = answer["error"]
    said = error["message"] + " " + json.dumps(error["details"])
    assert rule.lower() in said.lower(), said  # (a NUL is refused by the request limits first)
    assert field_name in error["message"] or field_name in json.dumps(error["details"])
    assert SECRET not in answer["text"] and "$6$salt" not in answer["text"]


# -- references that are refused when the job is submitted ------------------------------------

SERVER_FILES = [
    ("file:///etc/shadow", "scheme 'file'"),
    ("file://{outside}/secret.txt", "scheme 'file'"),
    ("{root}/../outside/secret.txt", "outside your allowed roots"),
    ("{root}/link-out.txt", "outside your allowed roots"),
    ("{root}/.zhuge/token", "platform's own files"),
    ("{root}/.zhuge/artifacts/jobs/1/attempt-1/result.json", "platform's own files"),
    ("/etc/shadow", "outside your allowed roots"),
    ("memory://secret.txt", "scheme 'memory'"),
    ("s3://bucket/secret.txt", "scheme 's3'"),
    ("simplecache::file:///etc/shadow", "scheme 'simplecache'"),
    ("{root}/*.txt", "wildcards"),
    ("{root}/vm_list.tx[t]", "wildcards"),
    ("{root}/vm_list.txt\x00.parquet", "NUL"),
    ("C:\\Windows\\win.ini", "Windows"),
    ("\\\\fileserver\\share\\secret.txt", "Windows"),
    ("~/secret.txt", "~"),
    ("outside/secret.txt", "relative path"),
    ("connection://nowhere/secret.txt", "no object store connection"),
    ("connection://objs/../secret.txt", "'..'"),
]


@pytest.mark.parametrize(("ref", "rule"), SERVER_FILES)
def test_a_server_path_or_url_outside_the_roots_is_refused_at_submit(world, ref, rule):
    before = world.snapshot()
    ref = ref.format(root=world.root, outside=world.outside)
    _refused(
        world.submit("evil", "plan-migration", _plan(world.root, vm_list=ref)), rule, "vm_list"
    )
    assert world.snapshot() == before


def test_loopback_http_is_refused_without_a_request(world):
    hits = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            hits.append(self.path)
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"vm000000\n")

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/vm_list.txt"
        for field_name in ("vm_list", "vms", "forecast"):
            answer = world.submit("evil", "plan-migration", _plan(world.root, **{field_name: url}))
            _refused(answer, "scheme 'http'", field_name)
    finally:
        server.shutdown()
        server.server_close()
    assert hits == []


@pytest.mark.parametrize(
    ("kind", "params", "rule", "field_name"),
    [
        ("forecast", {"input": "file:///etc/passwd"}, "scheme 'file'", "input"),
        ("backtest", {"input": "/etc/passwd"}, "outside your allowed roots", "input"),
        ("forecast", {"input": "{root}/forecast.parquet", "vms": "/etc/passwd"}, "outside", "vms"),
        ("cluster", {"input": "{root}/../outside/secret.csv"}, "outside", "input"),
        ("tune", {"input": "http://169.254.169.254/latest/meta-data"}, "scheme 'http'", "input"),
        ("calibrate-migration", {"history": "{root}/link-out.txt"}, "outside", "history"),
        (
            "plan-migration",
            _plan(Path("{root}"), calibration="/etc/passwd"),
            "outside",
            "calibration",
        ),
        ("plan-migration", _plan(Path("{root}"), hosts="memory://h"), "scheme 'memory'", "hosts"),
        ("plan-migration", _plan(Path("{root}"), actual="{root}/*"), "wildcards", "actual"),
    ],
)
def test_every_kind_checks_every_field_that_names_data(world, kind, params, rule, field_name):
    before = world.snapshot()
    params = {k: v.format(root=world.root) if isinstance(v, str) else v for k, v in params.items()}
    _refused(world.submit("evil", kind, params), rule, field_name)
    assert world.snapshot() == before


def test_another_tenants_dataset_is_answered_like_a_missing_one(world):
    before = world.snapshot()
    digest = world.acme_dataset.rsplit(":", 1)[1]
    for ref in (world.acme_dataset, "dataset://secret", f"dataset://secret@sha256:{digest}"):
        answer = world.submit("evil", "cluster", {"input": ref})
        _refused(answer, "is no dataset of your tenant", "input")
    missing = world.submit("evil", "cluster", {"input": "dataset://never-uploaded"})
    assert missing["error"]["message"].replace("never-uploaded", "secret") == answer["error"][
        "message"
    ].replace(f"@sha256:{digest}", "")
    assert world.snapshot() == before


def test_model_from_is_a_job_of_the_callers_tenant_and_never_a_folder(world):
    before = world.snapshot()
    answers = {
        "acme's": world.acme_job,
        "missing": 987_654,
    }
    for kind, extra in (
        ("forecast", {"input": str(world.root / "forecast.parquet")}),
        ("cluster-predict", {"input": str(world.root / "vms.parquet")}),
    ):
        messages = set()
        for job_id in answers.values():
            answer = world.submit("evil", kind, {**extra, "model_from": job_id})
            _refused(answer, "no such job in your tenant", "model_from")
            messages.add(answer["error"]["message"].replace(str(job_id), "N"))
        assert len(messages) == 1  # the same answer, whether the job exists elsewhere or not
    folder = world.submit(
        "evil", "cluster-predict",
        {"input": str(world.root / "vms.parquet"), "model_from": str(world.root)},
    )  # fmt: skip
    assert folder["status"] == 422 and "model_from" in folder["text"]
    for field_name in ("calibration", "forecast"):
        params = _plan(world.root, **{field_name: str(world.acme_job)})
        answer = world.submit("evil", "plan-migration", params)
        _refused(answer, "no such job in your tenant", field_name)
    assert world.snapshot() == before


def test_db_is_gone_and_sql_names_a_connection_the_caller_may_use(world):
    before = world.snapshot()
    old = world.submit("evil", "prepare", {"sql": "SELECT 1", "db": world.settings.database_url})
    assert old["status"] == 422 and "connection=NAME" in old["text"]
    assert world.settings.database_url not in old["text"]
    answer = world.submit("evil", "prepare", {"sql": "SELECT 1", "connection": "nowhere"})
    _refused(answer, "no SQL database connection 'nowhere'", "connection")
    victim = world.outside / "victim.db"
    assert world.add_connection("admins-only", f"sqlite:///{victim}", tenant=None)["status"] == 201
    assert world.add_connection("acme-db", f"sqlite:///{victim}", tenant="acme")["status"] == 201
    before = world.snapshot()
    for name in ("admins-only", "acme-db"):
        answer = world.submit("evil", "prepare", {"sql": "SELECT 1", "connection": name})
        _refused(answer, f"no SQL database connection '{name}'", "connection")
    objects = world.submit("evil", "cluster", {"input": "connection://acme-db/x.csv"})
    _refused(objects, "no object store connection", "input")
    assert world.snapshot() == before


# -- connections: what an admin may register ---------------------------------------------------


def test_the_platforms_own_database_and_files_can_never_be_a_connection(world):
    own = world.settings.database_url
    urls = [own]
    if own.startswith("sqlite"):
        alias = world.outside / "alias.db"
        alias.symlink_to(sa.make_url(own).database)
        urls.append(f"sqlite:///{alias}")
    else:
        url = sa.make_url(own)
        urls.append(f"postgresql://{url.username}@localhost:{url.port or 5432}/{url.database}")
        urls.append(f"postgresql+psycopg://{url.username}@127.0.0.1/{url.database}")
    for url in urls:
        answer = world.add_connection("own", url)
        assert answer["status"] == 422, answer["text"]
        assert "platform's own database" in answer["error"]["message"]
    for prefix in (world.settings.home, world.root / ".zhuge" / "artifacts", world.tmp):
        answer = world.add_connection("own-files", f"file://{prefix}")
        assert answer["status"] == 422 and "platform's own files" in answer["error"]["message"]
    for url in ("http://127.0.0.1/db", "memory://x", "sqlite:///relative.db", "file:///x/*"):
        assert world.add_connection("bad", url)["status"] == 422
    assert world.http.get("/v1/connections", headers=world.headers("admin")).json() == []


def test_only_admins_add_connections_and_nobody_sees_a_url_again(world):
    victim = world.outside / "victim.db"
    r = world.http.post(
        "/v1/connections",
        json={"name": "mine", "url": f"sqlite:///{victim}", "tenant": "evil"},
        headers=world.headers("evil"),
    )
    assert r.status_code == 403
    assert world.add_connection("evil-db", f"sqlite:///{victim}")["status"] == 201
    assert world.add_connection("acme-db", f"sqlite:///{victim}", tenant="acme")["status"] == 201
    assert world.add_connection("evil-db", f"sqlite:///{victim}")["status"] == 409
    listed = {
        who: world.http.get("/v1/connections", headers=world.headers(who)).json()
        for who in ("admin", "acme", "evil")
    }
    assert [c["name"] for c in listed["admin"]] == ["acme-db", "evil-db"]
    assert [c["name"] for c in listed["evil"]] == ["evil-db"]
    assert [c["name"] for c in listed["acme"]] == ["acme-db"]
    assert (
        listed["evil"][0]["kind"] == "sql" and listed["evil"][0]["location"] == "sqlite victim.db"
    )
    assert str(world.outside) not in json.dumps(listed)
    r = world.http.delete("/v1/connections/evil-db", headers=world.headers("evil"))
    assert r.status_code == 403
    assert (
        world.http.delete("/v1/connections/evil-db", headers=world.headers("admin")).status_code
        == 200
    )
    assert (
        world.http.delete("/v1/connections/evil-db", headers=world.headers("admin")).status_code
        == 404
    )


# -- SQL through a connection: read-only, one statement -----------------------------------------

SQLITE_ATTACKS = [
    ("SELECT vm FROM metrics; DELETE FROM metrics", "one statement"),
    ("DELETE FROM metrics", "authoriz"),
    ("INSERT INTO tokens VALUES ('forged', 'admin')", "authoriz"),
    (
        "CREATE TRIGGER forge AFTER INSERT ON metrics BEGIN "
        "INSERT INTO tokens VALUES ('forged', 'admin'); END",
        "authoriz",
    ),
    ("ATTACH DATABASE '{outside}/attached.db' AS a", "authoriz"),
    ("VACUUM INTO '{outside}/copy.db'", "authoriz"),
    ("PRAGMA writable_schema = 1", "authoriz"),
    ("SELECT load_extension('/tmp/evil.so')", "authoriz"),
    ("COMMIT", "authoriz"),
]


def test_sql_on_a_sqlite_connection_cannot_write_attach_or_copy(world):
    victim = world.outside / "victim.db"
    assert world.add_connection("victim", f"sqlite:///{victim}")["status"] == 201
    before = world.snapshot()
    for query, rule in SQLITE_ATTACKS:
        query = query.format(outside=world.outside)
        job = world.run("evil", "prepare", {"sql": query, "connection": "victim"})
        assert job.state.value == "dead", (query, job.state)
        assert rule in job.error, (query, job.error)
        after = world.snapshot()
        after["evil_jobs"] = before["evil_jobs"]
        assert after == before, query  # no attached.db, no copy.db, victim unchanged
    ok = world.run(
        "evil",
        "prepare",
        {"sql": "SELECT vm AS series_id, ts AS timestamp, cpu AS value FROM metrics",
         "connection": "victim", "freq": "1h"},
    )  # fmt: skip
    assert ok.state.value == "succeeded", ok.error
    assert ok.result["series"] == 3 and ok.result["timestamp_unit"] == "s"


@pytest.fixture
def pg_victim(postgres_url):
    """A PostgreSQL database of its own (not the platform's), with a reader role that may do
    anything to its one table but is no superuser, and a role holding pg_read_server_files."""
    admin_url = sa.make_url(postgres_url).set(query={})
    suffix = uuid.uuid4().hex[:8]
    database, reader, filer = f"zt_victim_{suffix}", f"zt_reader_{suffix}", f"zt_filer_{suffix}"
    admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f"CREATE DATABASE {database}")
        conn.exec_driver_sql(f"CREATE ROLE {reader} LOGIN PASSWORD 'pw-{suffix}'")
        conn.exec_driver_sql(f"CREATE ROLE {filer} LOGIN IN ROLE pg_read_server_files")
    victim_admin = sa.create_engine(admin_url.set(database=database), isolation_level="AUTOCOMMIT")
    with victim_admin.connect() as conn:
        conn.exec_driver_sql("CREATE TABLE metrics (vm text, ts bigint, cpu float8)")
        conn.exec_driver_sql(
            "INSERT INTO metrics SELECT 'vm-' || v, 1700000000 + 300 * i, 10 + v + mod(i, 7) "
            "FROM generate_series(0, 2) v, generate_series(0, 47) i"
        )
        conn.exec_driver_sql(f"GRANT ALL ON metrics TO {reader}")
        conn.exec_driver_sql(f"GRANT CREATE ON SCHEMA public TO {reader}")

    def rows() -> list:
        with victim_admin.connect() as conn:
            return conn.exec_driver_sql("SELECT * FROM metrics ORDER BY vm, ts").all()

    def tables() -> list:
        with victim_admin.connect() as conn:
            return conn.exec_driver_sql(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
            ).all()

    host = f"{admin_url.host or '127.0.0.1'}:{admin_url.port or 5432}"
    yield {
        "reader": f"postgresql://{reader}:pw-{suffix}@{host}/{database}",
        "filer": f"postgresql://{filer}@{host}/{database}",
        "superuser": admin_url.set(database=database).render_as_string(hide_password=False),
        "password": f"pw-{suffix}",
        "role": reader,
        "rows": rows,
        "tables": tables,
        "alter": lambda sql: _execute(victim_admin, sql),
    }
    victim_admin.dispose()
    with admin.connect() as conn:
        conn.exec_driver_sql(f"DROP DATABASE {database} WITH (FORCE)")
        conn.exec_driver_sql(f"DROP ROLE {reader}")
        conn.exec_driver_sql(f"DROP ROLE {filer}")
    admin.dispose()


def _execute(engine: sa.Engine, sql: str) -> None:
    with engine.connect() as conn:
        conn.exec_driver_sql(sql)


PG_ATTACKS = [
    ("SELECT pg_read_file('/etc/hostname')", "permission denied"),
    ("COPY (SELECT 1) TO PROGRAM 'touch {outside}/pwned'", "pg_execute_server_program"),
    ("SELECT 1 AS x; DROP TABLE metrics", "multiple commands"),
    ("COMMIT; CREATE TABLE persisted (a int)", "multiple commands"),
    ("CREATE TABLE persisted (a int)", "read-only transaction"),
    ("WITH d AS (DELETE FROM metrics RETURNING *) SELECT * FROM d", "read-only transaction"),
    (
        "SELECT set_config('transaction_read_only', 'off', true), count(*) FROM metrics",
        "must be set before any query",
    ),
]


def test_sql_on_a_postgres_connection_is_one_read_only_statement(world, pg_victim):
    before_rows, before_tables = pg_victim["rows"](), pg_victim["tables"]()
    assert world.add_connection("victim", pg_victim["reader"])["status"] == 201
    listed = world.http.get("/v1/connections", headers=world.headers("evil")).text
    assert pg_victim["password"] not in listed and pg_victim["role"] not in listed
    for query, rule in PG_ATTACKS:
        job = world.run(
            "evil", "prepare", {"sql": query.format(outside=world.outside), "connection": "victim"}
        )
        assert job.state.value == "dead", (query, job.state)
        assert rule in job.error, (query, job.error)
        assert pg_victim["password"] not in job.error + (job.traceback or "")
    assert pg_victim["rows"]() == before_rows and pg_victim["tables"]() == before_tables
    assert not (world.outside / "pwned").exists()
    ok = world.run(
        "evil",
        "prepare",
        {"sql": "SELECT vm AS series_id, ts AS timestamp, cpu AS value FROM metrics "
                "WHERE cpu::int % 1 = 0 AND vm LIKE 'vm-%'",
         "connection": "victim", "freq": "1h"},
    )  # fmt: skip
    assert ok.state.value == "succeeded", ok.error
    assert ok.result["series"] == 3


def test_a_postgres_role_that_reaches_the_server_is_refused_when_added_and_when_used(
    world, pg_victim
):
    for url, rule in (
        (pg_victim["superuser"], "superuser"),
        (pg_victim["filer"], "pg_read_server_files"),
    ):
        answer = world.add_connection("powerful", url)
        assert answer["status"] == 422 and rule in answer["error"]["message"], answer["text"]
    assert world.add_connection("victim", pg_victim["reader"])["status"] == 201
    pg_victim["alter"](f"ALTER ROLE {pg_victim['role']} SUPERUSER")
    try:
        job = world.run("evil", "prepare", {"sql": "SELECT 1 AS series_id", "connection": "victim"})
    finally:
        pg_victim["alter"](f"ALTER ROLE {pg_victim['role']} NOSUPERUSER")
    assert job.state.value == "dead" and "superuser" in job.error


# -- checked again when the job starts --------------------------------------------------------


def test_a_symlink_swapped_after_submit_is_refused_when_the_job_starts(world):
    link = world.root / "swap.txt"
    link.symlink_to(world.root / "vm_list.txt")
    submitted = world.submit("evil", "plan-migration", _plan(world.root, vm_list=str(link)))
    assert submitted["status"] == 201, submitted["text"]
    link.unlink()
    link.symlink_to(world.outside / "secret.txt")
    before = world.snapshot()
    (job,) = world.run_queued()
    assert job.state.value == "dead"
    assert "outside your allowed roots" in job.error
    logs = json.dumps([line.line for line in world.store.logs(job.id)])
    assert SECRET not in job.error + (job.traceback or "") + logs
    assert world.snapshot() == before


def test_a_folder_with_a_symlink_out_of_the_root_is_refused_when_the_job_starts(world):
    folder = world.root / "parts"
    folder.mkdir()
    pd.read_parquet(world.root / "vms.parquet").to_parquet(folder / "part-0.parquet")
    submitted = world.submit("evil", "plan-migration", _plan(world.root, vms=str(folder)))
    assert submitted["status"] == 201
    (folder / "part-1.parquet").symlink_to(world.outside / "secret.csv")
    (job,) = world.run_queued()
    assert job.state.value == "dead" and "outside your allowed roots" in job.error
    assert SECRET not in job.error + (job.traceback or "")


# -- what a member may read, it reads --------------------------------------------------------


def test_paths_under_the_roots_datasets_and_connection_objects_are_read(world):
    plan = world.run(
        "evil", "plan-migration", _plan(world.root, vm_list=str(world.root / "vm_list.txt"))
    )
    assert plan.state.value == "succeeded", plan.error
    assert plan.result["summary"]["vms"] == 2
    beside_home = world.settings.home / "mine" / "vm_list.txt"  # the home is not all private
    beside_home.parent.mkdir()
    beside_home.write_text("vm000003\n")
    plan = world.run("evil", "plan-migration", _plan(world.root, vm_list=str(beside_home)))
    assert plan.state.value == "succeeded" and plan.result["summary"]["vms"] == 1, plan.error

    history = (world.root / "history.csv").read_bytes()
    datasets = Datasets(world.store.engine, world.settings.artifacts_root)
    ref = datasets.put("evil", "history", [history], created_by=None, max_bytes=2**20)[0].ref
    calibrated = world.run("evil", "calibrate-migration", {"history": ref})
    assert calibrated.state.value == "succeeded", calibrated.error
    assert calibrated.result["source"] == "fit"

    objects = world.tmp / "objects"
    objects.mkdir()
    (objects / "lists").mkdir()
    (objects / "lists" / "two.txt").write_text("vm000002\nvm000003\n")
    (objects / "lists" / "out.txt").symlink_to(world.outside / "secret.txt")
    assert world.add_connection("objs", f"file://{objects}")["status"] == 201
    from_objects = world.run(
        "evil", "plan-migration", _plan(world.root, vm_list="connection://objs/lists/two.txt")
    )
    assert from_objects.state.value == "succeeded", from_objects.error
    escaped = world.run(
        "evil", "plan-migration", _plan(world.root, vm_list="connection://objs/lists/out.txt")
    )
    assert escaped.state.value == "dead" and "out of the connection's prefix" in escaped.error
    assert SECRET not in escaped.error


def test_a_tenants_own_roots_are_its_alone(world):
    own = world.tmp / "evil-root"
    own.mkdir()
    (own / "vm_list.txt").write_text("vm000000\n")
    with world.store.engine.begin() as conn:
        conn.execute(
            schema.tenants.update()
            .where(schema.tenants.c.name == "evil")
            .values(data_roots=[str(own)])
        )
    roots = {
        who: world.http.get("/v1/data-roots", headers=world.headers(who)).json()["roots"]
        for who in ("evil", "acme", "admin")
    }
    assert roots["evil"] == [str(world.root), str(own)]
    assert roots["acme"] == roots["admin"] == [str(world.root)]
    params = _plan(world.root, vm_list=str(own / "vm_list.txt"))
    assert world.submit("evil", "plan-migration", params)["status"] == 201
    _refused(
        world.submit("acme", "plan-migration", params), "outside your allowed roots", "vm_list"
    )
    _refused(
        world.submit("admin", "plan-migration", params), "outside your allowed roots", "vm_list"
    )


def test_the_sdk_and_cli_add_list_and_remove_connections(world, monkeypatch):
    from typer.testing import CliRunner

    from zhuge.cli import app
    from zhuge.cli import connections as cli
    from zhuge.client import Client
    from zhuge.errors import Forbidden

    def sdk(who: str) -> Client:
        return Client("http://testserver", world.tokens[who], transport=world.http._transport)

    victim = world.outside / "victim.db"
    added = sdk("admin").add_connection("ops", f"sqlite:///{victim}", tenant="evil")
    assert added["kind"] == "sql" and added["tenant"] == "evil"
    with pytest.raises(Forbidden):
        sdk("evil").add_connection("mine", f"sqlite:///{victim}")
    assert [c["name"] for c in sdk("evil").connections()] == ["ops"]
    assert sdk("evil").data_roots() == [str(world.root)]

    monkeypatch.setattr(cli, "client", lambda url, token: sdk("admin"))
    runner = CliRunner()
    shown = runner.invoke(app, ["connections", "ls"], env={"COLUMNS": "160"})
    assert shown.exit_code == 0 and "ops" in shown.stdout and "sqlite victim.db" in shown.stdout
    assert str(world.outside) not in shown.stdout
    added = runner.invoke(app, ["connections", "add", "lake", f"file://{world.tmp}/lake", "--json"])
    assert added.exit_code == 0, added.output
    assert json.loads(added.stdout)["kind"] == "objects"
    removed = runner.invoke(app, ["connections", "rm", "ops"])
    assert removed.exit_code == 0 and "removed" in removed.stdout
    refused = runner.invoke(app, ["connections", "add", "own", world.settings.database_url])
    assert refused.exit_code == 1 and "platform's own database" in refused.output
    assert [c["name"] for c in sdk("admin").connections()] == ["lake"]
