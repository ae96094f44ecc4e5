"""Queue throughput and latency: N no-op jobs through the whole path, next to RQ on Redis.

zhuge: HTTP submit → store (SQLite or PostgreSQL) → scheduler → Dask worker → committed
result, with `zhuge up` as a subprocess and 2 worker processes. RQ: enqueue → Redis → 2
`rq worker` processes (SimpleWorker, so no fork per job: RQ's fastest configuration).

    python benchmarks/queue.py --jobs 2000 [--backends sqlite,postgres,rq] [--clients 8]

Prints a table and a final JSON line. Latencies come from the server's own timestamps
(created_at, started_at, finished_at; RQ's enqueued_at, started_at, ended_at), all on this
machine's clock.
"""

from __future__ import annotations

import sys
from pathlib import Path

# This file is named like the standard library's `queue`; run as a script its folder comes
# first on sys.path and would shadow it. Take the folder off before anything imports `queue`.
if sys.path and Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
    sys.path.pop(0)

import argparse
import json
import os
import platform
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np

REPO = Path(__file__).resolve().parents[1]
DEFAULT_PG = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def summarise(
    name: str, submitted: np.ndarray, started: np.ndarray, done: np.ndarray, wall: float
) -> dict[str, float | str | int]:
    to_start = (started - submitted) * 1000
    to_done = (done - submitted) * 1000
    span = done.max() - submitted.min()
    return {
        "backend": name,
        "jobs": len(submitted),
        "jobs_per_s": round(len(submitted) / span, 1),
        "submit_wall_s": round(wall, 2),
        "start_p50_ms": round(float(np.percentile(to_start, 50)), 1),
        "start_p99_ms": round(float(np.percentile(to_start, 99)), 1),
        "done_p50_ms": round(float(np.percentile(to_done, 50)), 1),
        "done_p99_ms": round(float(np.percentile(to_done, 99)), 1),
    }


def tree_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process and its live descendants (Dask's workers)."""
    import psutil

    root = psutil.Process(pid)
    total = 0.0
    for p in [root, *root.children(recursive=True)]:
        try:
            t = p.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += t.user + t.system
    return total


def latest(store_url: str) -> tuple[float, float | None]:
    """(created_at, started_at) of the newest job."""
    from zhuge.jobs.store import store_for

    (job,) = store_for(store_url).list(limit=1)
    return job.created_at, job.started_at


def paced_latency(submit_one, newest, rate: float, count: int) -> dict[str, float]:
    """Submit one job at a time at ``rate`` per second, with workers idle, and measure
    submit-to-start: the latency a user sees when there is free capacity."""
    delays = []
    for _ in range(count):
        t0 = time.monotonic()
        submit_one()
        while True:
            created, started = newest()
            if started is not None:
                delays.append((started - created) * 1000)
                break
            time.sleep(0.001)
        time.sleep(max(0.0, 1 / rate - (time.monotonic() - t0)))
    if not delays:  # --paced-jobs 0: not measured
        return {}
    return {
        "idle_start_p50_ms": round(float(np.percentile(delays, 50)), 1),
        "idle_start_p99_ms": round(float(np.percentile(delays, 99)), 1),
    }


def run_zhuge(
    db_url: str | None,
    jobs: int,
    clients: int,
    workers: int,
    rate: float,
    paced: int,
    batch: int = 0,
) -> dict:
    home = Path(tempfile.mkdtemp(prefix="zhuge-bench-"))
    port = free_port()
    env = {**os.environ, "ZHUGE_HOME": str(home)}
    if db_url:
        env["ZHUGE_DB_URL"] = db_url
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "zhuge",
            "up",
            "--port",
            str(port),
            "--workers",
            str(workers),
            "--log-level",
            "warning",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("zhuge up did not start")
            time.sleep(0.2)
        # warm-up: imports and connections on every worker
        token = (home / "token").read_text().strip()
        headers = {"Authorization": f"Bearer {token}"}
        with httpx.Client(base_url=url, headers=headers, timeout=60) as http:
            warm = [
                http.post("/v1/jobs", json={"kind": "echo", "params": {}}).json()["id"]
                for _ in range(workers * 2)
            ]
            # until they have run: a worker's first job imports every kind's module (seconds
            # of CPU), which is start-up, not throughput
            deadline = time.monotonic() + 300
            while any(http.get(f"/v1/jobs/{i}").json()["state"] != "succeeded" for i in warm):
                if time.monotonic() > deadline:
                    raise RuntimeError("the warm-up jobs did not finish")
                time.sleep(0.2)
        first_id = 2 * workers + 1

        def submit_many(n: int) -> None:
            with httpx.Client(base_url=url, headers=headers, timeout=60) as http:
                if batch:
                    for start in range(0, n, batch):
                        body = {"jobs": [{"kind": "echo"}] * min(batch, n - start)}
                        http.post("/v1/jobs/batch", json=body).raise_for_status()
                    return
                for _ in range(n):
                    r = http.post("/v1/jobs", json={"kind": "echo", "params": {}})
                    r.raise_for_status()

        per_client = [jobs // clients + (i < jobs % clients) for i in range(clients)]
        cpu0 = tree_cpu_seconds(server.pid)
        t0 = time.time()
        with ThreadPoolExecutor(clients) as pool:
            list(pool.map(submit_many, per_client))
        wall = time.time() - t0
        last_id = first_id + jobs - 1

        from zhuge.jobs.states import JobState
        from zhuge.jobs.store import JobStore

        store = JobStore.open(db_url or f"sqlite:///{home / 'zhuge.db'}")
        deadline = time.monotonic() + 600
        while True:
            counts = store.counts()
            pending = sum(n for (_, s), n in counts.items() if s in ("queued", "running"))
            if not pending:
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"jobs did not finish: {counts}")
            time.sleep(0.2)
        cpu = tree_cpu_seconds(server.pid) - cpu0
        rows = [j for j in store.list(limit=1000, kind="echo")]
        # page through all jobs
        all_jobs = []
        before = None
        while True:
            page = store.list(limit=1000, before_id=before)
            if not page:
                break
            all_jobs.extend(page)
            before = page[-1].id
        del rows
        measured = [j for j in all_jobs if first_id <= j.id <= last_id]
        assert len(measured) == jobs, (len(measured), jobs)
        assert all(j.state is JobState.SUCCEEDED for j in measured)
        # exactly one committed outcome per job
        attempts = [j.attempt for j in measured]
        store.dispose()
        store_url = db_url or f"sqlite:///{home / 'zhuge.db'}"
        name = "zhuge+postgres" if db_url else "zhuge+sqlite"
        if batch:
            name += f" batch {batch}"
        out = summarise(
            name,
            np.array([j.created_at for j in measured]),
            np.array([j.started_at for j in measured]),
            np.array([j.finished_at for j in measured]),
            wall,
        )
        out["max_attempts_seen"] = max(attempts)
        # the server's and its workers' CPU (user + system) per job: what the platform spends,
        # which a loaded machine inflates far less than it does the wall-clock rates
        out["cpu_ms_per_job"] = round(cpu / jobs * 1000, 2)
        out.update(paced_latency(lambda: submit_many(1), lambda: latest(store_url), rate, paced))
        return out
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
        shutil.rmtree(home, ignore_errors=True)


def run_rq(jobs: int, clients: int, workers: int, rate: float, paced: int, batch: int = 0) -> dict:
    import redis
    from rq import Queue

    conn = redis.Redis(host="127.0.0.1", port=6379)
    name = f"bench-{uuid.uuid4().hex[:8]}"
    queue = Queue(name, connection=conn)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    procs = []
    for _ in range(workers):
        procs.append(
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "rq.cli",
                    "worker",
                    name,
                    "--worker-class",
                    "rq.worker.SimpleWorker",
                    "--url",
                    "redis://127.0.0.1:6379",
                    "--quiet",
                ],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )
    try:
        time.sleep(2)  # workers registered and idle

        def enqueue_many(n: int) -> list[str]:
            q = Queue(name, connection=redis.Redis(host="127.0.0.1", port=6379))
            if not batch:
                return [q.enqueue("benchmarks.rq_tasks.noop").id for _ in range(n)]
            ids = []
            for start in range(0, n, batch):
                data = [
                    Queue.prepare_data("benchmarks.rq_tasks.noop")
                    for _ in range(min(batch, n - start))
                ]
                ids.extend(job.id for job in q.enqueue_many(data))
            return ids

        per_client = [jobs // clients + (i < jobs % clients) for i in range(clients)]
        t0 = time.time()
        with ThreadPoolExecutor(clients) as pool:
            ids = [i for chunk in pool.map(enqueue_many, per_client) for i in chunk]
        wall = time.time() - t0
        from rq.job import Job

        deadline = time.monotonic() + 600
        while True:
            fetched = Job.fetch_many(ids, connection=conn)
            if all(j is not None and j.get_status() == "finished" for j in fetched):
                break
            if time.monotonic() > deadline:
                raise RuntimeError("rq jobs did not finish")
            time.sleep(0.2)
        fetched = Job.fetch_many(ids, connection=conn)  # fresh copies with all timestamps

        def ts(d):
            return d.timestamp()

        holder: dict[str, str] = {}

        def submit_one() -> None:
            holder["id"] = queue.enqueue("benchmarks.rq_tasks.noop").id

        def newest() -> tuple[float, float | None]:
            job = Job.fetch(holder["id"], connection=conn)
            started = job.started_at.timestamp() if job.started_at else None
            return job.enqueued_at.timestamp(), started

        idle = paced_latency(submit_one, newest, rate, paced)
        return idle | summarise(
            f"rq+redis batch {batch}" if batch else "rq+redis",
            np.array([ts(j.enqueued_at) for j in fetched]),
            np.array([ts(j.started_at) for j in fetched]),
            np.array([ts(j.ended_at) for j in fetched]),
            wall,
        )
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(timeout=30)
        queue.delete(delete_jobs=True)


def pg_schema_url(base: str) -> tuple[str, str]:
    import sqlalchemy as sa

    schema = f"bench_{uuid.uuid4().hex[:8]}"
    engine = sa.create_engine(base)
    with engine.begin() as conn:
        conn.exec_driver_sql(f"CREATE SCHEMA {schema}")
    engine.dispose()
    return f"{base}?options=-csearch_path%3D{schema}", schema


def drop_schema(base: str, schema: str) -> None:
    import sqlalchemy as sa

    engine = sa.create_engine(base)
    with engine.begin() as conn:
        conn.exec_driver_sql(f"DROP SCHEMA {schema} CASCADE")
    engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--jobs", type=int, default=2000)
    parser.add_argument("--clients", type=int, default=8, help="concurrent submitting clients")
    parser.add_argument("--workers", type=int, default=2, help="worker processes (each side)")
    parser.add_argument("--backends", default="sqlite,postgres,rq")
    parser.add_argument("--paced-jobs", type=int, default=200, help="jobs for the idle-latency run")
    parser.add_argument("--paced-rate", type=float, default=20.0, help="jobs/s in that run")
    parser.add_argument(
        "--batch",
        type=int,
        default=0,
        help="submit N jobs per request (zhuge: POST /v1/jobs/batch; RQ: enqueue_many "
        "in a pipeline); 0: one request per job",
    )
    parser.add_argument(
        "--postgres-url", default=os.environ.get("ZHUGE_TEST_POSTGRES_URL", DEFAULT_PG)
    )
    args = parser.parse_args()

    common = (args.jobs, args.clients, args.workers, args.paced_rate, args.paced_jobs, args.batch)
    results = []
    for backend in args.backends.split(","):
        if backend == "sqlite":
            results.append(run_zhuge(None, *common))
        elif backend == "postgres":
            url, schema = pg_schema_url(args.postgres_url)
            try:
                results.append(run_zhuge(url, *common))
            finally:
                drop_schema(args.postgres_url, schema)
        elif backend == "rq":
            results.append(run_rq(*common))
        else:
            raise SystemExit(f"unknown backend {backend!r}")

    machine = f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    print(
        f"\n{args.jobs} no-op jobs, {args.clients} submitting clients, {args.workers} workers, "
        f"{'batches of ' + str(args.batch) if args.batch else 'one request per job'}; {machine}\n"
    )
    cols = [
        "backend",
        "jobs_per_s",
        "submit_wall_s",
        "start_p50_ms",
        "start_p99_ms",
        "done_p50_ms",
        "done_p99_ms",
        "idle_start_p50_ms",
        "idle_start_p99_ms",
        "cpu_ms_per_job",
    ]
    print("  ".join(f"{c:>22}" for c in cols))
    for r in results:
        print("  ".join(f"{r.get(c, '')!s:>22}" for c in cols))
    print(
        "\nstart/done: under load (all jobs submitted at once); idle_start: one job at a time "
        f"at {args.paced_rate:g}/s with free workers (submit-to-start)"
    )
    print(json.dumps({"benchmark": "queue", "machine": machine, "results": results}))


if __name__ == "__main__":
    main()
