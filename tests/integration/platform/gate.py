"""Job kinds that wait for the test: how a platform test forces an outcome instead of racing.

A test that must kill a worker while its job is mid-run, or hold every slot while it queues
more, submits ``test-gate`` jobs: each runs until the file its ``path`` names exists (or it is
cancelled), so "still running" and "still queued" hold by construction until the test opens
the gate (``Gate.open``). ``test-map`` fans parts out with ``ctx.map`` that wait the same way,
and can wait until parts have started in several processes at once.

The kinds live in ``gate_kinds`` and are registered only where a test asks for them, so the
kinds a process lists otherwise are the product's: the ``gate_kinds`` fixture registers them
in the test process (submissions are checked against the registry), ``LoadGateKinds`` in
every worker of an in-process cluster, restarted ones included
(``client.register_plugin(LoadGateKinds())``), and a ``zhuge up`` subprocess imports
``KINDS_MODULE`` itself and preloads it in its workers (``DASK_DISTRIBUTED__WORKER__PRELOAD``).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from distributed.diagnostics.plugin import WorkerPlugin

GATE = "test-gate"
MAP = "test-map"
KINDS_MODULE = "tests.integration.platform.gate_kinds"


def register_gate_kinds() -> None:
    """Register ``test-gate`` and ``test-map`` in this process (once)."""
    importlib.import_module(KINDS_MODULE)


@dataclass(frozen=True)
class Gate:
    """A file that opens the gate by existing."""

    path: Path

    @property
    def params(self) -> dict[str, str]:
        return {"path": str(self.path)}

    def open(self) -> None:
        self.path.touch()


def started_parts(markers: Path) -> list[tuple[int, int]]:
    """(part, pid) of each ``test-map`` part that has started."""
    out = []
    for marker in markers.glob("part-*-pid-*"):
        _, part, _, pid = marker.name.split("-")
        out.append((int(part), int(pid)))
    return sorted(out)


class LoadGateKinds(WorkerPlugin):
    """Registers the gate kinds in each worker, including workers that join or restart later."""

    name = "zhuge-gate-kinds"

    def setup(self, worker: Any) -> None:
        register_gate_kinds()
