"""/v1/pipelines and ``after`` on /v1/jobs: status codes, refusals with nothing stored,
tenant scope (SQLite and PostgreSQL; no Dask: the API only writes rows)."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from zhuge.api.app import create_app
from zhuge.config import Settings
from zhuge.jobs import schema
from zhuge.jobs.store import JobStore

DIAMOND = {
    "name": "diamond",
    "params": {"seconds": 1},
    "steps": {
        "a": {"kind": "sleep", "params": {"seconds": "{{ seconds }}"}},
        "b": {"kind": "sleep", "after": ["a"]},
        "c": {"kind": "echo", "params": {"text": "step://a/out.json"}},
        "d": {"kind": "sleep", "after": ["b", "c"]},
    },
}


@pytest.fixture
def api(db_url, tmp_path):
    settings = Settings(home=tmp_path, db_url=db_url)
    store = JobStore.open(db_url)
    notified: list[int] = []
    app = create_app(settings, store=store, notify=lambda *_: notified.append(1))
    with TestClient(app) as http:
        http.headers["Authorization"] = f"Bearer {store.issue_token('acme')}"
        http.other = {"Authorization": f"Bearer {store.issue_token('rival')}"}
        http.admin = {"Authorization": f"Bearer {store.issue_token('ops', role='admin')}"}
        http.store = store
        http.notified = notified
        yield http
    store.dispose()


def rows(store: JobStore) -> dict[str, int]:
    with store.engine.connect() as conn:
        return {
            t.name: conn.execute(sa.select(sa.func.count()).select_from(t)).scalar()
            for t in (schema.pipelines, schema.jobs, schema.job_dependencies)
        }


def test_post_a_pipeline_answers_its_graph(api):
    r = api.post("/v1/pipelines", json={"document": DIAMOND, "params": {"seconds": 2}})
    assert r.status_code == 201, r.text
    body = r.json()
    assert (body["name"], body["state"], body["params"]) == ("diamond", "waiting", {"seconds": 2})
    steps = {s["name"]: s for s in body["steps"]}
    assert {n: s["state"] for n, s in steps.items()} == {
        "a": "queued",
        "b": "blocked",
        "c": "blocked",
        "d": "blocked",
    }
    assert steps["d"]["after"] == ["b", "c"] and steps["c"]["after"] == ["a"]
    assert api.notified == [1]
    job = api.get(f"/v1/jobs/{steps['c']['job_id']}").json()
    assert job["params"]["text"] == f"job://{steps['a']['job_id']}/out.json"
    assert (job["pipeline_id"], job["step"], job["after"]) == (
        body["id"],
        "c",
        [steps["a"]["job_id"]],
    )
    assert api.get(f"/v1/jobs/{steps['a']['job_id']}").json()["params"]["seconds"] == 2
    assert api.get(f"/v1/pipelines/{body['id']}").json() == body
    assert [p["id"] for p in api.get("/v1/pipelines").json()["pipelines"]] == [body["id"]]


@pytest.mark.parametrize(
    ("steps", "params", "where"),
    [
        ({"a": {"kind": "sleep", "after": ["b"]}, "b": {"kind": "sleep", "after": ["a"]}}, {}, ["steps"]),
        ({"a": {"kind": "sleep", "after": ["zz"]}}, {}, ["steps", "a", "after", 0]),
        ({"a": {"kind": "nope"}}, {}, ["steps", "a", "kind"]),
        ({"a": {"kind": "sleep", "params": {"seconds": "soon"}}}, {}, ["steps", "a", "params", "seconds"]),
        ({"a": {"kind": "echo", "params": {"text": "step://zz/f"}}}, {}, ["steps", "a", "params", "text"]),
        ({"a": {"kind": "sleep"}}, {"colour": "red"}, ["params", "colour"]),
        ({"a": {"kind": "prepare", "params": {"input": "/etc/passwd"}}}, {}, ["steps", "a", "params", "input"]),
    ],
)  # fmt: skip
def test_refusals_name_the_step_and_field_and_store_nothing(api, steps, params, where):
    document = {"name": "bad", "steps": steps}
    r = api.post("/v1/pipelines", json={"document": document, "params": params})
    assert r.status_code == 422, r.text
    error = r.json()["error"]
    assert error["type"] == "InvalidPipeline"
    assert error["details"][0]["loc"] == where
    assert rows(api.store) == {"pipelines": 0, "jobs": 0, "job_dependencies": 0}
    assert api.notified == []


def test_pipelines_are_tenant_scoped(api):
    mine = api.post("/v1/pipelines", json={"document": DIAMOND}).json()
    assert api.get("/v1/pipelines", headers=api.other).json()["pipelines"] == []
    for method, path in (("GET", ""), ("POST", "/cancel")):
        r = api.request(method, f"/v1/pipelines/{mine['id']}{path}", headers=api.other)
        assert r.status_code == 404 and r.json()["error"]["type"] == "PipelineNotFound"
    assert api.get(f"/v1/pipelines/{mine['id']}").json()["state"] == "waiting"
    listed = api.get("/v1/pipelines", headers=api.admin).json()["pipelines"]
    assert [p["tenant"] for p in listed] == ["acme"]


def test_cancel_a_pipeline(api):
    mine = api.post("/v1/pipelines", json={"document": DIAMOND}).json()
    r = api.post(f"/v1/pipelines/{mine['id']}/cancel")
    assert r.status_code == 200
    assert r.json()["state"] == "cancelled"
    assert {s["state"] for s in r.json()["steps"]} == {"cancelled"}
    again = api.post(f"/v1/pipelines/{mine['id']}/cancel")
    assert again.status_code == 200 and again.json() == r.json()


def test_submit_after_and_batch_after(api):
    first = api.post("/v1/jobs", json={"kind": "sleep"}).json()
    r = api.post("/v1/jobs", json={"kind": "sleep", "after": [first["id"]]})
    assert r.status_code == 201
    assert r.json()["state"] == "blocked"
    assert api.get(f"/v1/jobs/{r.json()['id']}").json()["after"] == [first["id"]]
    batch = api.post(
        "/v1/jobs/batch",
        json={"jobs": [{"kind": "sleep", "after": [first["id"]]}, {"kind": "sleep"}]},
    ).json()
    assert [j["state"] for j in batch["jobs"]] == ["blocked", "queued"]
    listed = api.get("/v1/jobs", params={"state": "blocked"}).json()["jobs"]
    assert len(listed) == 2
    assert api.get("/v1/status").json()["queue_depth"] == 2  # first and the batch's second


def test_submit_after_a_job_of_another_tenant_or_none_is_refused(api):
    theirs = api.post("/v1/jobs", json={"kind": "sleep"}, headers=api.other).json()
    for after in ([theirs["id"]], [10**9], [0]):
        r = api.post("/v1/jobs", json={"kind": "sleep", "after": after})
        assert r.status_code == 422, r.text
    assert api.get("/v1/jobs").json()["jobs"] == []


def test_a_shipped_template_by_name(api):
    r = api.post(
        "/v1/pipelines",
        json={"template": "fleet-nightly", "params": {"source": "dataset://nope", "vms": "x"}},
    )
    # the template was loaded and checked: its first step reads a dataset this tenant lacks
    assert r.status_code == 422
    assert r.json()["error"]["details"][0]["loc"][:3] == ["steps", "prepare", "params"]
    for body, message in (
        ({"template": "nightly-ish"}, "no pipeline template named 'nightly-ish'"),
        ({"template": "fleet-nightly", "document": DIAMOND}, "one of them"),
        ({"params": {}}, "one of them"),
    ):
        r = api.post("/v1/pipelines", json=body)
        assert r.status_code == 422 and message in r.json()["error"]["message"]
    assert rows(api.store) == {"pipelines": 0, "jobs": 0, "job_dependencies": 0}
