"""Two attempts holding a quarter of one GPU each run at once in processes of their own, each
capped to its share of the device's memory: one that allocates past its share fails saying
so, and its neighbour runs on. Needs PyTorch with CUDA; skipped (not failed) elsewhere."""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

import pytest
from pydantic import Field

torch = pytest.importorskip("torch")
if not torch.cuda.is_available():
    pytest.skip("no CUDA device visible to PyTorch", allow_module_level=True)

from tests.conftest import wait_for  # noqa: E402
from zhuge.jobs.context import JobContext  # noqa: E402
from zhuge.jobs.kinds import KindParams, kind  # noqa: E402
from zhuge.jobs.model import Worker  # noqa: E402
from zhuge.jobs.runner import AttemptSpec, _worker_name, run_attempt  # noqa: E402
from zhuge.jobs.states import JobState  # noqa: E402
from zhuge.jobs.store import store_for  # noqa: E402

pytestmark = pytest.mark.gpu

SHARE = "test-gpu-share"
QUARTER = {"CPU": 1.0, "GPU": 0.25}


class ShareParams(KindParams):
    share_of_device: float = Field(description="Allocate this fraction of the device.")
    gate: str = Field("", description="Then hold it until this file exists.")


@kind(SHARE, params=ShareParams, description="Tests only: allocate part of a GPU.")
def run_share(params: ShareParams, ctx: JobContext) -> dict[str, Any]:
    total = torch.cuda.get_device_properties(0).total_memory
    held = torch.empty(int(total * params.share_of_device), dtype=torch.uint8, device="cuda")
    ctx.log(f"holding {held.numel()} bytes")
    while params.gate and not os.path.exists(params.gate):
        ctx.sleep(0.02)
    return {
        "fraction": os.environ.get("ZHUGE_GPU_MEMORY_FRACTION"),
        "devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
        "pid": os.getpid(),
    }


def attempt_of(db_url: str, artifacts: str, store) -> AttemptSpec:
    (job,) = wait_for(
        lambda: store.claim(limit=1, owner="s", lease_seconds=30), what="a job to be claimed"
    )
    return AttemptSpec(
        db_url, artifacts, job.id, job.attempt, 30, 0.05, owner="s", resources=QUARTER
    )


def test_a_job_over_its_gpu_share_fails_and_its_neighbour_runs_on(tmp_path: Path) -> None:
    db_url = f"sqlite:///{tmp_path / 'zhuge.db'}"
    store = store_for(db_url)
    store.record_workers("s", [Worker(_worker_name(), {"CPU": 2.0, "GPU": 1.0}, 0.0)])
    gate = tmp_path / "gate"
    modest, _ = store.submit(
        tenant="t",
        kind=SHARE,
        params={"share_of_device": 0.05, "gate": str(gate)},
        resources=QUARTER,
    )
    outcome: dict[str, Any] = {}
    spec = attempt_of(db_url, tmp_path.as_uri(), store)
    beside = threading.Thread(target=lambda: outcome.update(run_attempt(spec)), daemon=True)
    beside.start()
    wait_for(
        lambda: any("holding" in line.line for line in store.logs(modest.id)),
        what="the modest job to hold its memory",
    )
    greedy, _ = store.submit(
        tenant="t",
        kind=SHARE,
        params={"share_of_device": 0.4},
        resources=QUARTER,
        max_attempts=1,
    )
    run_attempt(attempt_of(db_url, tmp_path.as_uri(), store))
    failed = store.get(greedy.id)
    assert failed.state is JobState.DEAD
    assert failed.error.startswith(
        "ResourceLimitExceeded: the job used more GPU memory than its share (GPU=0.25"
    )
    # the neighbour on the same device ran on, and ends as it should
    assert beside.is_alive() and store.get(modest.id).state is JobState.RUNNING
    gate.touch()
    wait_for(lambda: not beside.is_alive(), what="the modest job to end")
    done = store.get(modest.id)
    assert done.state is JobState.SUCCEEDED
    assert done.result["fraction"] == "0.25"
    assert done.result["pid"] != os.getpid()
