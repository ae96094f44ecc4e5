"""Clustering benchmarks, side by side; prints a table and one JSON line.

(a) platform overhead: zhuge's KMeans path (Segmenter, one candidate, no preprocessing) vs
    scikit-learn KMeans directly, same data, n_init and seed.
(b) automatic search (successive halving) vs an exhaustive grid that evaluates every
    candidate on all rows with the same criteria: speed ratio and whether winners agree.
(c) ARI on sklearn's bundled sets: auto (k unknown) vs standardised KMeans with the true k.

    python benchmarks/clustering.py --rows 1000000 --cols 32
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

from sklearn import datasets
from sklearn.cluster import KMeans
from sklearn.datasets import make_blobs
from sklearn.metrics import adjusted_rand_score
from sklearn.preprocessing import StandardScaler

from zhuge.ml.cluster import Segmenter
from zhuge.ml.cluster.search import SearchOptions, search_clusterings


def overhead(rows: int, cols: int, k: int, n_init: int) -> dict:
    X, _ = make_blobs(n_samples=rows, n_features=cols, centers=k, random_state=0)
    t = time.perf_counter()
    direct = KMeans(n_clusters=k, n_init=n_init, random_state=0).fit(X)
    t_direct = time.perf_counter() - t
    t = time.perf_counter()
    seg = Segmenter(
        algorithm="kmeans",
        n_clusters=k,
        preprocess=None,
        params={"init": "k-means++", "n_init": n_init},
    ).fit(X)
    t_zhuge = time.perf_counter() - t
    assert adjusted_rand_score(direct.labels_, seg.labels_) > 0.999
    return {
        "rows": rows,
        "cols": cols,
        "sklearn_s": t_direct,
        "zhuge_s": t_zhuge,
        "overhead_pct": 100 * (t_zhuge / t_direct - 1),
    }


def search_vs_grid() -> dict:
    X = StandardScaler().fit_transform(datasets.load_digits().data)
    t = time.perf_counter()
    halving = search_clusterings(X, SearchOptions())
    t_halving = time.perf_counter() - t
    t = time.perf_counter()
    # exhaustive: every candidate judged on all rows (one rung), same criteria
    grid = search_clusterings(X, SearchOptions(min_rung_rows=len(X)))
    t_grid = time.perf_counter() - t
    same = halving.winner_record.candidate.label() == grid.winner_record.candidate.label()
    return {
        "data": "digits (standardised)",
        "halving_s": t_halving,
        "grid_s": t_grid,
        "speedup": t_grid / t_halving,
        "same_winner": same,
        "winner": halving.winner_record.candidate.label(),
    }


def ari_table() -> list[dict]:
    out = []
    for name in ("iris", "wine", "breast_cancer", "digits"):
        data = getattr(datasets, f"load_{name}")(as_frame=True)
        X, y = data.data, data.target.to_numpy()
        base = KMeans(n_clusters=len(set(y)), n_init=10, random_state=0).fit_predict(
            StandardScaler().fit_transform(X)
        )
        t = time.perf_counter()
        seg = Segmenter().fit(X)
        out.append(
            {
                "set": name,
                "kmeans_true_k_ari": adjusted_rand_score(y, base),
                "auto_ari": adjusted_rand_score(y, seg.labels_),
                "auto_k": int(seg.n_clusters_),
                "auto_algorithm": seg.result_.algorithm,
                "auto_s": time.perf_counter() - t,
            }
        )
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--cols", type=int, default=32)
    parser.add_argument("--k", type=int, default=8)
    parser.add_argument("--n-init", type=int, default=1)
    parser.add_argument("--parts", default="a,b,c", help="which of a,b,c to run")
    args = parser.parse_args()
    machine = {
        "cpu_cores": len(os.sched_getaffinity(0)),
        "platform": platform.platform(),
        "python": platform.python_version(),
    }
    parts = set(args.parts.split(","))
    a = overhead(args.rows, args.cols, args.k, args.n_init) if "a" in parts else None
    b = search_vs_grid() if "b" in parts else None
    c = ari_table() if "c" in parts else []
    print(f"machine: {machine}")
    if a:
        print(
            f"(a) KMeans {a['rows']}x{a['cols']} k={args.k} n_init={args.n_init}: sklearn {a['sklearn_s']:.2f}s  zhuge {a['zhuge_s']:.2f}s  overhead {a['overhead_pct']:+.1f}%"
        )
    if b:
        print(
            f"(b) search on {b['data']}: halving {b['halving_s']:.1f}s  exhaustive {b['grid_s']:.1f}s  speed-up x{b['speedup']:.2f}  same winner: {b['same_winner']} ({b['winner']})"
        )
    if c:
        print("(c) set            kmeans(true k)  auto   auto k  algorithm   seconds")
    for r in c:
        print(
            f"    {r['set']:14s} {r['kmeans_true_k_ari']:14.3f} {r['auto_ari']:6.3f} {r['auto_k']:7d}  {r['auto_algorithm']:10s} {r['auto_s']:7.1f}"
        )
    print(
        json.dumps(
            {
                "benchmark": "clustering",
                "machine": machine,
                "overhead": a,
                "search_vs_grid": b,
                "ari": c,
            }
        )
    )


if __name__ == "__main__":
    main()
