"""/v1/schedules through the SDK and raw HTTP: the pipeline as text, as an object or as a
template; refusals are 4xx naming what is wrong; another tenant gets 404; every change is
audited."""

from __future__ import annotations

import pytest
import yaml
from fastapi.testclient import TestClient

from tests.integration.schedules.conftest import ECHO_PIPELINE
from zhuge import errors
from zhuge.api.app import create_app
from zhuge.client import Client
from zhuge.config import Settings


@pytest.fixture
def api(store, tmp_path):
    tokens = {who: store.issue_token(who) for who in ("acme", "other")}
    settings = Settings(home=tmp_path, db_url=str(store.engine.url), data_roots=(tmp_path,))
    with TestClient(create_app(settings, store=store)) as http:
        sdk = {
            who: Client("http://testserver", token, transport=http._transport)
            for who, token in tokens.items()
        }
        yield http, sdk


def test_the_pipeline_as_text_as_an_object_or_a_template(api, tmp_path):
    _, sdk = api
    acme = sdk["acme"]
    text = acme.add_schedule("text", "0 2 * * *", pipeline=ECHO_PIPELINE)
    obj = acme.add_schedule("object", "0 3 * * *", pipeline=yaml.safe_load(ECHO_PIPELINE))
    tmpl = acme.add_schedule(
        "tmpl", "0 4 * * *", template="fleet-nightly",
        params={"source": str(tmp_path / "t.parquet"), "vms": str(tmp_path / "v.parquet")},
    )  # fmt: skip
    assert text["document"] == ECHO_PIPELINE and yaml.safe_load(obj["document"])["name"] == "tiny"
    assert tmpl["template"] == "fleet-nightly" and "model-train" in tmpl["document"]
    listed = acme.schedules()
    assert [s["name"] for s in listed] == ["object", "text", "tmpl"]
    assert all("document" not in s and s["next_slot"]["utc"].endswith("+00:00") for s in listed)
    assert text["created_at"] == "2026-01-01T00:00:00Z"  # times are ISO 8601, UTC


def test_refusals_name_what_is_wrong_and_store_nothing(api, store):
    http, sdk = api
    token = sdk["acme"].token
    headers = {"Authorization": f"Bearer {token}"}
    body = {"name": "x", "cron": "0 2 * * *", "pipeline": ECHO_PIPELINE}
    answer = http.post("/v1/schedules", json={**body, "colour": "red"}, headers=headers)
    assert answer.status_code == 422 and "colour" in answer.json()["error"]["message"]
    answer = http.post("/v1/schedules", json={**body, "template": "fleet-nightly"}, headers=headers)
    assert answer.status_code == 422 and "not both" in answer.json()["error"]["message"]
    answer = http.post("/v1/schedules", json={**body, "pipeline": "a: &a [*a]"}, headers=headers)
    assert answer.status_code == 422 and "aliases" in answer.json()["error"]["message"]
    answer = http.post("/v1/schedules", json={**body, "cron": "0 0 30 2 *"}, headers=headers)
    assert answer.status_code == 422 and "never matches" in answer.json()["error"]["message"]
    assert http.post("/v1/schedules", json=body).status_code == 401
    assert sdk["acme"].schedules() == []


def test_another_tenant_gets_404_and_changes_are_audited(api, store):
    _, sdk = api
    sdk["acme"].add_schedule("nightly", "0 2 * * *", pipeline=ECHO_PIPELINE)
    other = sdk["other"]
    for call in (
        lambda: other.schedule("nightly"),
        lambda: other.pause_schedule("nightly"),
        lambda: other.resume_schedule("nightly"),
        lambda: other.run_schedule_now("nightly"),
        lambda: other.remove_schedule("nightly"),
    ):
        with pytest.raises(errors.NotFound, match="does not exist"):
            call()
    assert other.schedules() == []
    sdk["acme"].pause_schedule("nightly", "maintenance")
    run = sdk["acme"].run_schedule_now("nightly")
    assert run["trigger"] == "manual" and run["pipeline_id"] is not None
    sdk["acme"].remove_schedule("nightly")
    actions = [a.action for a in store.tenancy.audit(tenant="acme")]
    for action in ("schedule.add", "schedule.pause", "schedule.run_now", "schedule.remove"):
        assert action in actions
