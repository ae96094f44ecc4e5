"""Job kinds for exercising the platform itself: ``sleep``, ``echo`` and ``burn``."""

from __future__ import annotations

import os
import time
from typing import Any

from pydantic import Field

from zhuge.errors import DataError
from zhuge.jobs.context import JobContext
from zhuge.jobs.kinds import KindParams, kind


class SleepParams(KindParams):
    seconds: float = Field(1.0, ge=0, le=86_400, description="How long to sleep.")
    fail_times: int = Field(
        0, ge=0, description="Fail the first N attempts with an error (to exercise retries)."
    )
    bad_input: bool = Field(
        False, description="Fail with a data error, which is not retried (to exercise that)."
    )


class SleepFailure(RuntimeError):
    pass


@kind("sleep", params=SleepParams, description="Sleep for a while; optionally fail first.")
def run_sleep(params: SleepParams, ctx: JobContext) -> dict[str, Any]:
    if params.bad_input:
        raise DataError("this job was asked to fail with a data error")
    if ctx.attempt <= params.fail_times:
        raise SleepFailure(f"failing attempt {ctx.attempt} of {params.fail_times} on purpose")
    ctx.log(f"sleeping {params.seconds}s")
    slept = 0.0
    step = 0.1
    while slept < params.seconds:
        chunk = min(step, params.seconds - slept)
        ctx.sleep(chunk)
        slept += chunk
        ctx.progress(slept, params.seconds)
    ctx.log("awake")
    return {"slept": params.seconds, "attempt": ctx.attempt}


class EchoParams(KindParams):
    model_config = KindParams.model_config | {"extra": "allow"}


@kind("echo", params=EchoParams, description="Return the parameters it was given.")
def run_echo(params: EchoParams, ctx: JobContext) -> dict[str, Any]:
    return params.model_dump(mode="json")


class BurnParams(KindParams):
    seconds: float = Field(1.0, ge=0, le=3600, description="CPU time to burn (per part).")
    parts: int = Field(
        1, ge=1, le=64, description="Burn in this many parts spread over the cluster (ctx.map)."
    )


def _burn(seconds: float) -> dict[str, int]:
    start = time.process_time()
    spins = 0
    while time.process_time() - start < seconds:
        spins += sum(range(10_000)) > 0
    return {"spins": spins, "pid": os.getpid()}


@kind("burn", params=BurnParams, description="Keep cores busy; for CPU accounting tests.")
def run_burn(params: BurnParams, ctx: JobContext) -> dict[str, Any]:
    if params.parts == 1:
        start = time.process_time()
        spins = 0
        while time.process_time() - start < params.seconds:
            spins += sum(range(10_000)) > 0
            if spins % 100 == 0:
                ctx.check_cancelled()
        return {"spins": spins, "pids": [os.getpid()]}
    parts = ctx.map(_burn, [params.seconds] * params.parts, message="parts burnt")
    return {
        "spins": sum(p["spins"] for p in parts),
        "pids": sorted({p["pid"] for p in parts}),
    }
