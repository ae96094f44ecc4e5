"""Run only where an NVIDIA GPU is visible; skipped (not failed) elsewhere, as in CI."""

from __future__ import annotations

import time

import pytest

from zhuge.config import Settings
from zhuge.hardware import gpu_count
from zhuge.jobs.service import submit_job
from zhuge.jobs.states import JobState
from zhuge.platform import Platform

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(gpu_count() == 0, reason="no NVIDIA GPU visible"),
]


def test_gpu_job_runs_on_a_worker_that_advertises_a_gpu(tmp_path):
    settings = Settings(home=tmp_path, workers=1, poll_seconds=0.1)
    with Platform(settings) as p:
        job, _ = submit_job(p.store, tenant="t", kind="echo", params={}, resources={"GPU": 1.0})
        p.scheduler.notify()
        deadline = time.monotonic() + 60
        while p.store.get(job.id).state is not JobState.SUCCEEDED:
            assert time.monotonic() < deadline
            time.sleep(0.1)
        workers = p.store.workers()
        assert any(w.resources.get("GPU", 0) >= 1 for w in workers)
