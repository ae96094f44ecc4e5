"""The scheduler's housekeeping fires the schedules on the store's clock: driven by hand with
a fake Dask executor, the slot's first step is admitted in the same turn it fired."""

from __future__ import annotations

from tests.integration.platform.fakes import FakeExecutor
from tests.integration.schedules.conftest import ECHO_PIPELINE, utc
from zhuge.config import Settings
from zhuge.jobs.scheduler import HOUSEKEEPING_SECONDS, Scheduler


def test_a_due_slot_fires_in_housekeeping_and_its_first_step_is_admitted(
    store, clock, member, tmp_path
):
    settings = Settings(home=tmp_path, db_url=str(store.engine.url))
    scheduler = Scheduler(store, FakeExecutor(cpu=4), settings, name="s1", clock=clock)
    scheduler.schedules.add(member, name="nightly", cron="0 2 * * *", document=ECHO_PIPELINE)
    clock.set(utc(2026, 1, 1, 1, 59))
    assert scheduler.run_once() is False  # not yet: nothing fired, nothing admitted
    clock.set(utc(2026, 1, 1, 2, 0, 1) + HOUSEKEEPING_SECONDS)
    assert scheduler.run_once() is True
    (run,) = scheduler.schedules.runs(scheduler.schedules.get("acme", "nightly").id)
    assert (run.slot, run.outcome) == (utc(2026, 1, 1, 2), "fired")
    jobs = {j.params.get("greeting"): j for j in store.list(tenant="acme", limit=10)}
    first = jobs["hello world"]
    assert list(scheduler.executor.futures) == [(first.id, 1)]  # the second waits, blocked
    clock.set(clock.now + 2 * HOUSEKEEPING_SECONDS)
    scheduler.run_once()
    assert len(scheduler.schedules.runs(run.schedule_id)) == 1  # the slot fired once
