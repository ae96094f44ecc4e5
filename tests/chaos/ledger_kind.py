"""``chaos-ledger``: a job that writes each of its executions into an independent ledger.

The ledger is outside the store: one append-only JSON-lines file per worker process, in the
folder ``ZHUGE_CHAOS_LEDGER`` names (set in the workers' environment by the chaos driver; a
job's parameters never name a file). Each execution appends a ``start`` line, sleeps
``seconds`` (``ctx.sleep``: it stops early once its lease is lost or it is cancelled), then
appends an ``end`` line with a fresh nonce and returns that nonce as its result. The store
commits one attempt's result; the ledger's ``end`` line whose nonce it holds is the job's one
committed outcome, and every other ``end`` line is an execution the store must have fenced
off. A line is one ``write`` on an ``O_APPEND`` descriptor: whole, even when the process is
killed right after.

Importing this module registers nothing: ``register()`` does, which the driver's ``zhuge up``
processes call themselves (``UP_WITH_LEDGER``) and each Dask worker calls through
``dask_setup`` (``DASK_DISTRIBUTED__WORKER__PRELOAD``).
"""

from __future__ import annotations

import json
import os
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from pydantic import Field

from zhuge.jobs.context import JobContext
from zhuge.jobs.kinds import KindParams, kind

LEDGER = "chaos-ledger"
LEDGER_ENV = "ZHUGE_CHAOS_LEDGER"
MODULE = __name__
UP_WITH_LEDGER = [
    sys.executable,
    "-c",
    f"import {MODULE}; {MODULE}.register(); from zhuge.cli import main; main()",
    "up",
]

_registered = False


class LedgerParams(KindParams):
    seconds: float = Field(0.05, ge=0, le=60, description="How long the execution takes.")
    gate: str | None = Field(
        None,
        pattern=r"^[a-z0-9-]+$",
        description="Instead of sleeping, wait (deaf to stop requests) until a file of this "
        "name exists in the ledger's folder; then write an artifact and end.",
    )


def _record(line: dict[str, Any]) -> None:
    folder = Path(os.environ[LEDGER_ENV])
    path = folder / f"{os.uname().nodename}-{os.getpid()}.jsonl"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        os.write(fd, (json.dumps(line) + "\n").encode())
    finally:
        os.close(fd)


def run_ledger(params: LedgerParams, ctx: JobContext) -> dict[str, Any]:
    nonce = uuid.uuid4().hex
    entry = {"job": ctx.job_id, "attempt": ctx.attempt, "nonce": nonce, "pid": os.getpid()}
    _record({**entry, "phase": "start", "at": time.time()})
    if params.gate is None:
        ctx.sleep(params.seconds)  # raises once the attempt must stop: no end line then
    else:
        # deaf: runs on after its lease is lost, so its commit comes late and is refused
        gate = Path(os.environ[LEDGER_ENV]) / params.gate
        while not gate.exists():
            time.sleep(0.05)
        ctx.artifacts.write_json("execution.json", entry)
    _record({**entry, "phase": "end", "at": time.time()})
    return {"nonce": nonce, "attempt": ctx.attempt}


def register() -> None:
    """Register ``chaos-ledger`` in this process (once)."""
    global _registered
    if not _registered:
        description = "Chaos runs only: records each execution in an independent ledger."
        kind(LEDGER, params=LedgerParams, description=description)(run_ledger)
        _registered = True


def dask_setup(worker: Any) -> None:
    """Dask's preload hook: each worker registers the kind as it starts."""
    register()


def read_ledger(folder: Path) -> list[dict[str, Any]]:
    """Every line every worker wrote (a torn last line cannot happen: one write each)."""
    lines: list[dict[str, Any]] = []
    for path in sorted(folder.glob("*.jsonl")):
        lines.extend(json.loads(t) for t in path.read_text().splitlines() if t.strip())
    return lines
