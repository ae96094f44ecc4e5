"""The gate kinds themselves (``gate.py`` says what they are for); importing this module
registers them."""

from __future__ import annotations

import os
import time
from functools import partial
from pathlib import Path
from typing import Any

from pydantic import Field

from tests.integration.platform.gate import GATE, MAP, started_parts
from zhuge.jobs.context import JobContext
from zhuge.jobs.kinds import KindParams, kind

POLL_SECONDS = 0.02
PART_PATIENCE_SECONDS = 300.0
"""A part cannot see its job's cancellation; it gives up waiting after this (and says so)."""


class GateParams(KindParams):
    path: str = Field(description="Run until this file exists.")


@kind(GATE, params=GateParams, description="Tests only: run until a file exists.")
def run_gate(params: GateParams, ctx: JobContext) -> dict[str, Any]:
    ctx.log(f"waiting for {params.path}")
    while not os.path.exists(params.path):
        ctx.sleep(POLL_SECONDS)  # raises JobCancelled as soon as the job is cancelled
    return {"attempt": ctx.attempt, "pid": os.getpid()}


class MapParams(KindParams):
    markers: str = Field(description="A folder where each part leaves a file when it starts.")
    parts: int = Field(4, ge=1, le=64)
    gate: str | None = Field(None, description="Parts wait until this file exists.")
    processes: int = Field(
        1, ge=1, description="Parts wait until parts have started in this many processes."
    )


def _wait_part(markers: str, gate: str | None, processes: int, index: int) -> dict[str, Any]:
    folder = Path(markers)
    (folder / f"part-{index}-pid-{os.getpid()}").touch()
    give_up = time.monotonic() + PART_PATIENCE_SECONDS
    while time.monotonic() < give_up:
        pids = {pid for _, pid in started_parts(folder)}
        if len(pids) >= processes and (gate is None or os.path.exists(gate)):
            return {"part": index, "pid": os.getpid(), "met": True}
        time.sleep(POLL_SECONDS)
    return {"part": index, "pid": os.getpid(), "met": False}


@kind(MAP, params=MapParams, description="Tests only: ctx.map parts that wait.")
def run_map(params: MapParams, ctx: JobContext) -> dict[str, Any]:
    Path(params.markers).mkdir(parents=True, exist_ok=True)
    part = partial(_wait_part, params.markers, params.gate, params.processes)
    results = ctx.map(part, range(params.parts), message="parts")
    return {"pids": sorted({r["pid"] for r in results}), "met": all(r["met"] for r in results)}
