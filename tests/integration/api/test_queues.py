"""Queues through the HTTP API and the SDK, over a real store on SQLite and PostgreSQL: an
admin applies the queues file (a bad one is refused naming the field, changing nothing), the
status per tenant (a member sees its own row), why a job waits or where it runs, and the
admission fields of a submission. No Dask and no scheduler: rows stand in for what admission
writes (``pending_reason``, ``assigned_workers``), so nothing depends on timing."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from tests.conftest import AdminApi, FakeClock, empty_store
from zhuge.api.app import create_app
from zhuge.config import Settings
from zhuge.errors import Forbidden, InvalidRequest, JobNotFound
from zhuge.jobs import schema
from zhuge.jobs.model import Worker
from zhuge.jobs.queues import ordinal, possessive
from zhuge.jobs.store import JobStore

QUEUES = """\
resources: [CPU, GPU, memory_gb]
cohorts:
  research: {tenants: [forecasting, analytics]}
tenants:
  forecasting: {weight: 2, nominal: {CPU: 8, GPU: 1}, borrowing_limit: {CPU: 8}}
  analytics:   {weight: 1, nominal: {CPU: 4}, lending_limit: {CPU: 2}}
preemption: {reclaim_within_cohort: lower_priority, within_tenant: lower_priority, grace: 30s}
fair_share: {half_life: 1h}
"""


@pytest.fixture(params=["sqlite", "postgres"])
def store(request, tmp_path):
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'zhuge.db'}"
    else:
        url = empty_store(request.getfixturevalue("postgres_url"))
    s = JobStore.open(url, clock=FakeClock())
    yield s
    s.dispose()


class Api(AdminApi):
    def submit(self, tenant: str, **body) -> dict:
        r = self.call("POST", "/v1/jobs", self.member(tenant), json={"kind": "sleep", **body})
        assert r.status_code == 201, r.text
        self.store.clock.now += 1  # each job a second younger than the one before
        return r.json()

    def put(self, job_id: int, **values) -> None:
        """Write what the scheduler would have (a start, a reason, an end)."""
        with self.store._tx() as conn:
            conn.execute(schema.jobs.update().where(schema.jobs.c.id == job_id).values(**values))


@pytest.fixture
def api(store, tmp_path):
    admin = store.issue_token("default", "admin token written by zhuge up", role="admin")
    settings = Settings(home=tmp_path, db_url=str(store.engine.url))
    with TestClient(create_app(settings, store=store)) as http:
        yield Api(http, store, admin)


def _audit(store: JobStore, action: str) -> list:
    return [e for e in store.tenancy.audit() if e.action == action]


# -- apply --------------------------------------------------------------------------------


def test_admin_applies_yaml_and_reads_it_back_with_who_and_when(api):
    assert api.call("GET", "/v1/queues").json()["document"] is None  # never applied
    r = api.call("PUT", "/v1/queues", content=QUEUES, headers={"Content-Type": "application/yaml"})
    assert r.status_code == 200, r.text
    got = api.call("GET", "/v1/queues").json()
    assert got == r.json()
    assert got["document"] == QUEUES
    assert got["config"]["tenants"]["forecasting"]["nominal"] == {"CPU": 8.0, "GPU": 1.0}
    assert got["config"]["cohorts"]["research"]["tenants"] == ["forecasting", "analytics"]
    assert got["config"]["preemption"]["grace"] == 30.0
    admin_id = api.store.principal_for_token(api.admin).token_id
    assert got["applied_by"] == admin_id and got["applied_at"].startswith("2023-11-14")
    (entry,) = _audit(api.store, "queues.apply")
    assert (entry.outcome, entry.target, entry.token_id) == ("ok", "queues", admin_id)
    assert entry.details["tenants"] == ["analytics", "forecasting"]


def test_json_bodies_carry_the_file_as_text_or_as_an_object(api):
    r = api.call("PUT", "/v1/queues", json={"document": QUEUES})
    assert r.status_code == 200 and r.json()["document"] == QUEUES
    as_object = {"tenants": {"analytics": {"weight": 3}}}
    r = api.call("PUT", "/v1/queues", json={"document": as_object})
    assert r.status_code == 200, r.text
    assert r.json()["config"]["tenants"]["analytics"]["weight"] == 3.0
    assert "analytics" in r.json()["document"] and "forecasting" not in r.json()["document"]


@pytest.mark.parametrize(
    ("body", "where"),
    [
        ("tenants: {a: {weight: [}", "not valid YAML"),
        ("tenants:\n  a: {weight: -1}\n", "tenants.a.weight"),
        ("tenants:\n  a: {nominal: {TPU: 1}}\n", "tenants.a.nominal names TPU"),
        ("tenants:\n  a: {wieght: 2}\n", "tenants.a.wieght"),
        ("fair_share: {half_life: soon}\n", "fair_share.half_life"),
        ("- just\n- a list\n", "must be a mapping"),
    ],
)
def test_a_bad_file_is_refused_naming_the_field_and_nothing_changes(api, body, where):
    assert api.call("PUT", "/v1/queues", content=body).status_code == 422  # none in force yet
    assert api.call("PUT", "/v1/queues", content=QUEUES).status_code == 200
    r = api.call("PUT", "/v1/queues", content=body, headers={"Content-Type": "text/yaml"})
    assert r.status_code == 422, r.text
    assert r.json()["error"]["type"] == "InvalidRequest"
    assert where in r.json()["error"]["message"]
    assert api.call("GET", "/v1/queues").json()["document"] == QUEUES
    assert _audit(api.store, "queues.apply")[0].outcome == "InvalidRequest"


def test_bad_json_bodies_are_refused(api):
    for body in ({"doc": QUEUES}, {"document": 3}, {"document": QUEUES, "x": 1}, [QUEUES]):
        r = api.call("PUT", "/v1/queues", json=body)
        assert r.status_code == 422, body
    r = api.call("PUT", "/v1/queues", content=b"\xff\xfe", headers={"Content-Type": "text/plain"})
    assert r.status_code == 422 and "UTF-8" in r.json()["error"]["message"]


def test_a_member_may_neither_apply_nor_read_the_configuration(api):
    member = api.member("analytics")
    r = api.call("PUT", "/v1/queues", member, content=QUEUES)
    assert r.status_code == 403 and r.json()["error"]["type"] == "Forbidden"
    assert api.call("GET", "/v1/queues", member).status_code == 403
    assert api.call("GET", "/v1/queues").json()["document"] is None
    assert [e.outcome for e in _audit(api.store, "queues.apply")] == ["Forbidden"]
    assert api.call("PUT", "/v1/queues", "wrong", content=QUEUES).status_code == 401


# -- status -------------------------------------------------------------------------------


def _cluster(api) -> None:
    """Three workers of 8 CPU (one with 2 GPU), forecasting running a gang of 2 × 6 CPU
    (4 borrowed beyond its nominal 8) and one queued; analytics 1 queued; usage
    remembered for forecasting."""
    api.call("PUT", "/v1/queues", content=QUEUES)
    api.store.record_workers(
        "sched-1",
        [
            Worker("tcp://w1", {"CPU": 8, "memory_gb": 32}, 0),
            Worker("tcp://w2", {"CPU": 8, "memory_gb": 32}, 0),
            Worker("tcp://w3", {"CPU": 8, "GPU": 2, "memory_gb": 64}, 0),
        ],
    )
    gang = api.submit("forecasting", resources={"CPU": 6, "memory_gb": 4}, gang=2)
    api.put(gang["id"], state="running", attempt=1, assigned_workers=["tcp://w1", "tcp://w2"])
    api.submit("forecasting", resources={"CPU": 1})
    api.submit("analytics", resources={"CPU": 2})
    with api.store._tx() as conn:
        conn.execute(
            schema.tenant_usage.insert().values(
                tenant="forecasting", usage={"CPU": 7200.0}, updated_at=api.store.clock() - 3600
            )
        )


def test_status_shows_an_admin_every_tenant_against_quota_and_weight(api):
    _cluster(api)
    r = api.call("GET", "/v1/queues/status")
    assert r.status_code == 200, r.text
    status = r.json()
    assert status["resources"] == ["CPU", "GPU", "memory_gb"]
    rows = {t["tenant"]: t for t in status["tenants"]}
    assert sorted(rows) == ["analytics", "forecasting"]
    fc = rows["forecasting"]
    assert (fc["running"], fc["queued"], fc["weight"], fc["cohort"]) == (1, 1, 2.0, "research")
    assert fc["usage"] == {"CPU": 12.0, "GPU": 0.0, "memory_gb": 8.0}  # resources × gang
    assert fc["nominal"] == {"CPU": 8.0, "GPU": 1.0}
    assert fc["borrowed"] == {"CPU": 4.0, "memory_gb": 8.0}  # no nominal memory: all borrowed
    assert fc["dominant_share"] == pytest.approx(12 / 24)
    assert fc["fair_share"] == pytest.approx(12 / 24 / 2)
    assert fc["weight_share"] == pytest.approx(2 / 3)
    assert fc["decayed_usage"] == {"CPU": pytest.approx(3600.0)}  # one half-life ago
    an = rows["analytics"]
    assert (an["running"], an["queued"], an["borrowed"], an["fair_share"]) == (0, 1, {}, 0.0)
    assert an["lending_limit"] == {"CPU": 2.0}
    assert status["cluster"] == {
        "capacity": {"CPU": 24.0, "GPU": 2.0, "memory_gb": 128.0},
        "usage": {"CPU": 12.0, "memory_gb": 8.0},
        "running": 1,
        "queued": 2,
        "workers": 3,
    }


def test_a_member_sees_its_own_tenant_and_the_cluster_totals(api):
    _cluster(api)
    status = api.call("GET", "/v1/queues/status", api.member("analytics")).json()
    assert [t["tenant"] for t in status["tenants"]] == ["analytics"]
    assert (status["cluster"]["running"], status["cluster"]["queued"]) == (1, 2)
    lonely = api.call("GET", "/v1/queues/status", api.member("newcomer")).json()
    assert lonely["tenants"] == [] and lonely["cluster"]["workers"] == 3


def test_status_with_no_configuration_gives_every_tenant_weight_one(api):
    api.submit("a")
    api.submit("b")
    rows = api.call("GET", "/v1/queues/status").json()["tenants"]
    assert [(t["tenant"], t["weight"], t["queued"], t["nominal"]) for t in rows] == [
        ("a", 1.0, 1, {}),
        ("b", 1.0, 1, {}),
    ]
    assert [t["weight_share"] for t in rows] == [0.5, 0.5]


# -- why ----------------------------------------------------------------------------------


def test_why_a_queued_job_waits_and_where_it_stands(api):
    api.call("PUT", "/v1/queues", content=QUEUES + "aging: {every: 0}\n")
    first = api.submit("forecasting")
    other = api.submit("analytics", priority=5)
    mine = api.submit("forecasting", resources={"CPU": 2}, gang=4, timeout_s=600)
    api.submit("forecasting", priority=-1)  # behind it
    reason = "waiting for quota: forecasting uses 8/8 CPU, cohort has 0 idle"
    api.put(mine["id"], pending_reason=reason)

    r = api.call("GET", f"/v1/jobs/{mine['id']}/why", api.member("forecasting"))
    assert r.status_code == 200, r.text
    why = r.json()
    assert (why["position_in_tenant"], why["tenant_queued"]) == (2, 3)
    assert (why["position_in_cluster"], why["cluster_queued"]) == (3, 4)
    assert why["pending_reason"] == reason and why["state"] == "queued"
    assert (why["resources"], why["gang"], why["timeout_s"]) == ({"CPU": 2.0}, 4, 600.0)
    assert why["summary"] == (
        f"job {mine['id']} is 2nd in forecasting's queue and 3rd in the cluster: {reason}"
    )
    assert api.call("GET", f"/v1/jobs/{first['id']}/why").json()["position_in_cluster"] == 2
    assert api.call("GET", f"/v1/jobs/{other['id']}/why").json()["position_in_cluster"] == 1
    # tenant scoped like GET /v1/jobs/{id}
    r = api.call("GET", f"/v1/jobs/{mine['id']}/why", api.member("analytics"))
    assert r.status_code == 404 and r.json()["error"]["type"] == "JobNotFound"


def test_aging_lifts_an_old_low_priority_job_past_younger_higher_ones(api):
    api.call("PUT", "/v1/queues", content="aging: {every: 10m}\n")
    old = api.submit("a", priority=0)
    api.store.clock.now += 3 * 600  # it has waited half an hour: effective priority 3
    api.submit("a", priority=2)
    api.submit("a", priority=5)
    why = api.call("GET", f"/v1/jobs/{old['id']}/why").json()
    assert why["position_in_tenant"] == 2
    assert why["effective_priority"] == pytest.approx(3 + 3 / 600)  # and the 3 s of the submits


def test_why_a_running_job_names_its_workers_and_a_finished_one_its_end(api):
    running = api.submit("a", gang=2)
    api.put(running["id"], state="running", attempt=1, assigned_workers=["tcp://w1", "tcp://w2"])
    why = api.call("GET", f"/v1/jobs/{running['id']}/why").json()
    assert why["state"] == "running" and why["workers"] == ["tcp://w1", "tcp://w2"]
    assert why["summary"] == f"job {running['id']} is running on tcp://w1, tcp://w2"
    assert why["position_in_tenant"] is None

    api.put(running["id"], preempt_requested_at=api.store.clock())
    why = api.call("GET", f"/v1/jobs/{running['id']}/why").json()
    assert "asked to yield" in why["summary"] and why["preempt_requested_at"] is not None

    cancelled = api.submit("a")
    api.call("POST", f"/v1/jobs/{cancelled['id']}/cancel")
    why = api.call("GET", f"/v1/jobs/{cancelled['id']}/why").json()
    assert why["summary"] == f"job {cancelled['id']} is cancelled: it has finished"
    api.put(running["id"], state="dead", error="ValueError: no\nmore")
    why = api.call("GET", f"/v1/jobs/{running['id']}/why").json()
    assert why["summary"].endswith("is dead: it has finished (ValueError: no)")
    assert api.call("GET", "/v1/jobs/999999/why").status_code == 404


# -- submit -------------------------------------------------------------------------------


def test_submit_round_trips_gang_timeout_and_placement(api):
    job = api.submit("a", resources={"CPU": 2}, gang=3, timeout_s=90.5, placement="spread")
    assert (job["gang"], job["timeout_s"], job["placement"]) == (3, 90.5, "spread")
    assert job["assigned_workers"] is None and job["pending_reason"] is None
    again = api.call("GET", f"/v1/jobs/{job['id']}").json()
    assert (again["gang"], again["timeout_s"], again["placement"]) == (3, 90.5, "spread")
    stored = api.store.get(job["id"])
    assert (stored.gang, stored.timeout_s, stored.placement) == (3, 90.5, "spread")
    plain = api.submit("a")
    assert (plain["gang"], plain["timeout_s"], plain["placement"]) == (1, None, None)

    r = api.call(
        "POST",
        "/v1/jobs/batch",
        json={"jobs": [{"kind": "sleep", "gang": 2, "placement": "binpack"}, {"kind": "sleep"}]},
    )
    assert r.status_code == 201, r.text
    jobs = r.json()["jobs"]
    assert [(j["gang"], j["placement"]) for j in jobs] == [(2, "binpack"), (1, None)]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("gang", 0),
        ("gang", -2),
        ("gang", 100_000),
        ("gang", 1.5),
        ("timeout_s", 0),
        ("timeout_s", -5),
        ("placement", "pack"),
        ("placement", ""),
    ],
)
def test_bad_admission_fields_are_refused_and_nothing_is_queued(api, field, value):
    r = api.call("POST", "/v1/jobs", json={"kind": "sleep", field: value})
    assert r.status_code == 422, r.text
    assert field in r.json()["error"]["message"]
    r = api.call("POST", "/v1/jobs/batch", json={"jobs": [{"kind": "sleep", field: value}]})
    assert r.status_code == 422 and field in r.json()["error"]["message"]
    with api.store.engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(schema.jobs)).scalar() == 0


# -- SDK ----------------------------------------------------------------------------------


def test_sdk_applies_reads_and_explains(api, tmp_path):
    admin = api.sdk()
    path = tmp_path / "queues.yaml"
    path.write_text(QUEUES)
    assert admin.apply_queues(path)["document"] == QUEUES
    assert admin.queues()["config"]["tenants"]["analytics"]["weight"] == 1.0
    assert admin.apply_queues({"tenants": {"x": {"weight": 5}}})["config"]["tenants"]["x"]
    with pytest.raises(InvalidRequest, match=r"tenants\.x\.weight") as err:
        admin.apply_queues("tenants: {x: {weight: 0}}")
    assert err.value.details["errors"][0]["field"] == "tenants.x.weight"

    member = api.sdk(api.member("x"))
    with pytest.raises(Forbidden):
        member.apply_queues(QUEUES)
    job = member.submit("sleep", {"seconds": 0}, gang=2, timeout_s=30, placement="spread")
    assert (job["gang"], job["timeout_s"], job["placement"]) == (2, 30.0, "spread")
    why = member.why(job.id)
    assert why["position_in_tenant"] == 1 and why["summary"].startswith(f"job {job.id} is 1st")
    status = member.queue_status()
    assert [(t["tenant"], t["weight"], t["queued"]) for t in status["tenants"]] == [("x", 5.0, 1)]
    with pytest.raises(JobNotFound):
        api.sdk(api.member("y")).why(job.id)


def test_positions_and_names_read_as_words():
    assert [ordinal(n) for n in (1, 2, 3, 4, 11, 12, 13, 21, 22, 101, 111)] == [
        "1st", "2nd", "3rd", "4th", "11th", "12th", "13th", "21st", "22nd", "101st", "111th"
    ]  # fmt: skip
    assert (possessive("forecasting"), possessive("analytics")) == ("forecasting's", "analytics'")


# -- demand -------------------------------------------------------------------------------


def test_demand_is_what_would_start_with_room_and_only_an_admin_reads_it(api):
    """One worker of CPU=4, full: analytics' CPU=2 jobs wait for capacity (demand), a gang of
    two CPU=1 copies too; forecasting's job over its borrowing limit waits for quota and is
    not demand."""
    api.store.queues.apply(
        "tenants:\n  forecasting: {nominal: {CPU: 4}, borrowing_limit: {CPU: 0}}\n"
        "  analytics: {nominal: {CPU: 8}}\n"
    )
    api.store.record_workers("s", [Worker("tcp://w1", {"CPU": 4.0}, 0)])
    busy = api.submit("forecasting", resources={"CPU": 4})
    api.put(busy["id"], state="running", attempt=1, assigned_workers=["tcp://w1"])
    api.submit("forecasting", resources={"CPU": 1})  # past its limit: quota, not capacity
    for _ in range(2):
        api.submit("analytics", resources={"CPU": 2})
    api.submit("analytics", resources={"CPU": 1}, gang=2)
    r = api.call("GET", "/v1/queues/demand")
    assert r.status_code == 200, r.text
    demand = {
        (tuple(sorted(d["resources"].items())), d["gang"]): d["count"] for d in r.json()["demand"]
    }
    assert demand == {
        ((("CPU", 2.0),), 1): 2,
        ((("CPU", 1.0),), 2): 1,
    }
    assert api.sdk().queue_demand() == r.json()["demand"]
    refused = api.call("GET", "/v1/queues/demand", api.member("analytics"))
    assert refused.status_code == 403
