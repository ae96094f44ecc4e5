"""Benchmark: plan live migrations for a synthetic fleet, and score the plan.

    .venv/bin/python benchmarks/migration_plan.py --vms 100000

A fleet of N VMs with daily load cycles (per-VM phase) and a noisy forecast of them; 20 VMs per
host, 50 hosts per cluster; 48 h hourly forecast, 30 min windows, a 08:00-10:00 blackout.
Prints the time to plan (validation and the VMs x windows model included), peak RSS, the
constraint check, realised-load/downtime ratios against the oracle and naive plans, and on a
small instance the MILP-vs-greedy gap. A table, then one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
import time

import numpy as np
import pandas as pd
import scipy

from zhuge.migration import (
    PlanConstraints,
    check_plan,
    evaluate_plan,
    plan_migrations,
    synthetic_fleet,
)
from zhuge.migration.model import MigrationModel
from zhuge.migration.problem import build_problem
from zhuge.migration.solvers import plan_objective, solve_greedy, solve_milp


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def small_gap(n_vms: int, seeds: int) -> dict[str, float]:
    """MILP vs greedy on small, tight instances: mean and max gap of greedy over the optimum."""
    gaps, milp_s, greedy_s = [], 0.0, 0.0
    constraints = PlanConstraints(
        window="1h",
        max_per_host=1,
        max_per_cluster=2,
        bandwidth_gbps=30.0,
        blackouts=("03:00-05:00",),
    )
    for seed in range(seeds):
        fleet = synthetic_fleet(n_vms, seed=seed, hours=12, vms_per_host=4, hosts_per_cluster=3)
        problem = build_problem(fleet.forecast, fleet.vms, constraints, MigrationModel())
        cost = problem.downtime_ms
        t = time.perf_counter()
        greedy = plan_objective(problem, cost, solve_greedy(problem, cost))
        greedy_s += time.perf_counter() - t
        t = time.perf_counter()
        exact = solve_milp(problem, cost, time_limit=60)
        milp_s += time.perf_counter() - t
        gaps.append(100 * (greedy - exact.objective) / exact.objective)
    return {
        "small_vms": n_vms,
        "small_instances": seeds,
        "greedy_gap_mean_pct": float(np.mean(gaps)),
        "greedy_gap_max_pct": float(np.max(gaps)),
        "milp_s_per_instance": milp_s / seeds,
        "greedy_s_per_instance": greedy_s / seeds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--vms", type=int, default=100_000)
    parser.add_argument("--hours", type=int, default=48)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-per-cluster", type=int, default=32)
    parser.add_argument("--bandwidth-gbps", type=float, default=20_000.0, help="shared per window")
    parser.add_argument("--small-vms", type=int, default=40)
    parser.add_argument("--small-instances", type=int, default=5)
    args = parser.parse_args()

    t = time.perf_counter()
    fleet = synthetic_fleet(args.vms, seed=args.seed, hours=args.hours)
    generate_s = time.perf_counter() - t
    constraints = PlanConstraints(
        window="30min",
        max_per_host=1,
        max_per_cluster=args.max_per_cluster,
        bandwidth_gbps=args.bandwidth_gbps,
        blackouts=("08:00-10:00",),
    )

    t = time.perf_counter()
    plan, summary = plan_migrations(fleet.forecast, fleet.vms, constraints, method="auto")
    plan_s = time.perf_counter() - t
    rss_after_plan = peak_rss_mb()

    t = time.perf_counter()
    violations = check_plan(plan, fleet.vms, constraints)
    check_s = time.perf_counter() - t

    t = time.perf_counter()
    report = evaluate_plan(plan, fleet.actual, fleet.vms, constraints, method="greedy")
    evaluate_s = time.perf_counter() - t
    gap = small_gap(args.small_vms, args.small_instances)

    result = {
        "benchmark": "migration_plan",
        "vms": args.vms,
        "windows": summary["windows"],
        "method": summary["method"],
        "plan_s": round(plan_s, 2),
        "generate_s": round(generate_s, 2),
        "check_s": round(check_s, 2),
        "evaluate_s": round(evaluate_s, 2),
        "peak_rss_mb_after_plan": round(rss_after_plan, 0),
        "peak_rss_mb": round(peak_rss_mb(), 0),
        "placed": summary["placed"],
        "unplaced": summary["unplaced"],
        "violations": len(violations),
        "peak_concurrent_per_host": summary["peak_concurrent_per_host"],
        "peak_concurrent_per_cluster": summary["peak_concurrent_per_cluster"],
        "peak_bandwidth_gbps": summary["peak_bandwidth_gbps"],
        **{k.replace(" ", "_").replace("/", "_vs_"): round(v, 4) for k, v in report.ratios.items()},
        **{k: round(v, 4) if isinstance(v, float) else v for k, v in gap.items()},
        "cpus": os.cpu_count(),
        "affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "cpu": cpu_name(),
        "python": sys.version.split()[0],
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "pandas": pd.__version__,
    }

    print(
        f"machine: {result['cpu']}, {result['affinity']} usable CPU(s); python {result['python']}"
    )
    print(
        f"fleet: {args.vms:,} VMs x {summary['windows']} windows (30 min, 48 h, blackout 08-10)\n"
    )
    rows = [
        ("plan (validate + model + solve)", f"{plan_s:.2f} s ({summary['method']})"),
        ("peak RSS", f"{result['peak_rss_mb']:.0f} MB (after plan: {rss_after_plan:.0f} MB)"),
        ("placed / unplaced", f"{summary['placed']:,} / {summary['unplaced']:,}"),
        ("constraint violations", f"{len(violations)} (check_plan {check_s:.2f} s)"),
        (
            "peak per host / cluster",
            f"{summary['peak_concurrent_per_host']} / {summary['peak_concurrent_per_cluster']}",
        ),
        (
            "peak bandwidth",
            f"{summary['peak_bandwidth_gbps']:,.0f} Gbit/s of {args.bandwidth_gbps:,.0f}",
        ),
        ("evaluation (oracle + naive)", f"{evaluate_s:.2f} s"),
    ]
    rows += [(name, f"{value:.3f}") for name, value in report.ratios.items()]
    rows += [
        (f"greedy gap vs MILP ({args.small_instances} x {args.small_vms} VMs)",
         f"mean {gap['greedy_gap_mean_pct']:.3f} %, max {gap['greedy_gap_max_pct']:.3f} %"),
        ("MILP / greedy time per small instance",
         f"{gap['milp_s_per_instance']:.3f} s / {gap['greedy_s_per_instance']:.4f} s"),
    ]  # fmt: skip
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f"{name:<{width}}  {value}")
    print()
    print(report)
    for line in violations[:10]:
        print("VIOLATION", line)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
