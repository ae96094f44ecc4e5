"""k-means, k=8, on make_blobs rows: scikit-learn on the CPU vs zhuge's torch k-means on the
CPU and on CUDA (the ``torch`` clustering backend).

For each size (default 1M and 5M rows x 32 features): one fit per engine, same k, n_init and
max_iter, timed in wall seconds (the torch fit returns numpy, so the GPU's work is finished
when the clock is read; a small CUDA fit first pays the context start, and is reported
apart). Prints the machine (CPU model, cores, torch threads, GPU name), for each fit the
seconds, inertia, iterations, ARI against the blobs' truth and between engines, and a final
JSON line. An engine that is slower than ``--cpu-budget-s`` on one size is skipped on the
larger ones, and says so.

    .venv/bin/python benchmarks/kmeans_gpu.py --rows 1000000 5000000
"""

from __future__ import annotations

import sys
from pathlib import Path

# run as a script, benchmarks/ is sys.path[0] and its queue.py shadows the standard library's
if sys.path and Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
    sys.path.pop(0)

import argparse
import json
import os
import platform
import time
from typing import Any

import numpy as np
import sklearn
from sklearn.cluster import KMeans
from sklearn.datasets import make_blobs
from sklearn.metrics import adjusted_rand_score

from zhuge.ml.cluster.torch_kmeans import TorchKMeans, require_torch


def machine(torch: Any) -> dict[str, Any]:
    cpu = platform.processor() or "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    cuda = torch.cuda.is_available()
    return {
        "cpu": cpu,
        "cpu_cores": len(os.sched_getaffinity(0)),
        "torch_threads": torch.get_num_threads(),
        "gpu": torch.cuda.get_device_name(0) if cuda else None,
        "torch": torch.__version__,
        "cuda": torch.version.cuda if cuda else None,
        "sklearn": sklearn.__version__,
        "numpy": np.__version__,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, nargs="+", default=[1_000_000, 5_000_000])
    ap.add_argument("--features", type=int, default=32)
    ap.add_argument("--k", type=int, default=8)
    ap.add_argument("--n-init", type=int, default=1)
    ap.add_argument("--max-iter", type=int, default=100)
    ap.add_argument("--cluster-std", type=float, default=6.0)
    ap.add_argument("--cpu-budget-s", type=float, default=60.0)
    args = ap.parse_args()
    torch = require_torch()
    info = machine(torch)
    print("machine:", json.dumps(info), flush=True)
    engines: dict[str, Any] = {
        "sklearn_cpu": lambda: KMeans(
            n_clusters=args.k, n_init=args.n_init, max_iter=args.max_iter, random_state=0
        ),
        "torch_cpu": lambda: TorchKMeans(
            n_clusters=args.k,
            n_init=args.n_init,
            max_iter=args.max_iter,
            random_state=0,
            device="cpu",
        ),
    }
    if torch.cuda.is_available():
        engines["torch_cuda"] = lambda: TorchKMeans(
            n_clusters=args.k,
            n_init=args.n_init,
            max_iter=args.max_iter,
            random_state=0,
            device="cuda",
        )
        warm, _ = make_blobs(10_000, n_features=args.features, centers=args.k, random_state=9)
        t0 = time.perf_counter()
        engines["torch_cuda"]().fit(warm)
        print(f"CUDA warm-up fit (context start), 10k rows: {time.perf_counter() - t0:.2f} s")
    results: list[dict[str, Any]] = []
    skipped: set[str] = set()
    for n in args.rows:
        X, y = make_blobs(
            n,
            n_features=args.features,
            centers=args.k,
            cluster_std=args.cluster_std,
            random_state=0,
        )
        labels: dict[str, np.ndarray] = {}
        for name, build in engines.items():
            if name in skipped:
                print(f"{n:>9} rows  {name:<11} skipped: over --cpu-budget-s on a smaller size")
                continue
            model = build()
            t0 = time.perf_counter()
            model.fit(X)
            seconds = time.perf_counter() - t0
            labels[name] = np.asarray(model.labels_)
            row = {
                "rows": n,
                "features": args.features,
                "k": args.k,
                "engine": name,
                "seconds": round(seconds, 3),
                "inertia": float(model.inertia_),
                "n_iter": int(model.n_iter_),
                "ari_truth": round(adjusted_rand_score(y, labels[name]), 5),
            }
            if name != "sklearn_cpu" and "sklearn_cpu" in labels:
                row["ari_vs_sklearn"] = round(
                    adjusted_rand_score(labels["sklearn_cpu"], labels[name]), 5
                )
            results.append(row)
            print(
                f"{n:>9} rows  {name:<11} {seconds:8.2f} s  inertia {row['inertia']:.6e}  "
                f"iter {row['n_iter']:>3}  ARI truth {row['ari_truth']:.4f}  "
                f"ARI vs sklearn {row.get('ari_vs_sklearn', float('nan')):.4f}",
                flush=True,
            )
            if name != "torch_cuda" and seconds > args.cpu_budget_s:
                skipped.add(name)
        if "torch_cpu" in labels and "torch_cuda" in labels:
            agree = adjusted_rand_score(labels["torch_cpu"], labels["torch_cuda"])
            print(f"{n:>9} rows  ARI torch_cpu vs torch_cuda {agree:.5f}")
    print(json.dumps({"machine": info, "args": vars(args), "results": results}))


if __name__ == "__main__":
    main()
