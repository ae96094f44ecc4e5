"""The registry's rows on SQLite and PostgreSQL: versions numbered per model, the first one
champion, aliases with history, rollback from that history, removal refused for an aliased
version, references resolved, and every tenant blind to the others' models."""

from __future__ import annotations

import pytest

from tests.conftest import empty_store
from zhuge import errors
from zhuge.jobs.registry import CHALLENGER, CHAMPION, Registry, parse_ref
from zhuge.jobs.store import JobStore


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request, tmp_path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'zhuge.db'}"
    return empty_store(request.getfixturevalue("postgres_url"))


@pytest.fixture
def registry(db_url):
    store = JobStore.open(db_url)
    ticks = iter(range(1_000_000))
    yield Registry(store.engine, clock=lambda: float(next(ticks)))
    store.dispose()


def add(registry: Registry, name: str = "fleet-cpu", tenant: str = "acme", **kwargs):
    return registry.register(
        tenant,
        name,
        artifact=f"jobs/{kwargs.get('job_id', 1)}/attempt-1/model",
        manifest_sha256="0" * 64,
        lineage={"datasets": [{"ref": "dataset://t@sha256:" + "a" * 64}]},
        **kwargs,
    )


def test_versions_count_up_and_the_first_becomes_champion(registry):
    first, second = add(registry, job_id=11), add(registry, job_id=12)
    assert (first.version, second.version) == (1, 2)
    assert registry.aliases("acme", "fleet-cpu") == {CHAMPION: 1}
    assert registry.resolve("acme", "fleet-cpu@champion").job_id == 11
    assert registry.resolve("acme", "fleet-cpu@2").job_id == 12
    (listed,) = registry.list("acme")
    assert (listed["versions"], listed["latest"], listed["aliases"]) == (2, 2, {CHAMPION: 1})


def test_rollback_walks_the_champion_history_back(registry):
    for job in (1, 2, 3):
        add(registry, job_id=job)
    registry.promote("acme", "fleet-cpu", 2, actor="tok_a")
    registry.promote("acme", "fleet-cpu", 3, actor="tok_a")
    assert registry.rollback("acme", "fleet-cpu").version == 2
    assert registry.rollback("acme", "fleet-cpu").version == 1  # two rollbacks go two back
    with pytest.raises(errors.Conflict, match="no previous champion"):
        registry.rollback("acme", "fleet-cpu")
    history = [
        (e["action"], e["version"], e["previous_version"])
        for e in registry.show("acme", "fleet-cpu")["alias_history"]
    ]
    assert history == [
        ("register", 1, None),
        ("promote", 2, 1),
        ("promote", 3, 2),
        ("rollback", 2, 3),
        ("rollback", 1, 2),
    ]


def test_an_aliased_version_cannot_be_removed_and_numbers_are_never_reused(registry):
    add(registry, job_id=1), add(registry, job_id=2)
    registry.set_alias("acme", "fleet-cpu", "staging", 2)
    with pytest.raises(errors.Conflict, match="is champion"):
        registry.remove("acme", "fleet-cpu", 1)
    with pytest.raises(errors.Conflict, match="is staging"):
        registry.remove("acme", "fleet-cpu", 2)
    registry.set_alias("acme", "fleet-cpu", "staging", 1)
    assert registry.remove("acme", "fleet-cpu", 2) == 2
    assert [v.version for v in registry.versions("acme", "fleet-cpu")] == [1]
    assert add(registry, job_id=3).version == 3
    with pytest.raises(errors.ModelNotFound, match="no version 2"):
        registry.resolve("acme", "fleet-cpu@2")


def test_the_gate_promotes_or_names_a_challenger(registry):
    add(registry, job_id=1), add(registry, job_id=2), add(registry, job_id=3)
    registry.record_gate("acme", "fleet-cpu", 2, {"decision": "challenger"}, promote=False)
    assert registry.aliases("acme", "fleet-cpu") == {CHAMPION: 1, CHALLENGER: 2}
    registry.record_gate("acme", "fleet-cpu", 3, {"decision": "promoted"}, promote=True)
    assert registry.aliases("acme", "fleet-cpu") == {CHAMPION: 3, CHALLENGER: 2}
    assert registry.version("acme", "fleet-cpu", 3).gate == {"decision": "promoted"}
    assert registry.rollback("acme", "fleet-cpu").version == 1


def test_another_tenant_sees_nothing(registry):
    add(registry, job_id=1)
    assert registry.list("other") == []
    for attempt in (
        lambda: registry.resolve("other", "fleet-cpu@champion"),
        lambda: registry.show("other", "fleet-cpu"),
        lambda: registry.promote("other", "fleet-cpu", 1),
        lambda: registry.remove("other", "fleet-cpu", 1),
        lambda: registry.rollback("other", "fleet-cpu"),
    ):
        with pytest.raises(errors.ModelNotFound, match="no registered model 'fleet-cpu'"):
            attempt()
    # the same name in another tenant is another model
    assert add(registry, tenant="other", job_id=9).version == 1
    assert registry.resolve("acme", "fleet-cpu@champion").job_id == 1


@pytest.mark.parametrize(
    "ref", ["fleet", "fleet@", "@champion", "fl eet@champion", "../x@1", "fleet@champion@2"]
)
def test_malformed_references_are_refused(ref):
    with pytest.raises(errors.InvalidRequest, match="not a model reference"):
        parse_ref(ref)


def test_bad_config_names_the_field(registry):
    with pytest.raises(errors.InvalidParams, match="margin") as raised:
        add(registry, config={"margin": -1})
    assert raised.value.details[0]["loc"] == ["config", "margin"]
    assert registry.list("acme") == []  # nothing changed


def test_the_api_refuses_bad_input_with_the_field_and_changes_nothing(db_url, tmp_path):
    from fastapi.testclient import TestClient

    from zhuge.api.app import create_app
    from zhuge.config import Settings

    store = JobStore.open(db_url)
    token = store.issue_token("acme")
    settings = Settings(home=tmp_path / "home", db_url=db_url)
    add(Registry(store.engine), job_id=1)
    headers = {"Authorization": f"Bearer {token}"}
    with TestClient(create_app(settings, store=store)) as http:
        before = http.get("/v1/models/fleet-cpu", headers=headers).json()
        answers = {
            "alias": http.put(
                "/v1/models/fleet-cpu/aliases/9lives", json={"version": 1}, headers=headers
            ),
            "version": http.post(
                "/v1/models/fleet-cpu/promote", json={"version": 0}, headers=headers
            ),
            "config": http.patch(
                "/v1/models/fleet-cpu/config", json={"config": {"test": "t"}}, headers=headers
            ),
            "name": http.get("/v1/models/bad%20name", headers=headers),
        }
        for field, answer in answers.items():
            assert answer.status_code == 422, (field, answer.text)
            assert field in answer.text and "Traceback" not in answer.text
        missing = http.post("/v1/models/fleet-cpu/promote", json={"version": 7}, headers=headers)
        assert missing.status_code == 404 and "no version 7" in missing.text
        after = http.get("/v1/models/fleet-cpu", headers=headers).json()
        assert after == before
    store.dispose()


def test_a_job_records_the_version_it_used_once_fenced_by_its_attempt(db_url, tmp_path):
    import hashlib

    store = JobStore.open(db_url)
    root = tmp_path / "artifacts"
    for job in (1, 2):  # each version's model folder, with the manifest registered
        folder = root / f"jobs/{job}/attempt-1/model"
        folder.mkdir(parents=True)
        (folder / "manifest.json").write_bytes(b'{"job": %d}' % job)
    registry = Registry(store.engine)
    for job in (1, 2):
        registry.register(
            "acme",
            "fleet-cpu",
            artifact=f"jobs/{job}/attempt-1/model",
            manifest_sha256=hashlib.sha256(b'{"job": %d}' % job).hexdigest(),
            lineage={},
            job_id=job,
        )
    forecast, _ = store.submit(tenant="acme", kind="echo", params={})
    (running,) = store.claim(limit=1, owner="test", lease_seconds=60)
    use = dict(job_id=forecast.id, artifacts_root=f"file://{root}")
    # an attempt that is not the job's current one resolves but records nothing
    assert (
        registry.use("acme", "fleet-cpu@champion", attempt=running.attempt + 1, **use).version == 1
    )
    assert (store.get(forecast.id).model_ref, store.get(forecast.id).model_version) == (None, None)
    registry.use("acme", "fleet-cpu@champion", attempt=running.attempt, **use)
    registry.promote("acme", "fleet-cpu", 2)
    # the job keeps what it recorded, and resolving it again gives that version
    again = registry.use("acme", "fleet-cpu@champion", attempt=running.attempt, **use)
    assert again.version == 1 and again.job_id == 1
    recorded = store.get(forecast.id)
    assert (recorded.model_ref, recorded.model_version) == ("fleet-cpu@champion", "fleet-cpu@1")
    assert [u["job_id"] for u in registry.used_by("acme", "fleet-cpu")] == [forecast.id]
    with pytest.raises(errors.ModelNotFound):  # another tenant's reference is unknown
        registry.use("other", "fleet-cpu@champion", attempt=running.attempt, **use)
    store.dispose()
