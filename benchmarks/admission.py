"""Admission at scale: decisions per second and claim latency with a deep multi-tenant queue.

Four measurements, each on what this machine is:

1. **Store turns** (SQLite and PostgreSQL): N queued jobs over T tenants (quotas in cohorts,
   weights 1-3, priorities 0-3, mostly CPU=1 with some CPU=2/4 and memory) inserted with
   ``submit_many``; a census of W workers × CPU=8, memory_gb=32. Then
   - ``store.admit(...)`` turns, the scheduler's path: snapshot under the admission lock,
     ``admission.decide``, claims and pending reasons written. The first turn fills an empty
     cluster; each later turn follows the completion of a quarter of the running jobs
     (untimed), so it has capacity to hand out;
   - ``store.claim_next(...)``, a worker's chain: one running job on a worker completes
     (untimed) and that worker claims the next CPU=1 job admission would start there.
2. **``admission.decide`` alone** on an in-memory snapshot shaped like the store's (the
   candidates the store passes: up to 2 × ``CANDIDATES_PER_TENANT`` per tenant), on an empty
   and on a full cluster; and once with the whole queue (at most 20k jobs) as candidates.
3. **The simulator** (``zhuge simulate``'s engine) on a generated trace: simulated jobs per
   second of wall time.
4. **The queue with and without admission**, in the same run: ``benchmarks/queue.py`` (HTTP
   submit → scheduler → workers, chained) and ``benchmarks/chain.py`` (one worker's chain
   in-process), each on this tree (every claim goes through admission) and on the tree of
   ``--baseline`` (the commit before admission was added, exported with ``git archive`` and
   put first on ``PYTHONPATH``), alternating. The baseline runs as subprocesses; this tree's
   chain runs here (``chain_here``: chain.py plus the census entry admission needs).

    python benchmarks/admission.py [--jobs 100000] [--tenants 50] [--backends sqlite,postgres]
    python benchmarks/admission.py --parts queue      # only part 4 (store,decide,simulator,queue)
    python benchmarks/admission.py --quick

Prints a table per part and a final JSON line.
"""

from __future__ import annotations

import sys
from pathlib import Path

# benchmarks/queue.py is named like the standard library's `queue`; take this folder off
# sys.path when run as a script (as queue.py does) so nothing imports it by mistake.
if sys.path and Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
    sys.path.pop(0)

import argparse
import json
import math
import os
import platform
import random
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DEFAULT_PG = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
BASELINE = "e98a9ab^"  # the last commit before the admission module was added
INSERT_BATCH = 5000  # jobs per submit_many transaction
WORKER_CPU, WORKER_MEMORY_GB = 8, 32
WHOLE_QUEUE_MAX = 20_000  # candidates for the one decide over "the whole queue"


# -- the workload -----------------------------------------------------------------------------


def tenant_names(tenants: int) -> list[str]:
    return [f"team{i:02d}" for i in range(tenants)]


def queues_yaml(tenants: int, workers: int) -> str:
    """Cohorts of 10; the tenants' nominals together claim at most 3/4 of the CPU, in whole
    CPUs (1 each for 50 tenants on 128 CPU), with 4 GB per CPU; weights 1-3; every third may
    borrow at most 8 CPU, every fourth lends at most half its nominal."""
    names = tenant_names(tenants)
    cpu = WORKER_CPU * workers
    nominal = max(1, math.floor(cpu * 0.75 / tenants))
    lines = ["resources: [CPU, memory_gb]", "cohorts:"]
    for c in range(0, tenants, 10):
        lines.append(f"  c{c // 10}: {{tenants: [{', '.join(names[c : c + 10])}]}}")
    lines.append("tenants:")
    for i, name in enumerate(names):
        extra = ""
        if i % 3 == 0:
            extra += ", borrowing_limit: {CPU: 8}"
        if i % 4 == 0:
            extra += f", lending_limit: {{CPU: {nominal / 2:g}}}"
        lines.append(
            f"  {name}: {{weight: {1 + i % 3}, nominal: {{CPU: {nominal}, "
            f"memory_gb: {nominal * 4}}}{extra}}}"
        )
    lines += [
        "preemption: {reclaim_within_cohort: lower_priority, grace: 30s}",
        "fair_share: {half_life: 1h}",
        "aging: {every: 10m}",
        "reservation_after: 15m",
    ]
    return "\n".join(lines) + "\n"


def job_shape(rng: random.Random) -> dict[str, float]:
    u = rng.random()
    if u < 0.8:
        return {"CPU": 1.0}
    if u < 0.95:
        return {"CPU": 2.0, "memory_gb": 4.0}
    return {"CPU": 4.0, "memory_gb": 16.0}


def census(workers: int) -> list:
    from zhuge.jobs.model import Worker

    return [
        Worker(
            f"tcp://10.0.0.{i + 1}:9000", {"CPU": WORKER_CPU, "memory_gb": WORKER_MEMORY_GB}, 0.0
        )
        for i in range(workers)
    ]


def pct(values: list[float], q: float) -> float:
    return round(float(np.percentile(values, q)), 2) if values else float("nan")


# -- 1. store turns ---------------------------------------------------------------------------


def fill(store, jobs: int, tenants: int, seed: int) -> float:
    """Insert ``jobs`` queued jobs round-robin over the tenants; seconds it took."""
    from zhuge.jobs.store import JobRequest

    rng = random.Random(seed)
    names = tenant_names(tenants)
    per_tenant = [jobs // tenants + (i < jobs % tenants) for i in range(tenants)]
    began = time.perf_counter()
    for name, count in zip(names, per_tenant, strict=True):
        for start in range(0, count, INSERT_BATCH):
            requests = [
                JobRequest("echo", {}, priority=rng.randrange(4), resources=job_shape(rng))
                for _ in range(min(INSERT_BATCH, count - start))
            ]
            store.submit_many(tenant=name, requests=requests)
    return time.perf_counter() - began


def running_jobs(store) -> list[tuple[int, int, tuple[str, ...]]]:
    import sqlalchemy as sa

    from zhuge.jobs import schema

    J = schema.jobs
    with store.engine.connect() as conn:
        rows = conn.execute(
            sa.select(J.c.id, J.c.attempt, J.c.assigned_workers).where(J.c.state == "running")
        ).all()
        conn.rollback()
    return [(r.id, r.attempt, tuple(r.assigned_workers or ())) for r in rows]


def store_turns(url: str, name: str, args: argparse.Namespace) -> dict:
    from zhuge.jobs.store import JobStore

    store = JobStore.open(url)
    try:
        store.queues.apply(queues_yaml(args.tenants, args.workers))
        insert_s = fill(store, args.jobs, args.tenants, seed=1)
        workers = census(args.workers)
        store.record_workers("bench", workers)
        owner = f"bench-{uuid.uuid4().hex[:6]}"
        rng = random.Random(2)

        # scheduler turns
        turn_ms, started = [], []
        first_turn_ms = first_started = None
        for turn in range(args.turns + 1):
            if turn:
                running = running_jobs(store)
                for job_id, attempt, _ in rng.sample(running, len(running) // 4):
                    store.complete(job_id, attempt, result=None)
            store.record_workers("bench", workers)  # the census stays live
            t0 = time.perf_counter()
            admitted = store.admit(owner=owner, workers=workers, lease_seconds=600)
            ms = (time.perf_counter() - t0) * 1000
            if turn == 0:
                first_turn_ms, first_started = ms, len(admitted.started)
            else:
                turn_ms.append(ms)
                started.append(len(admitted.started))
        # a turn on a full cluster: nothing to start, only reasons to keep
        t0 = time.perf_counter()
        full = store.admit(owner=owner, workers=workers, lease_seconds=600)
        full_ms = (time.perf_counter() - t0) * 1000

        # chains: a job on a worker ends, that worker claims the next one
        claim_ms, claimed_none = [], 0
        running, recorded = [], -math.inf
        for _ in range(args.claims):
            if time.monotonic() - recorded > 3:  # well inside WORKER_LIVE_SECONDS
                store.record_workers("bench", workers)
                recorded = time.monotonic()
            if not running:
                running = running_jobs(store)
                rng.shuffle(running)
            if not running:
                break
            job_id, attempt, on = running.pop()
            store.complete(job_id, attempt, result=None)
            if len(on) != 1:
                continue
            t0 = time.perf_counter()
            job = store.claim_next(
                owner=owner, worker=on[0], lease_seconds=600, resources={"CPU": 1.0}
            )
            claim_ms.append((time.perf_counter() - t0) * 1000)
            if job is None:
                claimed_none += 1
            else:
                running.insert(0, (job.id, job.attempt, (on[0],)))
        queued = sum(n for (_, s), n in store.counts().items() if s == "queued")
    finally:
        store.dispose()
    total_turn_s = sum(turn_ms) / 1000
    return {
        "backend": name,
        "jobs": args.jobs,
        "tenants": args.tenants,
        "workers": f"{args.workers} x CPU={WORKER_CPU}",
        "insert_s": round(insert_s, 1),
        "insert_jobs_per_s": round(args.jobs / insert_s),
        "first_turn_ms": round(first_turn_ms, 1),
        "first_turn_started": first_started,
        "turns": len(turn_ms),
        "turn_p50_ms": pct(turn_ms, 50),
        "turn_p99_ms": pct(turn_ms, 99),
        "turns_per_s": round(len(turn_ms) / total_turn_s, 2),
        "started_per_turn": round(sum(started) / len(started), 1),
        "admitted_jobs_per_s": round(sum(started) / total_turn_s, 1),
        "full_turn_ms": round(full_ms, 1),
        "full_turn_started": len(full.started),
        "claims": len(claim_ms),
        "claim_p50_ms": pct(claim_ms, 50),
        "claim_p99_ms": pct(claim_ms, 99),
        "claims_none": claimed_none,
        "queued_after": queued,
    }


# -- 2. decide alone --------------------------------------------------------------------------


def decide_alone(args: argparse.Namespace) -> dict:
    from zhuge.jobs import admission
    from zhuge.jobs.admission import Candidate, QueueConfig, Running, Snapshot, WorkerSlot
    from zhuge.jobs.claims import CANDIDATES_PER_TENANT

    config = QueueConfig.parse(queues_yaml(args.tenants, args.workers))
    workers = [WorkerSlot(w.address, w.resources) for w in census(args.workers)]
    rng = random.Random(3)
    now = 1_700_000_000.0
    names = tenant_names(args.tenants)
    everyone = [
        Candidate(
            job_id=i + 1,
            tenant=names[i % args.tenants],
            priority=rng.randrange(4),
            resources=job_shape(rng),
            queued_at=now - 600 + i * 0.001,
            timeout_s=3600.0,
        )
        for i in range(args.jobs)
    ]
    # what the store passes: per tenant, the first by priority and the oldest
    by_tenant: dict[str, list[Candidate]] = {}
    for c in everyone:
        by_tenant.setdefault(c.tenant, []).append(c)
    passed: dict[int, Candidate] = {}
    for cands in by_tenant.values():
        for c in sorted(cands, key=lambda c: (-c.priority, c.job_id))[:CANDIDATES_PER_TENANT]:
            passed[c.job_id] = c
        for c in cands[:CANDIDATES_PER_TENANT]:
            passed[c.job_id] = c
    candidates = list(passed.values())

    def timed(snapshot: Snapshot, reps: int) -> tuple[float, admission.Decision]:
        times = []
        for _ in range(reps):
            t0 = time.perf_counter()
            decision = admission.decide(snapshot, config)
            times.append((time.perf_counter() - t0) * 1000)
        return float(np.median(times)), decision

    empty_ms, decision = timed(Snapshot(now, workers, [], candidates, {}), args.reps)
    by_id = {c.job_id: c for c in candidates}
    running = [
        Running(s.job_id, by_id[s.job_id].tenant, 0, by_id[s.job_id].resources, s.workers, now)
        for s in decision.start
    ]
    left = [c for c in candidates if c.job_id not in decision.started()]
    full_ms, full = timed(Snapshot(now, workers, running, left, {}), args.reps)
    whole = everyone[:WHOLE_QUEUE_MAX]
    all_ms, _ = timed(Snapshot(now, workers, [], whole, {}), 1)
    return {
        "candidates": len(candidates),
        "empty_cluster_ms": round(empty_ms, 1),
        "empty_cluster_started": len(decision.start),
        "full_cluster_ms": round(full_ms, 1),
        "full_cluster_started": len(full.start),
        "decisions_per_s_empty": round(1000 / empty_ms, 1),
        "decisions_per_s_full": round(1000 / full_ms, 1),
        "whole_queue_candidates": len(whole),
        "whole_queue_ms": round(all_ms, 1),
    }


# -- 3. the simulator -------------------------------------------------------------------------


def simulator_speed(args: argparse.Namespace) -> dict:
    from zhuge.jobs.admission import QueueConfig, WorkerSlot
    from zhuge.jobs.simulate import TraceJob, simulate

    rng = random.Random(4)
    names = tenant_names(args.tenants)
    capacity = WORKER_CPU * args.workers
    mean_duration = 600.0
    # arrivals at ~1.1x what the cluster can run: saturated, so every rule is exercised
    rate = 1.1 * capacity / (1.3 * mean_duration)
    t, trace = 0.0, []
    for _ in range(args.sim_jobs):
        t += rng.expovariate(rate)
        shape = job_shape(rng)
        trace.append(
            TraceJob(
                submit_time=round(t, 1),
                tenant=rng.choice(names),
                CPU=shape["CPU"],
                memory_gb=shape.get("memory_gb", 0.0),
                duration_s=round(rng.expovariate(1 / mean_duration) + 1, 1),
                priority=rng.randrange(4),
            )
        )
    workers = [WorkerSlot(w.address, w.resources) for w in census(args.workers)]
    config = QueueConfig.parse(queues_yaml(args.tenants, args.workers))
    result = simulate(trace, workers, config)
    return {
        "trace_jobs": len(trace),
        "simulated_hours": round(result.makespan_s / 3600, 1),
        "decisions": result.decisions,
        "wall_s": round(result.wall_s, 2),
        "jobs_per_s": round(result.jobs_per_second, 1),
        "ms_per_decision": round(result.wall_s / max(1, result.decisions) * 1000, 2),
        "jain_index": round(result.jain_index, 3),
        "cpu_utilisation": round(result.utilisation.get("CPU", 0.0), 3),
    }


# -- 4. the queue with and without admission --------------------------------------------------


def baseline_tree(commit: str) -> Path:
    where = Path(tempfile.mkdtemp(prefix="zhuge-baseline-"))
    archive = subprocess.run(
        ["git", "-C", str(REPO), "archive", commit], check=True, capture_output=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(where)], input=archive, check=True)
    return where


def last_json(output: str) -> dict:
    for line in reversed(output.splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    raise RuntimeError(f"no JSON line in:\n{output[-2000:]}")


def run_tree(tree: Path, argv: list[str], timeout: float = 900) -> dict:
    env = {**os.environ, "PYTHONPATH": str(tree / "src") + os.pathsep + str(tree)}
    done = subprocess.run(
        [sys.executable, *argv],
        cwd=tree,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if done.returncode:
        raise RuntimeError(f"{argv} in {tree} failed:\n{done.stdout[-2000:]}{done.stderr[-3000:]}")
    return last_json(done.stdout)


def chain_here(jobs: int, db_url: str | None) -> dict:
    """``benchmarks/chain.py``'s measurement on this tree, in this process."""
    import importlib.util

    # loaded from its file: this folder is off sys.path (see the top of this file)
    spec = importlib.util.spec_from_file_location(
        "chain_bench", Path(__file__).with_name("chain.py")
    )
    assert spec is not None and spec.loader is not None
    chain = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(chain)
    return chain.measure(jobs, db_url)


def queue_comparison(args: argparse.Namespace, backends: list[str]) -> list[dict]:
    old = baseline_tree(args.baseline)
    trees = [("with admission", REPO), (f"before admission ({args.baseline})", old)]
    rows = []
    try:
        for backend in backends:
            pg = backend == "postgres"
            # the two trees alternate, so a change in the machine's load hits both
            for label, tree in trees:
                chain_args = ["-m", "benchmarks.chain", "--jobs", str(args.chain_jobs)]
                if tree == REPO:
                    chain = chain_here(args.chain_jobs, args.postgres_url if pg else None)
                elif pg:  # a fresh schema: the shared database may hold a newer one's
                    chain = with_pg_schema(
                        args.postgres_url,
                        lambda url, tree=tree, argv=chain_args: run_tree(
                            tree, [*argv, "--db-url", url]
                        ),
                    )
                else:
                    chain = run_tree(tree, chain_args)
                rows.append(
                    {
                        "what": "chain",
                        "tree": label,
                        "backend": backend,
                        "jobs": chain["jobs"],
                        "cpu_ms_per_job": chain["cpu_ms_per_job"],
                        "wall_ms_per_job": chain["wall_ms_per_job"],
                    }
                )
                print(json.dumps({"partial": True, **rows[-1]}), flush=True)
            for label, tree in trees:
                # this tree's queue.py on both (its warm-up waits for the workers' imports)
                queue = run_tree(
                    tree,
                    [
                        str(REPO / "benchmarks" / "queue.py"),
                        "--jobs",
                        str(args.queue_jobs),
                        "--paced-jobs",
                        "50",
                        "--batch",
                        "100",
                        "--backends",
                        backend,
                        "--postgres-url",
                        args.postgres_url,
                    ],
                )
                (r,) = queue["results"]
                rows.append(
                    {
                        "what": "queue",
                        "tree": label,
                        "backend": backend,
                        "jobs_per_s": r["jobs_per_s"],
                        "idle_start_p50_ms": r["idle_start_p50_ms"],
                        "idle_start_p99_ms": r["idle_start_p99_ms"],
                        "max_attempts_seen": r["max_attempts_seen"],
                        "cpu_ms_per_job": r.get("cpu_ms_per_job"),
                    }
                )
                print(json.dumps({"partial": True, **rows[-1]}), flush=True)
    finally:
        shutil.rmtree(old, ignore_errors=True)
    return rows


# -- PostgreSQL: a fresh schema per run ----------------------------------------------------------


def with_pg_schema(base: str, body: Callable[[str], dict]) -> dict:
    import sqlalchemy as sa

    schema = f"bench_adm_{uuid.uuid4().hex[:8]}"
    engine = sa.create_engine(base)
    with engine.begin() as conn:
        conn.exec_driver_sql(f"CREATE SCHEMA {schema}")
    try:
        return body(f"{base}?options=-csearch_path%3D{schema}")
    finally:
        with engine.begin() as conn:
            conn.exec_driver_sql(f"DROP SCHEMA {schema} CASCADE")
        engine.dispose()


# -- main ---------------------------------------------------------------------------------------


def table(rows: list[dict], cols: list[str]) -> None:
    width = {c: max(len(c), *(len(str(r.get(c, ""))) for r in rows)) for c in cols}
    print("  ".join(f"{c:>{width[c]}}" for c in cols))
    for r in rows:
        print("  ".join(f"{r.get(c, '')!s:>{width[c]}}" for c in cols))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--jobs", type=int, default=100_000, help="queued jobs")
    parser.add_argument("--tenants", type=int, default=50)
    parser.add_argument("--backends", default="sqlite,postgres")
    parser.add_argument("--workers", type=int, default=16, help="workers of CPU=8 in the census")
    parser.add_argument("--turns", type=int, default=15, help="scheduler turns timed")
    parser.add_argument("--claims", type=int, default=60, help="chain claims timed")
    parser.add_argument("--reps", type=int, default=3, help="repetitions of decide alone")
    parser.add_argument("--sim-jobs", type=int, default=2000, help="jobs in the simulated trace")
    parser.add_argument("--queue-jobs", type=int, default=3000, help="jobs for benchmarks/queue.py")
    parser.add_argument("--chain-jobs", type=int, default=2000, help="jobs for benchmarks/chain")
    parser.add_argument(
        "--parts",
        default="store,decide,simulator,queue",
        help="the parts to run, comma-separated (queue: with and without admission)",
    )
    parser.add_argument("--baseline", default=BASELINE, help="commit to compare the queue with")
    parser.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="run the queue comparison this many times and print each round's change and "
        "their median (on a shared 2-core machine one round moves by tens of per cent)",
    )
    parser.add_argument(
        "--postgres-url", default=os.environ.get("ZHUGE_TEST_POSTGRES_URL", DEFAULT_PG)
    )
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke run")
    args = parser.parse_args()
    if args.quick:
        args.jobs, args.turns, args.claims, args.reps = min(args.jobs, 5000), 5, 20, 2
        args.sim_jobs, args.queue_jobs, args.chain_jobs = 300, 500, 300
    backends = [b for b in args.backends.split(",") if b]
    for b in backends:
        if b not in ("sqlite", "postgres"):
            raise SystemExit(f"unknown backend {b!r}")

    load = os.getloadavg()[0]
    machine = (
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}, load average {load:.1f} at start"
    )
    parts = set(args.parts.split(","))
    turns = []
    for backend in backends if "store" in parts else []:
        if backend == "sqlite":
            home = Path(tempfile.mkdtemp(prefix="zhuge-admission-"))
            try:
                turns.append(store_turns(f"sqlite:///{home / 'zhuge.db'}", "sqlite", args))
            finally:
                shutil.rmtree(home, ignore_errors=True)
        else:
            turns.append(
                with_pg_schema(args.postgres_url, lambda url: store_turns(url, "postgres", args))
            )
    alone = decide_alone(args) if "decide" in parts else {}
    sim = simulator_speed(args) if "simulator" in parts else {}
    # what is measured so far, in case the comparison (subprocesses) fails
    print(json.dumps({"partial": True, "store": turns, "decide": alone, "simulator": sim}))
    compare = []
    for round_ in range(args.rounds if "queue" in parts else 0):
        compare += [{"round": round_ + 1, **row} for row in queue_comparison(args, backends)]
    changes = queue_changes(compare)

    print(f"\n{machine}\n")
    if turns:
        print(
            f"1. store: {args.jobs} queued jobs over {args.tenants} tenants, census "
            f"{args.workers} x CPU={WORKER_CPU}; turn = store.admit(); claim = store.claim_next()"
        )
        table(
            turns,
            [
                "backend",
                "insert_jobs_per_s",
                "first_turn_ms",
                "first_turn_started",
                "turn_p50_ms",
                "turn_p99_ms",
                "turns_per_s",
                "started_per_turn",
                "admitted_jobs_per_s",
                "full_turn_ms",
                "claim_p50_ms",
                "claim_p99_ms",
                "claims_none",
            ],
        )
    if alone:
        print(f"\n2. admission.decide alone, in memory ({alone['candidates']} candidates)")
        table([alone], list(alone))
    if sim:
        print(f"\n3. simulator, {sim['trace_jobs']}-job generated trace")
        table([sim], list(sim))
    if compare:
        print("\n4. the queue with and without admission (same run, trees alternating)")
        table(
            compare,
            [
                "round",
                "what",
                "backend",
                "tree",
                "jobs",
                "jobs_per_s",
                "cpu_ms_per_job",
                "wall_ms_per_job",
                "idle_start_p50_ms",
                "idle_start_p99_ms",
                "max_attempts_seen",
            ],
        )
    if changes:
        print(f"\n   admission's change to the queue, per round and median of {args.rounds}")
        table(changes, list(changes[0]))
    print(
        json.dumps(
            {
                "benchmark": "admission",
                "machine": machine,
                "store": turns,
                "decide": alone,
                "simulator": sim,
                "queue": compare,
                "queue_changes": changes,
            }
        )
    )


def queue_changes(rows: list[dict]) -> list[dict]:
    """Per backend: each round's change in the queue's jobs/s and in the chain's CPU per job
    (with admission against before it, in per cent), and the medians."""
    import statistics

    def value(what: str, backend: str, round_: int, before: bool, key: str) -> float | None:
        for r in rows:
            if (r["what"], r["backend"], r["round"]) == (what, backend, round_) and r[
                "tree"
            ].startswith("before") == before:
                return r.get(key)
        return None

    out = []
    for backend in dict.fromkeys(r["backend"] for r in rows):
        rounds = sorted({r["round"] for r in rows if r["backend"] == backend})
        for what, key in (("queue", "jobs_per_s"), ("chain", "cpu_ms_per_job")):
            pct = []
            for n in rounds:
                new, old = value(what, backend, n, False, key), value(what, backend, n, True, key)
                if new is not None and old:
                    pct.append(round(100 * (new / old - 1), 1))
            if pct:
                out.append(
                    {
                        "backend": backend,
                        "measure": f"{what} {key}",
                        "change_per_round_pct": " ".join(f"{p:+.1f}" for p in pct),
                        "median_pct": f"{statistics.median(pct):+.1f}",
                    }
                )
    return out


if __name__ == "__main__":
    main()
