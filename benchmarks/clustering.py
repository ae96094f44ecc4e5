"""Clustering benchmarks, side by side; prints a table and one JSON line.

(a) platform overhead: zhuge's KMeans path (Segmenter, one candidate, no preprocessing: input
    checks, planning, the fit, a lone candidate's scores) vs scikit-learn KMeans directly, same
    data, n_init and seed. Repeated ``--repeats`` times, interleaved in ABBA order (sklearn
    first in even pairs, zhuge first in odd ones) so both see the same machine load and
    neither always pays for going first; medians of wall and CPU seconds, the median of the
    paired ratios, and sklearn's own spread between repeats as the noise floor.
(b) automatic search (successive halving) vs an exhaustive grid that evaluates every
    candidate on all rows with the same criteria: speed ratio and whether winners agree.
(c) ARI on sklearn's bundled sets: auto (k unknown) vs standardised KMeans with the true k.

    python -m benchmarks.clustering --rows 1000000 --cols 32 --repeats 5
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time

from sklearn import datasets
from sklearn.cluster import KMeans
from sklearn.datasets import make_blobs
from sklearn.metrics import adjusted_rand_score
from sklearn.preprocessing import StandardScaler

from zhuge.ml.cluster import Segmenter
from zhuge.ml.cluster.search import (
    CONVEX_ALGORITHMS,
    SearchOptions,
    choose_k,
    search_clusterings,
)


def _timed(fn):
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - wall, time.process_time() - cpu


def overhead(rows: int, cols: int, k: int, n_init: int, repeats: int) -> dict:
    X, _ = make_blobs(n_samples=rows, n_features=cols, centers=k, random_state=0)

    def direct():
        return KMeans(n_clusters=k, n_init=n_init, random_state=0).fit(X)

    def zhuge():
        return Segmenter(
            algorithm="kmeans",
            n_clusters=k,
            preprocess=None,
            params={"init": "k-means++", "n_init": n_init},
        ).fit(X)

    runs = []
    for i in range(repeats):
        # ABBA order: whichever runs first in a pair pays for warming caches and threads
        if i % 2 == 0:
            model, s_wall, s_cpu = _timed(direct)
            seg, z_wall, z_cpu = _timed(zhuge)
        else:
            seg, z_wall, z_cpu = _timed(zhuge)
            model, s_wall, s_cpu = _timed(direct)
        assert adjusted_rand_score(model.labels_, seg.labels_) > 0.999
        runs.append(
            {"sklearn_s": s_wall, "zhuge_s": z_wall, "sklearn_cpu": s_cpu, "zhuge_cpu": z_cpu}
        )
    med = {key: statistics.median(r[key] for r in runs) for key in runs[0]}
    sk = [r["sklearn_s"] for r in runs]
    return {
        "rows": rows,
        "cols": cols,
        "k": k,
        "n_init": n_init,
        "repeats": repeats,
        "runs": runs,
        **{f"median_{key}": value for key, value in med.items()},
        "overhead_pct_median_wall": 100 * (med["zhuge_s"] / med["sklearn_s"] - 1),
        "overhead_pct_median_cpu": 100 * (med["zhuge_cpu"] / med["sklearn_cpu"] - 1),
        "overhead_pct_paired_median": 100
        * statistics.median(r["zhuge_s"] / r["sklearn_s"] - 1 for r in runs),
        # how much sklearn alone varied between repeats: differences below this are noise
        "noise_pct_sklearn_spread": 100 * (max(sk) - min(sk)) / statistics.median(sk),
    }


def search_vs_grid(name: str, X, k_range: tuple[int, int] = (2, 10)) -> dict:
    """k is chosen once (the gap statistic, shared by both); then the candidates at that k are
    searched by successive halving and by an exhaustive grid (every candidate on all rows,
    one rung, same criteria). Both the search alone and the totals are reported."""
    (k, _), t_k, _ = _timed(lambda: choose_k(X, k_range))
    # the search for named algorithms (auto's own selection has no rungs to compare)
    named = list(CONVEX_ALGORITHMS)
    halving, t_halving, c_halving = _timed(
        lambda: search_clusterings(X, SearchOptions(algorithms=named, n_clusters=k))
    )
    grid, t_grid, c_grid = _timed(
        lambda: search_clusterings(
            X, SearchOptions(algorithms=named, n_clusters=k, min_rung_rows=len(X))
        )
    )
    same = halving.winner_record.candidate.label() == grid.winner_record.candidate.label()
    return {
        "data": name,
        "rows": len(X),
        "cols": X.shape[1],
        "k": k,
        "candidates": len(grid.candidates),
        "rungs": halving.rungs,
        "choose_k_s": t_k,
        "halving_s": t_halving,
        "grid_s": t_grid,
        "halving_cpu": c_halving,
        "grid_cpu": c_grid,
        "speedup": t_grid / t_halving,
        "speedup_cpu": c_grid / c_halving,
        "speedup_with_k_choice": (t_k + t_grid) / (t_k + t_halving),
        "same_winner": same,
        # different winners can still be the same partition of the rows
        "winners_ari": adjusted_rand_score(halving.winner.labels, grid.winner.labels),
        "winner": halving.winner_record.candidate.label(),
        "grid_winner": grid.winner_record.candidate.label(),
    }


def search_sets(big_rows: int) -> list[dict]:
    digits = StandardScaler().fit_transform(datasets.load_digits().data)
    blobs, _ = make_blobs(
        n_samples=big_rows, n_features=8, centers=6, cluster_std=1.5, random_state=0
    )
    return [
        search_vs_grid("digits (standardised)", digits),
        search_vs_grid(f"blobs {big_rows}x8, 6 centres", StandardScaler().fit_transform(blobs)),
    ]


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
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--search-rows", type=int, default=10_000, help="rows of the blobs in (b)")
    parser.add_argument("--parts", default="a,b,c", help="which of a,b,c to run")
    args = parser.parse_args()
    machine = {
        "cpu_cores": len(os.sched_getaffinity(0)),
        "platform": platform.platform(),
        "python": platform.python_version(),
    }
    parts = set(args.parts.split(","))
    a = overhead(args.rows, args.cols, args.k, args.n_init, args.repeats) if "a" in parts else None
    b = search_sets(args.search_rows) if "b" in parts else []
    c = ari_table() if "c" in parts else []
    print(f"machine: {machine}")
    if a:
        print(
            f"(a) KMeans {a['rows']}x{a['cols']} k={args.k} n_init={args.n_init}, {a['repeats']} interleaved repeats (median):"
            f" sklearn {a['median_sklearn_s']:.2f}s wall / {a['median_sklearn_cpu']:.2f}s cpu,"
            f" zhuge {a['median_zhuge_s']:.2f}s wall / {a['median_zhuge_cpu']:.2f}s cpu;"
            f" overhead {a['overhead_pct_median_wall']:+.1f}% wall, {a['overhead_pct_median_cpu']:+.1f}% cpu,"
            f" paired {a['overhead_pct_paired_median']:+.1f}%; sklearn's own spread {a['noise_pct_sklearn_spread']:.0f}%"
        )
    for r in b:
        print(
            f"(b) {r['data']}: k={r['k']} chosen in {r['choose_k_s']:.1f}s; {r['candidates']} candidates, rungs {r['rungs']}:"
            f" halving {r['halving_s']:.1f}s ({r['halving_cpu']:.1f}s cpu), exhaustive {r['grid_s']:.1f}s ({r['grid_cpu']:.1f}s cpu);"
            f" speed-up x{r['speedup']:.1f} wall, x{r['speedup_cpu']:.1f} cpu, x{r['speedup_with_k_choice']:.1f} with the k choice;"
            f" same winner: {r['same_winner']} ({r['winner']} / {r['grid_winner']}, ARI between them {r['winners_ari']:.3f})"
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
