"""Schema versions: a home and a database written by zhuge v0.1.0 upgrade with every job,
event, token and artifact reference intact; every other version is refused at start.

The v0.1.0 fixtures were written by v0.1.0's own code (``tests/fixtures/v0_1_0``). From now
on every schema change ships a revision and extends this test (``check_the_newest_columns``).
"""

from __future__ import annotations

import json
import shutil
import uuid
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from typer.testing import CliRunner

from zhuge.api.schemas import JobOut
from zhuge.cli import app
from zhuge.errors import SchemaMismatch
from zhuge.jobs import migrations, schema
from zhuge.jobs.model import Worker
from zhuge.jobs.states import JobState, LostReason
from zhuge.jobs.store import JobStore, create_engine

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "v0_1_0"
EXPECTED = json.loads((FIXTURES / "expected.json").read_text())


def _with_search_path(url: str, schema_name: str) -> str:
    sep = "&" if "?" in url else "?"
    return f"{url}{sep}options=-csearch_path%3D{schema_name}"


@pytest.fixture
def v010_sqlite(tmp_path) -> tuple[str, Path]:
    home = tmp_path / "home"
    shutil.copytree(FIXTURES / "home", home)
    return f"sqlite:///{home / 'zhuge.db'}", home / "artifacts"


@pytest.fixture
def v010_postgres(postgres_url, tmp_path):  # type: ignore[no-untyped-def]
    """A fresh PostgreSQL schema restored from v0.1.0's dump."""
    base = postgres_url.split("?")[0]
    name = f"zu_{uuid.uuid4().hex[:10]}"
    dump = (FIXTURES / "postgres.sql").read_text().replace("zhuge_v010", name)
    admin = sa.create_engine(base)
    with admin.connect() as conn:  # the dump creates the schema itself
        raw = conn.connection.dbapi_connection
        raw.execute(dump)  # many statements, no parameters: psycopg runs them as one script
        raw.commit()
    artifacts = tmp_path / "artifacts"
    shutil.copytree(FIXTURES / "home" / "artifacts", artifacts)
    yield _with_search_path(base, name), artifacts
    with admin.begin() as conn:
        conn.exec_driver_sql(f"DROP SCHEMA {name} CASCADE")
    admin.dispose()


@pytest.fixture(params=["sqlite", "postgres"])
def v010(request):  # type: ignore[no-untyped-def]
    return request.getfixturevalue(f"v010_{request.param}")


def _upgrade_with_cli(url: str, monkeypatch) -> dict:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("ZHUGE_DB_URL", url)
    result = CliRunner().invoke(app, ["db", "upgrade", "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def test_a_v010_database_is_refused_until_upgraded_then_intact(v010, monkeypatch):
    url, artifacts = v010
    with pytest.raises(SchemaMismatch, match="zhuge db upgrade") as refused:
        JobStore.open(url)
    assert refused.value.details["current"] == migrations.BASELINE

    assert _upgrade_with_cli(url, monkeypatch) == {
        "database": refused.value.message.split(" has ")[0].removeprefix("the database at "),
        "from": migrations.BASELINE,
        "to": migrations.head(),
    }
    store = JobStore.open(url)
    try:
        jobs = {str(j.id): j for j in store.list(limit=100)}
        assert set(jobs) == set(EXPECTED["jobs"])
        for job_id, want in EXPECTED["jobs"].items():
            got = jobs[job_id]
            assert {name: getattr(got, name) for name in want} | {"state": got.state.value} == (
                want
            ), job_id
            assert len(store.events(int(job_id))) == EXPECTED["events"][job_id]
        done = EXPECTED["ids"]["succeeded"]
        assert [line.line for line in store.logs(done)] == EXPECTED["logs"][str(done)]
        assert store.tenant_for_token(EXPECTED["token"]) == "default"
        # the artifact reference still names the file v0.1.0 wrote
        root = artifacts.as_uri()
        folder = JobOut.of(jobs[str(done)], root).artifacts
        assert folder is not None
        assert (artifacts / EXPECTED["artifact"]["path"]).read_text() == '{"n": 1}'
        assert f"{folder}/result.json".removeprefix(root + "/") == EXPECTED["artifact"]["path"]
        # the same request with the same idempotency key still finds its job
        running = jobs[str(EXPECTED["ids"]["running"])]
        again, created = store.submit(
            tenant="default",
            kind="echo",
            params=running.params,
            priority=running.priority,
            idempotency_key=running.idempotency_key,
        )
        assert (again.id, created) == (running.id, False)
        check_the_newest_columns(store, jobs)
    finally:
        store.dispose()
    # a second upgrade is a no-op
    assert _upgrade_with_cli(url, monkeypatch)["from"] == migrations.head()


def check_the_newest_columns(store: JobStore, jobs) -> None:  # type: ignore[no-untyped-def]
    """What each revision added, on the upgraded rows: extend it with every new revision."""
    # 0002: lost attempts
    assert all((j.lost, j.max_lost) == (0, 10) for j in jobs.values())
    running = jobs[str(EXPECTED["ids"]["running"])]
    # its v0.1.0 server died with it running; the lease (of 2023) is long gone
    (lost,) = store.expire_leases()
    assert (lost.id, lost.state) == (running.id, JobState.QUEUED)
    assert (lost.lost, lost.failures) == (1, running.failures)
    assert store.events(running.id)[-1].reason == LostReason.LEASE_LOST
    # 0003: the trust boundary
    with store.engine.connect() as conn:
        tokens = conn.execute(sa.select(schema.tokens)).mappings().all()
        conn.rollback()
    assert [(t["tenant"], t["role"], t["id"][:4]) for t in tokens] == [("default", "admin", "tok_")]
    assert all(j.pending_reason is None for j in jobs.values())
    # 0004: admission
    assert all((j.gang, j.timeout_s, j.assigned_workers) == (1, None, None) for j in jobs.values())
    with store.engine.connect() as conn:
        assert (
            conn.execute(sa.select(sa.func.count()).select_from(schema.queue_config)).scalar() == 0
        )
        conn.rollback()
    # 0005: scheduler beats, for /readyz
    with store.engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(schema.schedulers)).scalar() == 0
        conn.rollback()
    # 0006: the model registry, empty, and usable on the upgraded database
    from zhuge.jobs.registry import Registry

    with store.engine.connect() as conn:
        for table in (schema.registered_models, schema.model_versions, schema.model_aliases):
            assert conn.execute(sa.select(sa.func.count()).select_from(table)).scalar() == 0
        conn.rollback()
    registry = Registry(store.engine)
    first = registry.register(
        "default",
        "fleet-cpu",
        artifact="jobs/1/attempt-1/model",
        manifest_sha256="0" * 64,
        lineage={},
    )
    assert registry.resolve("default", "fleet-cpu@champion") == first
    # 0007: chain plans, none on the upgraded jobs
    with store.engine.connect() as conn:
        plans = conn.execute(sa.select(schema.jobs.c.chain_plan)).scalars().all()
        assert plans and all(p is None for p in plans)
        conn.rollback()
    # 0008: dependencies and pipelines: the upgraded jobs are no step and wait for nothing; a
    # job after an upgraded one, and a pipeline, on the upgraded database
    assert all((j.pipeline_id, j.step, j.cancelled_by) == (None, None, None) for j in jobs.values())
    with store.engine.connect() as conn:
        for table in (schema.job_dependencies, schema.pipelines):
            assert conn.execute(sa.select(sa.func.count()).select_from(table)).scalar() == 0
        conn.rollback()
    from zhuge.jobs.pipelines import PipelineSpec, get_pipeline

    waiting, _ = store.submit(tenant="default", kind="sleep", params={}, after=[running.id])
    assert waiting.state is JobState.BLOCKED and store.upstream([waiting.id])[waiting.id] == [
        running.id
    ]
    spec = PipelineSpec.parse({"name": "p", "steps": {"a": {"kind": "sleep"}}})
    assert get_pipeline(store, store.submit_pipeline(tenant="default", spec=spec)).state == (
        "waiting"
    )
    # 0009: schedules, none yet; a schedule and a slot's run on the upgraded database, once
    from zhuge.jobs.schedules import Schedules

    schedules = Schedules(store, pipelines=_NoPipelines())
    admin = store.principal_for_token(store.issue_token("default", role="admin"))
    added = schedules.add(admin, name="nightly", cron="0 2 * * *", document="{}")
    assert schedules.fire(added, now=added.created_at + 86400.0).outcome == "fired"
    assert schedules.fire(added, now=added.created_at + 86400.0) is None  # that slot is taken
    # 0011: no upgraded job resolved a registry reference; the model of 0006 is a forecast one
    assert all((j.model_ref, j.model_version) == (None, None) for j in jobs.values())
    with store.engine.connect() as conn:
        tasks = conn.execute(sa.select(schema.registered_models.c.task)).scalars().all()
        assert tasks == ["forecast"]
        conn.rollback()
    # 0012: of the upgraded jobs (the dump predates dependencies) only the one a job was
    # submitted after above is marked as having dependents
    with store.engine.connect() as conn:
        J = schema.jobs
        flags = dict(conn.execute(sa.select(J.c.id, J.c.has_dependents)).all())
        assert {i: bool(flags[int(i)]) for i in jobs} == {i: int(i) == running.id for i in jobs}
        conn.rollback()
    # 0013: the queue's orders as indexes, the two they replace gone
    indexes = {
        ix["name"]: ix["column_names"] for ix in sa.inspect(store.engine).get_indexes("jobs")
    }
    assert indexes["ix_jobs_queue"] == ["state", "priority", "id"]
    assert indexes["ix_jobs_tenant_queue"] == ["state", "tenant", "priority", "id"]
    assert indexes["ix_jobs_tenant_age"] == ["state", "tenant", "id"]
    assert not {"ix_jobs_claim", "ix_jobs_tenant_state"} & set(indexes)
    # 0010: pools and costs, empty; an upgraded job's next attempt records its usage
    with store.engine.connect() as conn:
        for table in (schema.pool_config, schema.autoscaler_lease, schema.autoscaler_decisions,
                      schema.worker_drains, schema.worker_uptime, schema.attempt_usage):  # fmt: skip
            assert conn.execute(sa.select(sa.func.count()).select_from(table)).scalar() == 0
        conn.rollback()
    store.record_workers("upgrade", [Worker("tcp://w", {"CPU": 8.0}, 0.0)])
    (again,) = store.admit(
        owner="upgrade", workers=[Worker("tcp://w", {"CPU": 8.0}, 0.0)], lease_seconds=60
    ).started[:1]
    store.start_attempt(again.id, again.attempt, worker="tcp://w", lease_seconds=60)
    assert store.complete(again.id, again.attempt, result={}, cpu_seconds=1.5)
    with store.engine.connect() as conn:
        usage = conn.execute(sa.select(schema.attempt_usage)).mappings().one()
        conn.rollback()
    assert (usage["job_id"], usage["pool"], usage["cpu_seconds"]) == (again.id, "static", 1.5)


def _built_by_every_revision(url: str) -> None:
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            config = migrations._config()
            config.attributes["connection"] = conn
            command.upgrade(config, "head")
    finally:
        engine.dispose()


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_every_revision_in_turn_builds_what_a_new_database_gets(backend, tmp_path, request):
    """A fresh store is created from ``schema.metadata`` and stamped: that must be exactly
    what running every revision from the baseline builds."""
    if backend == "sqlite":
        url = f"sqlite:///{tmp_path / 'zhuge.db'}"
    else:
        base = request.getfixturevalue("postgres_url").split("?")[0]
        name = f"zr_{uuid.uuid4().hex[:10]}"
        admin = sa.create_engine(base)
        with admin.begin() as conn:
            conn.exec_driver_sql(f"CREATE SCHEMA {name}")
        request.addfinalizer(lambda: _drop(admin, name))
        url = _with_search_path(base, name)
    _built_by_every_revision(url)
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn), schema.metadata)
            conn.rollback()
        assert diff == []
        assert migrations.state(engine).up_to_date
    finally:
        engine.dispose()


def _drop(admin: sa.Engine, name: str) -> None:
    with admin.begin() as conn:
        conn.exec_driver_sql(f"DROP SCHEMA {name} CASCADE")
    admin.dispose()


def test_a_database_of_a_newer_zhuge_is_refused(tmp_path, monkeypatch):
    url = f"sqlite:///{tmp_path / 'zhuge.db'}"
    JobStore.open(url).dispose()
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.exec_driver_sql("UPDATE alembic_version SET version_num = '9999'")
    engine.dispose()
    with pytest.raises(SchemaMismatch, match="newer zhuge"):
        JobStore.open(url)
    monkeypatch.setenv("ZHUGE_DB_URL", url)
    result = CliRunner().invoke(app, ["db", "upgrade"])
    assert result.exit_code == 1 and "newer zhuge" in result.output
    result = CliRunner().invoke(app, ["db", "current", "--json"])
    assert result.exit_code == 1
    assert json.loads(result.output)["current"] == "9999"


def test_a_new_database_is_created_at_the_head_and_reports_it(tmp_path, monkeypatch):
    monkeypatch.setenv("ZHUGE_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("ZHUGE_DB_URL", raising=False)
    result = CliRunner().invoke(app, ["db", "current", "--json"])
    assert result.exit_code == 0 and json.loads(result.output)["current"] is None
    JobStore.open(f"sqlite:///{tmp_path / 'home' / 'zhuge.db'}").dispose()
    result = CliRunner().invoke(app, ["db", "current", "--json"])
    assert json.loads(result.output) | {"database": None} == {
        "database": None,
        "current": migrations.head(),
        "head": migrations.head(),
        "up_to_date": True,
        "pending": [],
    }


class _NoPipelines:
    """Firing's pipelines, empty: revision 0009's check needs only the schedules' tables."""

    def check(self, schedule, principal, slot) -> None:  # type: ignore[no-untyped-def]
        pass

    def insert(self, conn, schedule, principal, slot) -> int:  # type: ignore[no-untyped-def]
        return 0

    def active(self, conn, pipeline_id) -> bool:  # type: ignore[no-untyped-def]
        return False

    def states(self, pipeline_ids) -> dict[int, str]:  # type: ignore[no-untyped-def]
        return {}
