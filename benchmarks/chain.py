"""CPU per chained job: one worker running N queued no-op jobs back to back, in-process.

What a worker task does after its first job (``runner.run_attempt`` with chaining on):
commit the result and claim the next job in one transaction, run it, repeat. No HTTP, no
scheduler, no Dask: the floor of the worker's cost per job.

    python -m benchmarks.chain [--jobs 2000] [--db-url postgresql+psycopg://...]
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

from zhuge.jobs.kinds import get_kind
from zhuge.jobs.runner import AttemptSpec, run_attempt
from zhuge.jobs.store import JobRequest, JobStore


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--jobs", type=int, default=2000)
    parser.add_argument("--db-url", default=None, help="default: SQLite in a temporary folder")
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="zhuge-chain-"))
    url = args.db_url or f"sqlite:///{home / 'zhuge.db'}"
    store = JobStore.open(url)
    owner = f"bench-{time.time_ns()}"
    store.submit_many(tenant="bench", requests=[JobRequest("echo", {}) for _ in range(args.jobs)])
    (first,) = store.claim(limit=1, owner=owner, lease_seconds=60)
    get_kind("echo")  # import the kind modules before timing
    spec = AttemptSpec(
        db_url=url,
        artifacts_url=(home / "artifacts").as_uri(),
        job_id=first.id,
        attempt=first.attempt,
        lease_seconds=60,
        heartbeat_seconds=5,
        owner=owner,
        resources={"CPU": 1.0},
        chain_seconds=3600,
    )
    wall, cpu = time.perf_counter(), time.process_time()
    outcome = run_attempt(spec)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    ran = outcome["chained"] + 1
    result = {
        "benchmark": "chain",
        "db": url.split(":", 1)[0],
        "jobs": ran,
        "cpu_ms_per_job": round(cpu / ran * 1000, 3),
        "wall_ms_per_job": round(wall / ran * 1000, 3),
        "machine": f"{platform.machine()}, Python {platform.python_version()}",
    }
    print(
        f"{ran} chained no-op jobs on {result['db']}: {result['cpu_ms_per_job']} ms CPU, "
        f"{result['wall_ms_per_job']} ms wall per job"
    )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
