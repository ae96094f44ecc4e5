"""``auto`` against fixed clustering choices on the labelled battery; a table per set and means.

Every set of :func:`zhuge.ml.cluster.battery.battery` (48 sets, 8 families) is clustered by

* ``auto``: ``Segmenter()`` told nothing (algorithm and preprocessing ``auto``, k unknown),
  on the raw table, as a user would run it;
* the references, on standardised data: HDBSCAN with ``min_cluster_size = max(5, n // 100)``,
  k-means told the true k (10 restarts), a Gaussian mixture told the true k;
* beside them: Genie (gini 0.3, true k), Ward (true k), DBSCAN with eps at the k-distance knee.

Scores: adjusted Rand index with ground-truth noise rows left out and a predicted ``-1``
counted as one label (:func:`~zhuge.ml.cluster.battery.score_ari`). ``auto`` "wins" a set when
it is the best of auto + the three references or within 0.05 of the best. The tune/report
split is the battery's own (``TUNE_FAMILIES`` / ``REPORT_FAMILIES``); the goal is judged on
the report families.

    .venv/bin/python -W ignore -m benchmarks.cluster_battery [--families chains,noise] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
import warnings

import numpy as np
import pandas as pd
from sklearn.cluster import DBSCAN, HDBSCAN, AgglomerativeClustering, KMeans
from sklearn.mixture import GaussianMixture
from sklearn.preprocessing import StandardScaler

from zhuge.ml.cluster import Segmenter
from zhuge.ml.cluster.battery import REPORT_FAMILIES, TUNE_FAMILIES, battery, score_ari
from zhuge.ml.cluster.selection import knee_eps

REFERENCES = ("hdbscan", "kmeans_true_k", "gmm_true_k")
BESIDE = ("genie_true_k", "ward_true_k", "dbscan_knee")
WITHIN = 0.05


def references(X: np.ndarray, k: int) -> dict[str, np.ndarray]:
    from genieclust import Genie

    Z = StandardScaler().fit_transform(X)
    n = len(Z)
    m = min(2 * Z.shape[1], 50) if Z.shape[1] > 2 else 5
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return {
            "hdbscan": HDBSCAN(min_cluster_size=max(5, n // 100), copy=True).fit_predict(Z),
            "kmeans_true_k": KMeans(k, n_init=10, random_state=0).fit_predict(Z),
            "gmm_true_k": GaussianMixture(k, n_init=2, random_state=0).fit(Z).predict(Z),
            "genie_true_k": Genie(n_clusters=k, gini_threshold=0.3).fit_predict(Z),
            "ward_true_k": AgglomerativeClustering(k, linkage="ward").fit_predict(Z),
            "dbscan_knee": DBSCAN(eps=knee_eps(Z, m), min_samples=m).fit_predict(Z),
        }


def run_set(s) -> dict:
    refs = references(s.X, s.k)
    started = time.perf_counter()
    seg = Segmenter(random_state=0).fit(
        pd.DataFrame(s.X, columns=[f"x{i}" for i in range(s.X.shape[1])])
    )
    seconds = time.perf_counter() - started
    row = {
        "set": s.name,
        "family": s.family,
        "split": "tune" if s.family in TUNE_FAMILIES else "report",
        "n": len(s.X),
        "d": s.X.shape[1],
        "k": s.k,
        "noise_share": float(np.mean(s.y < 0)),
        "auto": score_ari(s.y, seg.labels_),
        "auto_k": int(seg.n_clusters_),
        "auto_choice": seg.search_.winner_record.candidate.label(),
        "decided_by": seg.search_.decided_by,
        "auto_s": seconds,
    }
    row.update({name: score_ari(s.y, labels) for name, labels in refs.items()})
    best = max(row[name] for name in ("auto", *REFERENCES))
    row["auto_within_005"] = bool(row["auto"] >= best - WITHIN)
    return row


def summary(rows: list[dict]) -> dict:
    out = {"sets": len(rows)}
    for name in ("auto", *REFERENCES, *BESIDE):
        out[f"mean_{name}"] = float(np.mean([r[name] for r in rows]))
    out["auto_within_005_share"] = float(np.mean([r["auto_within_005"] for r in rows]))
    out["auto_beats_each_reference"] = all(
        out["mean_auto"] > out[f"mean_{name}"] for name in REFERENCES
    )
    return out


def markdown(rows: list[dict]) -> str:
    cols = ("auto", *REFERENCES, *BESIDE)
    lines = [
        "| set | family | n | d | k | auto (k, choice, decided by) | "
        + " | ".join(cols[1:])
        + " |",
        "| --- | --- | --- | --- | --- | --- | " + " | ".join("---" for _ in cols[1:]) + " |",
    ]
    for r in rows:
        mark = "" if r["auto_within_005"] else " ✗"
        lines.append(
            f"| {r['set']} | {r['family']} | {r['n']} | {r['d']} | {r['k']} | "
            f"**{r['auto']:.2f}**{mark} ({r['auto_k']}, {r['auto_choice']}, "
            f"by {r['decided_by']}) | " + " | ".join(f"{r[c]:.2f}" for c in cols[1:]) + " |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--families", default=",".join(TUNE_FAMILIES + REPORT_FAMILIES))
    parser.add_argument("--json", action="store_true", help="also print one JSON line")
    args = parser.parse_args()
    families = tuple(f for f in args.families.split(",") if f)
    machine = {
        "cpu_cores": len(os.sched_getaffinity(0)),
        "platform": platform.platform(),
        "python": platform.python_version(),
    }
    rows = []
    for s in battery(families):
        rows.append(run_set(s))
        r = rows[-1]
        print(
            f"{r['set']:26s} {r['split']:6s} auto {r['auto']:.2f} (k={r['auto_k']}, "
            f"{r['auto_choice']}, by {r['decided_by']}, {r['auto_s']:.1f}s)  "
            + "  ".join(f"{name} {r[name]:.2f}" for name in (*REFERENCES, *BESIDE)),
            flush=True,
        )
    print(f"machine: {machine}")
    print(markdown(rows))
    for split in ("tune", "report"):
        part = [r for r in rows if r["split"] == split]
        if part:
            s = summary(part)
            print(
                f"{split} ({s['sets']} sets): "
                + ", ".join(
                    f"{name} {s[f'mean_{name}']:.3f}" for name in ("auto", *REFERENCES, *BESIDE)
                )
                + f"; auto best or within {WITHIN} on {s['auto_within_005_share']:.0%};"
                f" beats each reference: {s['auto_beats_each_reference']}"
            )
    if args.json:
        print(json.dumps({"benchmark": "cluster_battery", "machine": machine, "rows": rows}))


if __name__ == "__main__":
    main()
