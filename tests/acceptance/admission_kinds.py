"""The kinds ``test_admission_live.py`` runs on its servers: ``test-hold`` and the gate kinds
(``tests/integration/platform/gate.py``).

``test-hold`` is borrowed work that does not stop at once when admission asks it to yield:
it ignores every stop request until the file its ``path`` names exists, then runs until it
is stopped (``ctx.sleep`` raises as soon as it is preempted or cancelled). So a job waiting
for a reclaim is still waiting when the test looks at it, by construction, and the order of
the reclaim's events does not depend on how fast anything ran.

As with the gate kinds, importing this module registers nothing (the test process, which
imports it while collecting, lists the product's kinds only): ``register()`` does, which a
``zhuge up`` subprocess calls itself (``UP_WITH_KINDS``) and Dask calls in each of its
workers through ``dask_setup`` (``DASK_DISTRIBUTED__WORKER__PRELOAD``: ``MODULE``).
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any

from pydantic import Field

from tests.integration.platform.gate import register_gate_kinds
from zhuge.jobs.context import JobContext
from zhuge.jobs.kinds import KindParams, kind

HOLD = "test-hold"
MODULE = __name__
UP_WITH_KINDS = [
    sys.executable,
    "-c",
    f"import {MODULE}; {MODULE}.register(); from zhuge.cli import main; main()",
    "up",
]
"""`zhuge up` (its arguments follow) with these kinds registered in the server."""
POLL_SECONDS = 0.02

_registered = False


class HoldParams(KindParams):
    path: str = Field(description="Ignore stop requests until this file exists.")


def run_hold(params: HoldParams, ctx: JobContext) -> dict[str, Any]:
    ctx.log(f"holding on until {params.path} exists")
    while not os.path.exists(params.path):
        time.sleep(POLL_SECONDS)  # not ctx.sleep: a request to stop is not seen here
    while True:
        ctx.sleep(POLL_SECONDS)  # raises JobPreempted / JobCancelled once asked to stop


def register() -> None:
    """Register ``test-hold`` and the gate kinds in this process (once)."""
    global _registered
    if not _registered:
        register_gate_kinds()
        description = "Tests only: deaf to stop requests until a file exists."
        kind(HOLD, params=HoldParams, description=description)(run_hold)
        _registered = True


def dask_setup(worker: Any) -> None:
    """Dask's preload hook: each worker registers the kinds as it starts."""
    register()
