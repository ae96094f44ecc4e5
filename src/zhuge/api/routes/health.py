"""/readyz: whether the deployment behind this API process can make progress.

``/healthz`` (in ``system``) stays liveness: the process answers and touches the database.
``/readyz`` answers 200 when ready and 503 with the reasons when not
(``zhuge.jobs.liveness``); like ``/healthz`` it needs no token, so load balancers and
orchestrators can ask it, and its reasons name failures, never servers or files.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from zhuge.api.auth import StoreDep
from zhuge.jobs.liveness import readiness

router = APIRouter()


# Not in the OpenAPI document: a probe for load balancers and orchestrators (documented in
# docs/operations.md), whose 503 is an answer; API clients and fuzzers that read any 5xx as
# the server failing would take it for one.
@router.get("/readyz", include_in_schema=False)
def readyz(store: StoreDep) -> Any:
    """Ready (200), or not (503) while the database is unreachable or refuses writes, no
    scheduler loop is alive, or jobs are queued and no worker is known."""
    found = readiness(store)
    return JSONResponse(found.as_dict(), status_code=200 if found.ready else 503)
