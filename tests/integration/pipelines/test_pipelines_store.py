"""Pipelines on the store (``zhuge.jobs.pipelines``), on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import sqlalchemy as sa

from zhuge.jobs import schema
from zhuge.jobs.pipelines import (
    PipelineNotFound,
    PipelineSpec,
    cancel_pipeline,
    get_pipeline,
    insert_pipeline,
    list_pipelines,
    submit_pipeline,
)
from zhuge.jobs.states import JobState
from zhuge.jobs.store import transaction

SLOT = datetime(2026, 3, 8, 2, 0, tzinfo=UTC)

DIAMOND = {
    "name": "diamond",
    "params": {"seconds": 0.5},
    "steps": {
        "first": {"kind": "sleep", "params": {"seconds": "{{ seconds }}"}},
        "left": {"kind": "echo", "params": {"text": "step://first/out.json"}},
        "right": {"kind": "sleep", "after": ["first"]},
        "last": {"kind": "sleep", "after": ["left", "right"], "priority": 7},
    },
}


def run_to_success(store, job_id: int) -> None:
    owner = f"run-{job_id}"
    (job,) = [j for j in store.claim(limit=100, owner=owner, lease_seconds=30) if j.id == job_id]
    assert store.complete(job.id, job.attempt, result={})
    store.release(owner)


def test_a_pipeline_is_inserted_with_its_edges_and_references(store):
    pipeline_id = submit_pipeline(
        store, tenant="t1", spec=PipelineSpec.parse(DIAMOND, slot=SLOT), origin="test"
    )
    view = get_pipeline(store, pipeline_id, tenant="t1")
    steps = {s.name: s for s in view.steps}
    assert [s.name for s in view.steps] == ["first", "left", "right", "last"]
    assert {n: s.state for n, s in steps.items()} == {
        "first": JobState.QUEUED,
        "left": JobState.BLOCKED,
        "right": JobState.BLOCKED,
        "last": JobState.BLOCKED,
    }
    assert steps["left"].after == ("first",)  # implied by its step:// reference
    assert steps["last"].after == ("left", "right")
    left = store.get(steps["left"].job_id)
    assert left.params["text"] == f"job://{steps['first'].job_id}/out.json"
    assert (left.pipeline_id, left.step) == (pipeline_id, "left")
    assert store.get(steps["first"].job_id).params["seconds"] == 0.5  # typed, not "0.5"
    assert store.get(steps["last"].job_id).priority == 7
    assert (view.name, view.origin, view.params, view.state) == (
        "diamond",
        "test",
        {"seconds": 0.5},
        "waiting",
    )

    run_to_success(store, steps["first"].job_id)
    assert get_pipeline(store, pipeline_id).state == "running"
    for name in ("left", "right", "last"):
        run_to_success(store, steps[name].job_id)
    assert get_pipeline(store, pipeline_id).state == "succeeded"


def test_insert_pipeline_writes_in_the_callers_transaction(store):
    spec = PipelineSpec.parse(DIAMOND, slot=SLOT)

    class Abort(Exception):
        pass

    with pytest.raises(Abort), transaction(store.engine) as conn:
        insert_pipeline(conn, store, tenant="t1", spec=spec)
        raise Abort  # the caller's later write failed: nothing of the pipeline remains
    with store.engine.connect() as conn:
        for table in (schema.pipelines, schema.jobs, schema.job_dependencies):
            assert conn.execute(sa.select(sa.func.count()).select_from(table)).scalar() == 0


def test_cancel_a_pipeline_cancels_every_unfinished_step(store):
    pipeline_id = store.submit_pipeline(tenant="t1", spec=PipelineSpec.parse(DIAMOND, slot=SLOT))
    first = get_pipeline(store, pipeline_id).steps[0]
    run_to_success(store, first.job_id)
    view = cancel_pipeline(store, pipeline_id, tenant="t1")
    assert [s.state.value for s in view.steps] == [
        "succeeded",
        "cancelled",
        "cancelled",
        "cancelled",
    ]
    assert view.state == "cancelled"
    assert store.claim(limit=10, owner="s", lease_seconds=30) == []


def test_a_dead_step_fails_the_pipeline_and_cancels_what_follows(store):
    pipeline_id = store.submit_pipeline(tenant="t1", spec=PipelineSpec.parse(DIAMOND, slot=SLOT))
    first = get_pipeline(store, pipeline_id).steps[0]
    (job,) = store.claim(limit=1, owner="s", lease_seconds=30)
    store.fail_attempt(job.id, job.attempt, error="boom", traceback=None, retryable=False)
    view = get_pipeline(store, pipeline_id)
    assert job.id == first.job_id
    assert [s.state.value for s in view.steps] == ["dead", "cancelled", "cancelled", "cancelled"]
    assert view.state == "failed"
    store.requeue_dead(first.job_id)
    assert get_pipeline(store, pipeline_id).state == "waiting"


def test_pipelines_are_tenant_scoped(store):
    mine = store.submit_pipeline(tenant="t1", spec=PipelineSpec.parse(DIAMOND, slot=SLOT))
    theirs = store.submit_pipeline(tenant="t2", spec=PipelineSpec.parse(DIAMOND, slot=SLOT))
    assert [p.id for p in list_pipelines(store, tenant="t1")] == [mine]
    assert [p.id for p in list_pipelines(store)] == [theirs, mine]
    with pytest.raises(PipelineNotFound):
        get_pipeline(store, theirs, tenant="t1")
    with pytest.raises(PipelineNotFound):
        cancel_pipeline(store, theirs, tenant="t1")
    assert get_pipeline(store, theirs).state == "waiting"
