"""The HTTP API's contract: status codes, error shapes, idempotency, auth. No Dask needed:
the API only writes rows."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from zhuge.api.app import create_app
from zhuge.client import Client
from zhuge.config import Settings
from zhuge.errors import AuthError, IdempotencyConflict, InvalidParams, JobNotFound, UnknownKind
from zhuge.jobs.store import JobStore


@pytest.fixture
def api(db_url, tmp_path):
    settings = Settings(home=tmp_path, db_url=db_url)
    store = JobStore.open(db_url)
    token = store.issue_token("acme")
    notified = []
    app = create_app(settings, store=store, notify=lambda: notified.append(1))
    with TestClient(app) as http:
        http.headers["Authorization"] = f"Bearer {token}"
        http.notified = notified
        http.store = store
        http.token = token
        yield http
    store.dispose()


def test_submit_returns_201_and_wakes_the_scheduler(api):
    r = api.post("/v1/jobs", json={"kind": "sleep", "params": {"seconds": 2}})
    assert r.status_code == 201
    body = r.json()
    assert body["state"] == "queued" and body["params"]["seconds"] == 2.0
    assert body["tenant"] == "acme" and api.notified == [1]


def test_idempotency_key_replay_is_200_same_job_and_conflict_is_409(api):
    headers = {"Idempotency-Key": "nightly-2026-11-22"}
    body = {"kind": "echo", "params": {"x": 1}}
    first = api.post("/v1/jobs", json=body, headers=headers)
    replay = api.post("/v1/jobs", json=body, headers=headers)
    assert (first.status_code, replay.status_code) == (201, 200)
    assert first.json()["id"] == replay.json()["id"]
    clash = api.post("/v1/jobs", json={"kind": "echo", "params": {"x": 2}}, headers=headers)
    assert clash.status_code == 409
    assert clash.json()["error"]["type"] == "IdempotencyConflict"
    assert len(api.get("/v1/jobs").json()["jobs"]) == 1


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"kind": "nope"}, None),
        ({"kind": "sleep", "params": {"seconds": "abc"}}, ["seconds"]),
        ({"kind": "sleep", "params": {"seconds": -1}}, ["seconds"]),
        ({"kind": "sleep", "params": {"bogus": 1}}, ["bogus"]),
        ({"kind": "sleep", "priority": 10**6}, ["body", "priority"]),
        ({"kind": "sleep", "max_attempts": 0}, ["body", "max_attempts"]),
        ({"kind": "sleep", "resources": {"GPU": -1}}, ["body", "resources", "GPU"]),
        ({"params": {}}, ["body", "kind"]),
    ],
)
def test_bad_submissions_are_422_with_the_field_and_write_nothing(api, body, field):
    r = api.post("/v1/jobs", json=body)
    assert r.status_code == 422, r.text
    err = r.json()["error"]
    if field is None:
        assert err["type"] == "UnknownKind" and "known kinds" in err["message"]
    else:
        assert field in [d["loc"] for d in err["details"]]
    assert api.get("/v1/jobs").json()["jobs"] == []


def test_malformed_json_is_422_not_500(api):
    r = api.post("/v1/jobs", content=b"{not json", headers={"Content-Type": "application/json"})
    assert r.status_code == 422


def test_auth_missing_and_unknown_tokens_are_401(api):
    anon = api.get("/v1/jobs", headers={"Authorization": ""})
    assert anon.status_code == 401 and "missing bearer token" in anon.json()["error"]["message"]
    bad = api.get("/v1/jobs", headers={"Authorization": "Bearer zt_not-a-token"})
    assert (
        bad.status_code == 401 and "unknown, revoked or expired" in bad.json()["error"]["message"]
    )
    assert bad.headers["WWW-Authenticate"] == "Bearer"


def test_tenants_do_not_see_each_others_jobs(api):
    job_id = api.post("/v1/jobs", json={"kind": "echo"}).json()["id"]
    other = api.store.issue_token("globex")
    r = api.get(f"/v1/jobs/{job_id}", headers={"Authorization": f"Bearer {other}"})
    assert r.status_code == 404


@pytest.mark.parametrize(
    "path", ["/v1/jobs/999999", "/v1/jobs/0", "/v1/jobs/abc", "/v1/jobs/99999999999999999999999"]
)
def test_unknown_or_malformed_job_ids(api, path):
    r = api.get(path)
    assert r.status_code in (404, 422)
    assert r.json()["error"]["type"] in ("JobNotFound", "InvalidRequest")


def test_cancel_queued_job_and_cancel_finished_is_409(api):
    job_id = api.post("/v1/jobs", json={"kind": "echo"}).json()["id"]
    r = api.post(f"/v1/jobs/{job_id}/cancel")
    assert r.status_code == 200 and r.json()["state"] == "cancelled"
    assert api.post(f"/v1/jobs/{job_id}/retry").status_code == 409
    assert api.post("/v1/jobs/424242/cancel").status_code == 404


def test_status_counts_and_logs_and_events(api):
    job_id = api.post("/v1/jobs", json={"kind": "echo"}).json()["id"]
    api.store.append_logs(job_id, 1, [(1.0, "hello")])
    assert api.get("/v1/status").json()["queue_depth"] == 1
    logs = api.get(f"/v1/jobs/{job_id}/logs").json()
    assert [line["line"] for line in logs["lines"]] == ["hello"]
    events = api.get(f"/v1/jobs/{job_id}/events").json()
    assert [e["to_state"] for e in events] == ["queued"]


def test_metrics_expose_jobs_by_kind_state_queue_depth_and_histogram(api):
    api.post("/v1/jobs", json={"kind": "echo"})
    text = api.get("/metrics").text
    assert 'zhuge_jobs{kind="echo",state="queued"} 1.0' in text
    assert "zhuge_queue_depth 1.0" in text
    assert "# TYPE zhuge_job_duration_seconds histogram" in text
    assert "zhuge_workers 0.0" in text


def test_openapi_and_health(api):
    spec = api.get("/openapi.json").json()
    assert "/v1/jobs" in spec["paths"] and "/v1/jobs/{job_id}/cancel" in spec["paths"]
    assert api.get("/healthz").json() == {"status": "ok"}


def test_sdk_maps_errors_to_exceptions(api):
    c = Client("http://testserver", api.token, transport=api._transport)
    with pytest.raises(UnknownKind):
        c.submit("nope")
    with pytest.raises(InvalidParams) as info:
        c.submit("sleep", {"seconds": "x"})
    assert info.value.details[0]["loc"] == ["seconds"]
    with pytest.raises(JobNotFound):
        c.get(123456)
    c.submit("echo", idempotency_key="k")
    with pytest.raises(IdempotencyConflict):
        c.submit("echo", {"a": 1}, idempotency_key="k")
    with pytest.raises(AuthError):
        Client("http://testserver", "zt_wrong", transport=api._transport).list()


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=10), children, max_size=3)
    ),
    max_leaves=10,
)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    body=st.dictionaries(
        st.sampled_from(["kind", "params", "priority", "resources", "max_attempts", "x"]),
        json_values,
        max_size=5,
    )
)
def test_no_body_makes_a_500(api, body):
    r = api.post("/v1/jobs", json=body)
    assert r.status_code in (200, 201, 409, 422), r.text


def test_batch_submit_queues_all_in_order_with_idempotency(api):
    jobs = [{"kind": "echo", "params": {"n": i}} for i in range(5)]
    jobs.append({"kind": "echo", "params": {"n": 99}, "idempotency_key": "k"})
    jobs.append({"kind": "echo", "params": {"n": 99}, "idempotency_key": "k"})  # same job
    r = api.post("/v1/jobs/batch", json={"jobs": jobs})
    assert r.status_code == 201, r.text
    body = r.json()
    assert [j["params"].get("n") for j in body["jobs"]] == [0, 1, 2, 3, 4, 99, 99]
    assert body["created"] == [True] * 6 + [False]
    assert body["jobs"][5]["id"] == body["jobs"][6]["id"]
    assert all(j["state"] == "queued" for j in body["jobs"]) and api.notified == [1]
    replay = api.post("/v1/jobs/batch", json={"jobs": jobs[5:]})
    assert replay.status_code == 200 and replay.json()["created"] == [False, False]
    assert len(api.get("/v1/jobs").json()["jobs"]) == 6


@pytest.mark.parametrize(
    ("jobs", "status", "needle"),
    [
        ([{"kind": "echo"}, {"kind": "nope"}], 422, "jobs[1]"),
        ([{"kind": "echo"}, {"kind": "sleep", "params": {"seconds": "x"}}], 422, "jobs[1]"),
        ([], 422, "jobs"),
        ([{"kind": "echo"}] * 1001, 422, "jobs"),
        (
            [
                {"kind": "echo", "params": {"a": 1}, "idempotency_key": "k"},
                {"kind": "echo", "params": {"a": 2}, "idempotency_key": "k"},
            ],
            409,
            "twice in this batch",
        ),
    ],
)
def test_a_bad_batch_writes_nothing(api, jobs, status, needle):
    r = api.post("/v1/jobs/batch", json={"jobs": jobs})
    assert r.status_code == status, r.text
    assert needle in r.text
    assert api.get("/v1/jobs").json()["jobs"] == []


def test_batch_conflicting_with_an_earlier_job_writes_nothing(api):
    api.post(
        "/v1/jobs", json={"kind": "echo", "params": {"a": 1}}, headers={"Idempotency-Key": "k"}
    )
    jobs = [{"kind": "echo"}, {"kind": "echo", "params": {"a": 2}, "idempotency_key": "k"}]
    r = api.post("/v1/jobs/batch", json={"jobs": jobs})
    assert r.status_code == 409
    assert len(api.get("/v1/jobs").json()["jobs"]) == 1


def test_sdk_submit_many_splits_big_batches(api):
    c = Client("http://testserver", api.token, transport=api._transport)
    handles = c.submit_many([{"kind": "echo", "params": {"n": i}} for i in range(1500)])
    assert [h.raw["params"]["n"] for h in handles] == list(range(1500))
    assert len({h.id for h in handles}) == 1500


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    jobs=st.lists(
        st.dictionaries(
            st.sampled_from(["kind", "params", "priority", "idempotency_key", "max_attempts"]),
            json_values,
            max_size=4,
        ),
        max_size=3,
    )
)
def test_no_batch_makes_a_500(api, jobs):
    r = api.post("/v1/jobs/batch", json={"jobs": jobs})
    assert r.status_code in (200, 201, 409, 422), r.text
