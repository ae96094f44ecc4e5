"""Autoscaling policies side by side: every policy on three traces, in the simulator.

The traces, each two days of 5-minute steps made by ``zhuge simulate make-trace``'s code
(Poisson arrivals following a utilisation series; CPU 1/2/4, 2 GB per CPU, log-normal
durations of mean ``--duration``; three tenants, weights 2/1/1):

- **steady**: a constant series (the same arrival rate all along);
- **diurnal**: Azure 2019's total VM CPU (``azure_v2_vm_cpu_readings_month_aggregated_cpu_mem.csv``,
  ``cpu_usage``): a smooth daily wave;
- **bursty**: Alibaba 2018's mean machine CPU (``alibaba2018_machine_usage_days_1_to_8_
  grouped_300_seconds.csv``, ``cpu_util_percent``): jumps of half the mean between steps.

One pool (8 CPU / 32 GB workers, 0-40, 60 s start-up, 5 min idle timeout, per-second
billing with a 60 s minimum, $0.40/h on demand) runs each of ``rule``, ``demand``,
``predictive``, ``fixed-peak`` and ``fixed-mean`` (``zhuge simulate --policy``). Per trace
and policy: cost, idle cost, utilisation, scale events, mean/peak workers, worst tenant p95
wait, the simulation's wall time; per trace, the MASE of the predictive policy's arrival
forecast against seasonal naive (a day) over the second day. With ``--live``, also the time
from a burst's first job to a new worker of a ``local`` pool running it: a real ``zhuge up``
with ``ZHUGE_POOLS_FILE`` (a pool at ``min: 0`` whose workers alone offer ``burst=1``) and
the autoscaler every second; two jobs asking ``burst=1`` at once.

    python benchmarks/elastic.py [--days 2] [--jobs-per-step 2] [--duration 1200] [--seed 3]
    python benchmarks/elastic.py --quick          # one day, fewer jobs
    python benchmarks/elastic.py --live           # add the local provider's burst latency
    python benchmarks/elastic.py --only-live      # only that

Prints a table and a final JSON line.
"""

from __future__ import annotations

import sys
from pathlib import Path

# benchmarks/queue.py is named like the standard library's `queue`; take this folder off
# sys.path when run as a script (as admission.py does) so nothing imports it by mistake.
if sys.path and Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
    sys.path.pop(0)

import argparse
import json
import os
import platform
import time

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("ZHUGE_TEST_DATA", REPO.parent / "shared" / "data")) / (
    "datacenter_traces"
)
DAY = 288  # 5-minute steps
POLICIES = ("rule", "demand", "predictive", "fixed-peak", "fixed-mean")
TRACES = {
    "steady": None,
    "diurnal": ("azure_v2_vm_cpu_readings_month_aggregated_cpu_mem.csv", "cpu_usage"),
    "bursty": ("alibaba2018_machine_usage_days_1_to_8_grouped_300_seconds.csv", "cpu_util_percent"),
}
POOLS = """
pools:
  - name: cpu
    resources: {CPU: 8, memory_gb: 32}
    min: 0
    max: 40
    idle_timeout: 5m
    startup_s: 60
    billing: {granularity: second, minimum_s: 60}
    price_per_hour: {on_demand: 0.40, spot: 0.12}
    policy: {name: predictive, model: autoets, min_history: 12, refit_every: 6}
"""
QUEUES = "tenants:\n  a: {weight: 2}\n  b: {weight: 1}\n  c: {weight: 1}\n"


def make_traces(days: float, jobs_per_step: float, duration: float, seed: int) -> dict:
    from zhuge.jobs.simulate import read_utilisation, trace_from_utilisation

    rows = int(days * DAY)
    out = {}
    for name, source in TRACES.items():
        values = [1.0] * rows if source is None else read_utilisation(DATA / source[0], source[1])
        out[name] = trace_from_utilisation(
            values[:rows], seed=seed, jobs_per_step=jobs_per_step, duration_s=duration
        )
    return out


def forecast_mase(trace, pools) -> dict[str, float] | None:
    """The predictive policy's forecast of work arriving per interval against seasonal naive
    (a day), rolling over the second day, in MASE; None with less than two days."""
    from zhuge.jobs.elastic.policy import forecast_work
    from zhuge.jobs.elastic.simulation import arrival_samples
    from zhuge.ml.forecast.baselines import seasonal_naive
    from zhuge.ml.forecast.metrics import mase_scale

    policy = pools.pool("cpu").policy
    samples = arrival_samples(trace, pools, policy.interval)["cpu"]
    values = np.array([s.work_s for s in samples])
    horizon = 2
    if len(values) < DAY + horizon + 1:
        return None
    ours, naive = [], []
    for origin in range(DAY, len(values) - horizon + 1):
        actual = values[origin : origin + horizon]
        scale = mase_scale(values[None, :origin], DAY)[0]
        ours.append(
            np.abs(actual - forecast_work(policy, samples[:origin], horizon)).mean() / scale
        )
        naive.append(
            np.abs(actual - seasonal_naive(values[None, :origin], horizon, DAY)[0]).mean() / scale
        )
    return {"predictive": float(np.mean(ours)), "seasonal_naive": float(np.mean(naive))}


LIVE_POOLS = """
pools:
  - name: burst
    resources: {CPU: 1, burst: 1}
    min: 0
    max: 2
    idle_timeout: 30s
    startup_s: 5
    provider: local
    policy: demand
    cooldown: {up: 0s, down: 0s}
    stabilisation: {up: 0s, down: 0s}
"""


def _seconds_between(earlier: str | float, later: str | float) -> float:
    from datetime import datetime

    def at(value: str | float) -> float:
        return (
            value if isinstance(value, int | float) else datetime.fromisoformat(value).timestamp()
        )

    return at(later) - at(earlier)


def live_burst_latency(jobs: int = 2, timeout: float = 180.0) -> dict:
    """On a real ``zhuge up`` (one embedded worker, which offers no ``burst``) with a
    ``local`` pool at ``min: 0`` (workers offering ``burst=1``) and the autoscaler every
    second: ``jobs`` (the pool's ``max``) 2-second sleep jobs asking ``burst=1`` at once.
    Seconds from each job's submission to its start on a worker the pool started for it."""
    import shutil
    import signal
    import socket
    import subprocess
    import tempfile

    import httpx

    home = Path(tempfile.mkdtemp(prefix="zhuge-elastic-"))
    (home / "pools.yaml").write_text(LIVE_POOLS)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {
        **os.environ,
        "ZHUGE_HOME": str(home),
        "ZHUGE_POOLS_FILE": str(home / "pools.yaml"),
        "ZHUGE_AUTOSCALE_SECONDS": "1",
    }
    env.pop("ZHUGE_DB_URL", None)
    command = [sys.executable, "-m", "zhuge", "up", "--port", str(port), "--workers", "1"]
    server = subprocess.Popen(
        [*command, "--log-level", "warning"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=open(home / "server.log", "w"),  # noqa: SIM115 (closed with the process)
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline or server.poll() is not None:
                log = (home / "server.log").read_text()[-3000:]
                raise RuntimeError(f"zhuge up did not start:\n{log}")
            time.sleep(0.2)
        token = (home / "token").read_text().strip()
        http = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=30)
        body = {"kind": "sleep", "params": {"seconds": 2}, "resources": {"CPU": 1, "burst": 1}}
        ids = [
            http.post("/v1/jobs", json=body).raise_for_status().json()["id"] for _ in range(jobs)
        ]
        waits: dict[int, float] = {}
        deadline = time.monotonic() + timeout
        while len(waits) < jobs and time.monotonic() < deadline:
            for job_id in ids:
                job = http.get(f"/v1/jobs/{job_id}").raise_for_status().json()
                if job_id not in waits and job.get("started_at"):
                    waits[job_id] = _seconds_between(job["created_at"], job["started_at"])
            time.sleep(0.25)
        if len(waits) < jobs:
            log = (home / "server.log").read_text()[-3000:]
            raise RuntimeError(f"only {len(waits)} of {jobs} jobs started in {timeout:g} s:\n{log}")
        return {
            "jobs": jobs,
            "first_job_s": waits[ids[0]],
            "all_started_s": max(waits.values()),
            "waits_s": [waits[i] for i in ids],
        }
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
        shutil.rmtree(home, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--days", type=float, default=2.0)
    parser.add_argument("--jobs-per-step", type=float, default=2.0)
    parser.add_argument("--duration", type=float, default=1200.0)
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="one day, one job per step")
    parser.add_argument("--live", action="store_true", help="also the local provider's latency")
    parser.add_argument("--only-live", action="store_true", help="only the local provider's")
    args = parser.parse_args()
    if args.quick:
        args.days, args.jobs_per_step = 1.0, 1.0

    from zhuge.jobs.admission import QueueConfig
    from zhuge.jobs.elastic.pools import PoolsConfig
    from zhuge.jobs.elastic.simulation import simulate_policy

    pools = PoolsConfig.parse(POOLS)
    queues = QueueConfig.parse(QUEUES)
    if args.only_live:
        args.live = True
    traces = (
        {}
        if args.only_live
        else make_traces(args.days, args.jobs_per_step, args.duration, args.seed)
    )
    print(
        f"# {platform.platform()}, Python {platform.python_version()}, "
        f"{os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}"
    )
    header = (
        f"{'trace':8} {'policy':11} {'jobs':>5} {'cost $':>8} {'idle $':>8} {'util':>5} "
        f"{'events':>6} {'workers':>9} {'worst p95':>10} {'wall s':>7}"
    )
    if traces:
        print(
            f"# {args.days:g} days of 5-minute steps, {args.jobs_per_step:g} jobs/step on "
            f"average, mean duration {args.duration:g} s, seed {args.seed}"
        )
        print(header)
        print("-" * len(header))
    report: dict = {"traces": {}, "args": vars(args)}
    for name, trace in traces.items():
        rows = {}
        for policy in POLICIES:
            began = time.perf_counter()
            r = simulate_policy(trace, pools, queues, policy)
            wall = time.perf_counter() - began
            worst = r.worst_wait_p95_s
            print(
                f"{name:8} {policy:11} {len(trace):>5} {r.cost:>8.2f} {r.idle_cost:>8.2f} "
                f"{r.utilisation:>5.0%} {r.scale_events:>6} "
                f"{r.workers_mean:>5.1f}/{r.workers_peak:<3} "
                f"{'-' if worst is None else f'{worst:.0f} s':>10} {wall:>7.1f}"
            )
            rows[policy] = {
                **r.to_dict(),
                "workers_mean": r.workers_mean,
                "workers_peak": r.workers_peak,
                "wall_s": wall,
                "never_started": r.never_started,
            }
        mase = forecast_mase(trace, pools)
        if mase is not None:
            print(
                f"{name:8} arrival forecast MASE over day 2: predictive "
                f"{mase['predictive']:.3f}, seasonal naive {mase['seasonal_naive']:.3f}"
            )
        report["traces"][name] = {"jobs": len(trace), "policies": rows, "forecast_mase": mase}
    if args.live:
        latency = live_burst_latency()
        print(
            f"local provider, from zero: a burst of {latency['jobs']} jobs; first job started "
            f"{latency['first_job_s']:.1f} s after its submission, the last "
            f"{latency['all_started_s']:.1f} s"
        )
        report["live"] = latency
    print(json.dumps(report))


if __name__ == "__main__":
    main()
