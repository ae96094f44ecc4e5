"""Job kinds that wait for the test: how a platform test forces an outcome instead of racing.

A test that must kill a worker while its job is mid-run, or hold every slot while it queues
more, submits ``test-gate`` jobs: each runs until the file its ``path`` names exists (or it is
cancelled), so "still running" and "still queued" hold by construction until the test opens
the gate (``Gate.open``). ``test-map`` fans parts out with ``ctx.map`` that wait the same way,
and can wait until parts have started in several processes at once.

The kinds must be registered wherever such a job is submitted or run: importing this module
registers them in the test process (submissions are validated against the registry);
``LoadGateKinds`` does it in every worker of an in-process cluster, restarted ones included
(``client.register_plugin(LoadGateKinds())``); a ``zhuge up`` subprocess imports this module
itself and preloads it in its workers (``DASK_DISTRIBUTED__WORKER__PRELOAD``).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from distributed.diagnostics.plugin import WorkerPlugin
from pydantic import Field

from zhuge.jobs.context import JobContext
from zhuge.jobs.kinds import KindParams, kind

GATE = "test-gate"
MAP = "test-map"
POLL_SECONDS = 0.02
PART_PATIENCE_SECONDS = 300.0
"""A part cannot see its job's cancellation; it gives up waiting after this (and says so)."""


@dataclass(frozen=True)
class Gate:
    """A file that opens the gate by existing."""

    path: Path

    @property
    def params(self) -> dict[str, str]:
        return {"path": str(self.path)}

    def open(self) -> None:
        self.path.touch()


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


def started_parts(markers: Path) -> list[tuple[int, int]]:
    """(part, pid) of each part that has started."""
    out = []
    for marker in markers.glob("part-*-pid-*"):
        _, part, _, pid = marker.name.split("-")
        out.append((int(part), int(pid)))
    return sorted(out)


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


class LoadGateKinds(WorkerPlugin):
    """Registers these kinds in each worker, including workers that join or restart later
    (unpickling the plugin imports this module)."""

    name = "zhuge-gate-kinds"

    def setup(self, worker: Any) -> None:
        import importlib

        importlib.import_module(__name__)
