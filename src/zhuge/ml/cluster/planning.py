"""Resource planning before a clustering runs: memory and time from rows x columns x algorithm.

The models are deliberately simple and conservative (float64, one core at ``FLOPS``):

* k-means family: data + distances ``n*k``; time ``n*d*k*iterations*n_init``.
* GMM: data + responsibilities ``n*k`` + covariances ``k*d*d``; time ``n*k*d*d*iterations``.
* DBSCAN / HDBSCAN: neighbourhoods ~``n*min_samples*4`` entries; time ``n*log n*d`` (tree)
  growing to ``n^2*d`` in high dimension (over 20 columns).
* spectral: a k-NN affinity plus an eigen-solve; sklearn materialises dense ``n^2`` work arrays
  for the embedding, so memory and time grow quadratically.

``plan_clustering`` returns ``run``, ``switch`` (to ``minibatch_kmeans`` or a sample, with a
note) or ``refuse`` (a :class:`~zhuge.errors.DataError` via :func:`require_feasible`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from zhuge.ml.cluster._validation import ClusterInputError

__all__ = ["ClusteringPlan", "estimate_resources", "plan_clustering", "require_feasible"]

FLOPS = 1e9  # useful float operations per second per core, measured order of magnitude
BYTES = 8  # float64
MINIBATCH_ROWS = 200_000  # above this, k-means runs as MiniBatchKMeans
SPECTRAL_MAX_ROWS = 20_000  # dense n^2 embedding work beyond this is not worth it


@dataclass(frozen=True)
class ClusteringPlan:
    algorithm: str
    action: Literal["run", "switch", "refuse"]
    memory_bytes: int
    seconds: float
    note: str = ""
    sample_rows: int | None = None


def estimate_resources(n_rows: int, n_cols: int, algorithm: str, k: int = 8) -> tuple[int, float]:
    """(bytes, seconds) the algorithm needs on ``n_rows`` x ``n_cols``."""
    n, d = max(n_rows, 1), max(n_cols, 1)
    data = n * d * BYTES
    if algorithm in ("kmeans", "minibatch_kmeans"):
        iters, n_init = (100, 3) if algorithm == "kmeans" else (10, 3)
        return data + n * k * BYTES, n * d * k * iters * n_init / FLOPS
    if algorithm == "gmm":
        return data + n * k * BYTES * 2 + k * d * d * BYTES, n * k * d * d * 100 / FLOPS
    if algorithm in ("dbscan", "hdbscan"):
        work = n * n * d if d > 20 else n * math.log2(n + 1) * d * 50
        return data + n * 20 * BYTES * 4, work / FLOPS
    if algorithm == "spectral":
        return data + n * n * BYTES, (n * n * 20 + n * k * k * 50) / FLOPS
    raise ClusterInputError(f"unknown algorithm {algorithm!r}")


def plan_clustering(
    n_rows: int,
    n_cols: int,
    algorithm: str,
    *,
    k: int = 8,
    memory_limit_bytes: int = 8 * 2**30,
    time_limit_s: float = 3600.0,
) -> ClusteringPlan:
    mem, secs = estimate_resources(n_rows, n_cols, algorithm, k)
    if algorithm == "kmeans" and n_rows > MINIBATCH_ROWS:
        m2, s2 = estimate_resources(n_rows, n_cols, "minibatch_kmeans", k)
        return ClusteringPlan(
            "minibatch_kmeans",
            "switch",
            m2,
            s2,
            f"{n_rows} rows > {MINIBATCH_ROWS}: MiniBatchKMeans instead of KMeans",
        )
    if (
        mem <= memory_limit_bytes
        and secs <= time_limit_s
        and not (algorithm == "spectral" and n_rows > SPECTRAL_MAX_ROWS)
    ):
        return ClusteringPlan(algorithm, "run", mem, secs)
    why = f"{algorithm} on {n_rows} x {n_cols} needs about {mem / 2**30:.1f} GiB and {secs:.0f} s (limits {memory_limit_bytes / 2**30:.1f} GiB, {time_limit_s:.0f} s)"
    if algorithm == "spectral":
        return ClusteringPlan(
            algorithm,
            "refuse",
            mem,
            secs,
            f"{why}; spectral grows with rows squared: use kmeans, gmm or hdbscan, or cluster a sample of at most {SPECTRAL_MAX_ROWS} rows",
        )
    if algorithm in ("dbscan", "hdbscan"):
        rows = n_rows
        while rows > 1_000 and (
            estimate_resources(rows, n_cols, algorithm, k)[1] > time_limit_s
            or estimate_resources(rows, n_cols, algorithm, k)[0] > memory_limit_bytes
        ):
            rows //= 2
        return ClusteringPlan(
            algorithm,
            "refuse",
            mem,
            secs,
            f"{why}; try it on a sample of {rows} rows (it cannot label rows beyond those it is fitted on)",
            rows,
        )
    return ClusteringPlan(
        algorithm,
        "refuse",
        mem,
        secs,
        f"{why}; stream the data instead (zhuge.ml.cluster.streaming)",
    )


def require_feasible(plan: ClusteringPlan) -> ClusteringPlan:
    """Raise a ``DataError`` with the plan's note where it refuses; return it otherwise."""
    if plan.action == "refuse":
        raise ClusterInputError(f"refusing to run: {plan.note}")
    return plan
