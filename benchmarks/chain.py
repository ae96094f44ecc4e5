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
import shutil
import tempfile
import time
import uuid
from pathlib import Path


def measure(jobs: int, db_url: str | None = None) -> dict:
    """Run ``jobs`` chained no-op jobs on one worker in this process; CPU and wall per job.
    The worker is kept in the census, as a scheduler would (admission places nothing on a
    worker no scheduler reported); a PostgreSQL ``db_url`` gets a fresh schema, dropped after."""
    import threading

    from zhuge.jobs.kinds import get_kind
    from zhuge.jobs.model import Worker
    from zhuge.jobs.runner import AttemptSpec, _worker_name, run_attempt
    from zhuge.jobs.store import JobRequest, JobStore

    home = Path(tempfile.mkdtemp(prefix="zhuge-chain-"))
    url = db_url or f"sqlite:///{home / 'zhuge.db'}"
    schema_url = None
    if db_url:
        import sqlalchemy as sa

        schema_url = f"bench_chain_{uuid.uuid4().hex[:8]}"
        engine = sa.create_engine(db_url)
        with engine.begin() as conn:
            conn.exec_driver_sql(f"CREATE SCHEMA {schema_url}")
        url = f"{db_url}?options=-csearch_path%3D{schema_url}"
    store = JobStore.open(url)
    stop = threading.Event()
    try:
        owner = f"bench-{time.time_ns()}"
        store.submit_many(tenant="bench", requests=[JobRequest("echo", {}) for _ in range(jobs)])
        if store.is_postgres:  # what a scheduler's housekeeping does within a second or
            # two of such a burst (``JobStore.refresh_statistics``, once the inserts are
            # counted): without it the planner takes the queued state for a rare one
            with store.engine.begin() as conn:
                conn.exec_driver_sql("ANALYZE jobs")
        census = [Worker(_worker_name(), {"CPU": 1.0}, 0.0)]

        def keep_live() -> None:
            while not stop.wait(2.0):
                store.record_workers("bench", census)

        store.record_workers("bench", census)
        threading.Thread(target=keep_live, daemon=True).start()
        (first,) = store.claim(limit=1, owner=owner, lease_seconds=60)
        get_kind("echo")
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
        return {
            "jobs": ran,
            "cpu_ms_per_job": round(cpu / ran * 1000, 3),
            "wall_ms_per_job": round(wall / ran * 1000, 3),
        }
    finally:
        stop.set()
        store.dispose()
        if schema_url:
            with engine.begin() as conn:
                conn.exec_driver_sql(f"DROP SCHEMA {schema_url} CASCADE")
            engine.dispose()
        shutil.rmtree(home, ignore_errors=True)


def count_statements() -> dict[str, int]:
    """Count every statement SQLAlchemy sends from now on, by its first words (a dict the
    caller reads after the run); pool pre-pings and commits are not statements here."""
    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    counts: dict[str, int] = {}

    @event.listens_for(Engine, "before_cursor_execute")
    def _count(conn, cursor, statement, params, context, executemany) -> None:
        key = " ".join(statement.split()[:3])
        counts[key] = counts.get(key, 0) + 1

    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--jobs", type=int, default=2000)
    parser.add_argument("--db-url", default=None, help="default: SQLite in a temporary folder")
    parser.add_argument(
        "--statements",
        action="store_true",
        help="also print the statements sent per job (the set-up's INSERT INTO jobs included)",
    )
    args = parser.parse_args()
    counts = count_statements() if args.statements else None
    measured = measure(args.jobs, args.db_url)
    if counts is not None:
        per_job = {k: round(n / measured["jobs"], 2) for k, n in counts.items()}
        measured["statements_per_job"] = {k: v for k, v in per_job.items() if v >= 0.5}
    result = {
        "benchmark": "chain",
        "db": (args.db_url or "sqlite").split(":", 1)[0],
        **measured,
        "machine": f"{platform.machine()}, Python {platform.python_version()}",
    }
    print(
        f"{result['jobs']} chained no-op jobs on {result['db']}: {result['cpu_ms_per_job']} ms "
        f"CPU, {result['wall_ms_per_job']} ms wall per job"
    )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
