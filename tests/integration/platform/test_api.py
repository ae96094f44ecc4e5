"""The HTTP API's contract: status codes, error shapes, idempotency, auth. No Dask needed:
the API only writes rows."""

from __future__ import annotations

import threading

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import wait_for
from tests.integration.platform.fakes import FakeExecutor
from zhuge.api.app import create_app
from zhuge.client import Client
from zhuge.config import Settings
from zhuge.errors import AuthError, IdempotencyConflict, InvalidParams, JobNotFound, UnknownKind
from zhuge.jobs.scheduler import Scheduler
from zhuge.jobs.states import JobState
from zhuge.jobs.store import JobStore


@pytest.fixture
def api(db_url, tmp_path):
    settings = Settings(home=tmp_path, db_url=db_url)
    store = JobStore.open(db_url)
    token = store.issue_token("acme")
    notified = []
    app = create_app(settings, store=store, notify=lambda *_: notified.append(1))
    with TestClient(app) as http:
        http.headers["Authorization"] = f"Bearer {token}"
        http.notified = notified
        http.store = store
        http.token = token
        yield http
    store.dispose()


class _WatchedEvent(threading.Event):
    """The scheduler's wake-up event, telling the test when the loop is asleep on it."""

    def __init__(self) -> None:
        super().__init__()
        self.sleeping = threading.Event()

    def wait(self, timeout: float | None = None) -> bool:
        self.sleeping.set()
        try:
            return super().wait(timeout)
        finally:
            self.sleeping.clear()


@pytest.fixture
def api_with_scheduler(db_url, tmp_path):
    """The API wired to a real scheduler loop that, unless woken, looks at the queue once an
    hour: a job it admits at once was admitted because the API woke it."""
    settings = Settings(home=tmp_path, db_url=db_url, poll_seconds=3600.0)
    store = JobStore.open(db_url)
    scheduler = Scheduler(store, FakeExecutor(cpu=1), settings)
    scheduler.wake = _WatchedEvent()
    scheduler.start()
    app = create_app(settings, store=store, notify=scheduler.notify)
    with TestClient(app) as http:
        http.headers["Authorization"] = f"Bearer {store.issue_token('acme')}"
        http.scheduler = scheduler
        yield http
    scheduler.stop()
    store.dispose()


def asleep(scheduler: Scheduler) -> None:
    wait_for(scheduler.wake.sleeping.is_set, what="the scheduler loop to go idle")


def test_submit_returns_201_and_wakes_the_scheduler(api_with_scheduler):
    api = api_with_scheduler
    asleep(api.scheduler)
    r = api.post("/v1/jobs", json={"kind": "sleep", "params": {"seconds": 2}})
    assert r.status_code == 201
    body = r.json()
    assert body["state"] == "queued" and body["params"]["seconds"] == 2.0
    assert body["tenant"] == "acme"
    wait_for(lambda: api.scheduler.executor.futures, what="the scheduler to admit the job")
    assert list(api.scheduler.executor.futures) == [(body["id"], 1)]
    assert api.get(f"/v1/jobs/{body['id']}").json()["state"] == "running"


def test_retrying_a_dead_job_requeues_it_and_wakes_the_scheduler(api_with_scheduler):
    api, store = api_with_scheduler, api_with_scheduler.scheduler.store
    asleep(api.scheduler)  # so it cannot take the job before this test fails it
    job, _ = store.submit(tenant="acme", kind="echo", params={}, max_attempts=1)
    (claimed,) = store.claim(limit=1, owner="elsewhere", lease_seconds=30)
    store.fail_attempt(job.id, claimed.attempt, error="boom", traceback="tb")
    assert store.get(job.id).state is JobState.DEAD
    r = api.post(f"/v1/jobs/{job.id}/retry")
    assert r.status_code == 200, r.text
    assert (r.json()["state"], r.json()["failures"]) == ("queued", 0)
    wait_for(lambda: api.scheduler.executor.futures, what="the scheduler to admit the job")
    assert list(api.scheduler.executor.futures) == [(job.id, 2)]
    events = api.get(f"/v1/jobs/{job.id}/events").json()
    assert [e["to_state"] for e in events][-3:] == ["dead", "queued", "running"]
    assert events[-2]["message"] == "retried by hand"


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
    ("path", "status", "error"),
    [
        ("/v1/jobs/999999", 404, "JobNotFound"),
        ("/v1/jobs/0", 422, "InvalidRequest"),  # ids start at 1
        ("/v1/jobs/abc", 422, "InvalidRequest"),
        ("/v1/jobs/99999999999999999999999", 422, "InvalidRequest"),  # past a 64-bit id
    ],
)
def test_unknown_or_malformed_job_ids(api, path, status, error):
    r = api.get(path)
    assert (r.status_code, r.json()["error"]["type"]) == (status, error)


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


def test_list_filters_by_state_and_kind_and_pages_with_before_id(api):
    ids = [
        api.post("/v1/jobs", json={"kind": "echo", "params": {"n": i}}).json()["id"]
        for i in range(5)
    ]
    sleep_id = api.post("/v1/jobs", json={"kind": "sleep"}).json()["id"]
    api.post(f"/v1/jobs/{ids[1]}/cancel")
    other = api.store.issue_token("globex")
    api.post("/v1/jobs", json={"kind": "echo"}, headers={"Authorization": f"Bearer {other}"})

    def listed(**query) -> tuple[list[int], int | None]:
        r = api.get("/v1/jobs", params=query)
        assert r.status_code == 200, r.text
        return [j["id"] for j in r.json()["jobs"]], r.json()["next_before_id"]

    assert listed() == ([sleep_id, *ids[::-1]], None)  # newest first, this tenant's only
    assert listed(kind="echo", state="queued") == ([ids[4], ids[3], ids[2], ids[0]], None)
    assert listed(state="cancelled") == ([ids[1]], None)
    page, cursor = listed(kind="echo", limit=2)
    assert (page, cursor) == ([ids[4], ids[3]], ids[3])
    page, cursor = listed(kind="echo", limit=2, before_id=cursor)
    assert (page, cursor) == ([ids[2], ids[1]], ids[1])
    assert listed(kind="echo", limit=2, before_id=cursor) == ([ids[0]], None)
    bad = api.get("/v1/jobs", params={"state": "nope"})
    assert bad.status_code == 422 and ["query", "state"] in [
        d["loc"] for d in bad.json()["error"]["details"]
    ]


def test_kinds_lists_each_kind_with_its_parameter_schema(api):
    r = api.get("/v1/kinds")
    assert r.status_code == 200
    kinds = {k["name"]: k for k in r.json()}
    assert {"sleep", "echo", "burn", "forecast", "cluster", "plan-migration"} <= set(kinds)
    sleep = kinds["sleep"]
    assert sleep["resources"] == {"CPU": 1.0} and sleep["description"]
    props = sleep["params_schema"]["properties"]
    assert set(props) == {"seconds", "fail_times", "bad_input"}
    assert props["seconds"]["default"] == 1.0 and props["seconds"]["minimum"] == 0
    assert api.get("/v1/kinds", headers={"Authorization": ""}).status_code == 401
