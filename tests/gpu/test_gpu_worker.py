"""A job that asks for a GPU runs on a Dask worker that has one, and computes there: the job
runs a torch op on CUDA and reports the device it used. Run only where an NVIDIA GPU is
visible; skipped (not failed) elsewhere, as in CI."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator
from typing import Any

import cloudpickle
import pytest

from zhuge.config import Settings
from zhuge.hardware import gpu_count
from zhuge.jobs import kinds
from zhuge.jobs.builtin import EchoParams
from zhuge.jobs.model import Principal
from zhuge.jobs.service import submit_job
from zhuge.jobs.states import JobState
from zhuge.platform import Platform

MEMBER = Principal(token_id="tok_t", tenant="t")  # who submits the jobs here


pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(gpu_count() == 0, reason="no NVIDIA GPU visible"),
]

PROBE_KIND = "test-gpu-probe"
DONE = {JobState.SUCCEEDED, JobState.DEAD, JobState.CANCELLED}
N = 1024


def run_gpu_probe(params: Any, ctx: Any) -> dict[str, Any]:
    """The probe job: a sum on the GPU, and which process and device computed it."""
    import torch

    x = torch.arange(N, dtype=torch.float32, device="cuda")
    total = (x * 2).sum()
    return {
        "pid": os.getpid(),
        "device": str(total.device),
        "device_name": torch.cuda.get_device_name(total.device),
        "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
        "sum": float(total.item()),  # .item() waits for the kernel: it ran
    }


def _register_probe() -> int:
    """Register the probe kind in the calling process (the test's, and each Dask worker's
    through ``client.run``: the registry is per process). Idempotent."""
    kinds.kind(PROBE_KIND, params=EchoParams, resources={"CPU": 1.0, "GPU": 1.0})(run_gpu_probe)
    return os.getpid()


@pytest.fixture
def probe_kind() -> Iterator[str]:
    # Dask workers cannot import this test module: send its functions by value
    module = sys.modules[__name__]
    cloudpickle.register_pickle_by_value(module)
    _register_probe()
    try:
        yield PROBE_KIND
    finally:
        kinds._REGISTRY.pop(PROBE_KIND, None)  # leave the registry as the other tests know it
        cloudpickle.unregister_pickle_by_value(module)


def test_gpu_job_computes_on_the_gpu_of_a_gpu_worker(tmp_path, probe_kind):
    settings = Settings(home=tmp_path, workers=1, poll_seconds=0.1)
    with Platform(settings) as p:
        registered = p.executor.client.run(_register_probe)
        job, _ = submit_job(
            p.store,
            principal=MEMBER,
            settings=p.settings,
            kind=probe_kind,
            params={},
            resources={"GPU": 1.0},
        )
        p.scheduler.notify()
        # a hang guard, not a speed claim: a fresh worker imports torch and starts CUDA
        deadline = time.monotonic() + 240
        while (done := p.store.get(job.id)).state not in DONE:
            assert time.monotonic() < deadline, f"probe job still {done.state}"
            time.sleep(0.1)
        gpu_workers = {w.address for w in p.executor.workers() if w.resources.get("GPU", 0) >= 1}
        pids = p.executor.worker_processes()
    assert done.state is JobState.SUCCEEDED, done.error
    result = done.result
    # it ran in a worker process that advertises a GPU, not in the test's
    assert result["pid"] != os.getpid()
    assert result["pid"] in {pids[address] for address in gpu_workers}
    assert set(registered.values()) == set(pids.values())
    # and it computed there, on CUDA
    assert result["device"].startswith("cuda"), result
    assert result["device_name"], result
    assert result["sum"] == 2 * sum(range(N))
