"""The kinds ``test_admission_live.py`` runs on its servers; importing this module registers
them, and the gate kinds (``tests/integration/platform/gate.py``) with them.

``test-hold`` is borrowed work that does not stop at once when admission asks it to yield:
it ignores every stop request until the file its ``path`` names exists, then runs until it
is stopped (``ctx.sleep`` raises as soon as it is preempted or cancelled). So a job waiting
for a reclaim is still waiting when the test looks at it, by construction, and the order of
the reclaim's events does not depend on how fast anything ran.
"""

from __future__ import annotations

import os
import time
from typing import Any

from pydantic import Field

import tests.integration.platform.gate_kinds  # noqa: F401  (registers test-gate too)
from zhuge.jobs.context import JobContext
from zhuge.jobs.kinds import KindParams, kind

HOLD = "test-hold"
ADMISSION_KINDS_MODULE = "tests.acceptance.admission_kinds"
POLL_SECONDS = 0.02


class HoldParams(KindParams):
    path: str = Field(description="Ignore stop requests until this file exists.")


@kind(HOLD, params=HoldParams, description="Tests only: deaf to stop requests until a file exists.")
def run_hold(params: HoldParams, ctx: JobContext) -> dict[str, Any]:
    ctx.log(f"holding on until {params.path} exists")
    while not os.path.exists(params.path):
        time.sleep(POLL_SECONDS)  # not ctx.sleep: a request to stop is not seen here
    while True:
        ctx.sleep(POLL_SECONDS)  # raises JobPreempted / JobCancelled once asked to stop
