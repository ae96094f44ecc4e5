"""Resource planning before a clustering runs: memory and time from rows x columns x algorithm.

The models are deliberately simple and conservative (float64, one core at ``FLOPS``):

* every algorithm: the table as read, the prepared matrix and the estimator's own copy
  (``PREPARE_COPIES`` x ``n*d`` floats);
* k-means family: + distances ``n*k``; time ``n*d*k*iterations*n_init``.
* GMM: + responsibilities ``n*k`` + covariances ``k*d*d``; time ``n*k*d*d*iterations``.
* DBSCAN / HDBSCAN: neighbourhoods ~``n*min_samples*4`` entries; time ``n*log n*d`` (tree)
  growing to ``n^2*d`` in high dimension (over 20 columns).
* spectral: a k-NN affinity plus an eigen-solve; sklearn materialises dense ``n^2`` work arrays
  for the embedding, so memory and time grow quadratically.
* Ward / average linkage: a condensed ``n^2/2`` distance matrix; time ``n^2*d``.
* Genie: a minimum spanning tree, costed as HDBSCAN's.

``plan_clustering`` returns ``run``, ``switch`` (KMeans whose time is over the limit runs as
MiniBatchKMeans, with a note) or ``refuse`` (a :class:`~zhuge.errors.DataError` via
:func:`require_feasible`, saying what to do instead: stream, sample, another algorithm).
``plan_fit`` applies that to the algorithms a :class:`~zhuge.ml.cluster.Segmenter` is about
to search, before anything is fitted: explicit choices are refused or switched, ``auto``
drops what cannot run and says so.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import psutil

from zhuge.ml.cluster._validation import ClusterInputError
from zhuge.ml.cluster.algorithms import ALGORITHMS as ALGORITHM_NAMES

__all__ = [
    "ClusteringPlan",
    "FitPlan",
    "default_memory_limit",
    "estimate_resources",
    "plan_clustering",
    "plan_fit",
    "require_feasible",
]

FLOPS = 1e9  # useful float operations per second per core, measured order of magnitude
BYTES = 8  # float64
PREPARE_COPIES = 3  # table as read + prepared matrix + the estimator's working copy
SPECTRAL_MAX_ROWS = 20_000  # dense n^2 embedding / linkage work beyond this is not worth it
QUADRATIC = ("spectral", "ward", "average")  # memory grows with rows squared
MEMORY_SHARE = 0.7  # of the memory available now that one clustering may plan to use
TIME_LIMIT_S = 3600.0  # default: refuse or switch plans estimated above an hour


def default_memory_limit() -> int:
    """Bytes one clustering may plan to use: a share of the memory available right now."""
    return int(psutil.virtual_memory().available * MEMORY_SHARE)


@dataclass(frozen=True)
class ClusteringPlan:
    algorithm: str
    action: Literal["run", "switch", "refuse"]
    memory_bytes: int
    seconds: float
    note: str = ""
    sample_rows: int | None = None

    def as_dict(self) -> dict[str, object]:
        return {
            "algorithm": self.algorithm,
            "action": self.action,
            "memory_gib": round(self.memory_bytes / 2**30, 3),
            "seconds": round(self.seconds, 1),
            "note": self.note,
            "sample_rows": self.sample_rows,
        }


def estimate_resources(n_rows: int, n_cols: int, algorithm: str, k: int = 8) -> tuple[int, float]:
    """(bytes, seconds) the algorithm needs on ``n_rows`` x ``n_cols``."""
    n, d = max(n_rows, 1), max(n_cols, 1)
    data = n * d * BYTES * PREPARE_COPIES
    if algorithm in ("kmeans", "minibatch_kmeans"):
        iters, n_init = (100, 3) if algorithm == "kmeans" else (10, 3)
        return data + n * k * BYTES, n * d * k * iters * n_init / FLOPS
    if algorithm == "gmm":
        return data + n * k * BYTES * 2 + k * d * d * BYTES, n * k * d * d * 100 / FLOPS
    if algorithm in (
        "dbscan",
        "hdbscan",
        "genie",
    ):  # genie: a minimum spanning tree, like HDBSCAN's
        work = n * n * d if d > 20 else n * math.log2(n + 1) * d * 50
        return data + n * 20 * BYTES * 4, work / FLOPS
    if algorithm == "spectral":
        return data + n * n * BYTES, (n * n * 20 + n * k * k * 50) / FLOPS
    if algorithm in ("ward", "average"):  # scipy/sklearn linkage: a condensed n^2/2 matrix
        return data + n * n * BYTES // 2, n * n * d * 3 / FLOPS
    raise ClusterInputError(
        f"unknown algorithm {algorithm!r}; choose from {sorted(ALGORITHM_NAMES)} or 'auto'"
    )


def _gib(nbytes: float) -> str:
    return f"{nbytes / 2**30:.1f} GiB"


def plan_clustering(
    n_rows: int,
    n_cols: int,
    algorithm: str,
    *,
    k: int = 8,
    memory_limit_bytes: int | None = None,
    time_limit_s: float = TIME_LIMIT_S,
) -> ClusteringPlan:
    """Whether ``algorithm`` can run on ``n_rows`` x ``n_cols`` within the limits, and if not,
    what to do instead. ``memory_limit_bytes`` defaults to :func:`default_memory_limit`."""
    limit = default_memory_limit() if memory_limit_bytes is None else memory_limit_bytes
    mem, secs = estimate_resources(n_rows, n_cols, algorithm, k)
    fits = mem <= limit
    if algorithm == "kmeans" and fits and secs > time_limit_s:
        m2, s2 = estimate_resources(n_rows, n_cols, "minibatch_kmeans", k)
        return ClusteringPlan(
            "minibatch_kmeans",
            "switch",
            m2,
            s2,
            f"KMeans on {n_rows} x {n_cols} is estimated at {secs:.0f} s (limit "
            f"{time_limit_s:.0f} s): MiniBatchKMeans instead (about {s2:.0f} s)",
        )
    if (
        fits
        and secs <= time_limit_s
        and not (algorithm in QUADRATIC and n_rows > SPECTRAL_MAX_ROWS)
    ):
        return ClusteringPlan(algorithm, "run", mem, secs)
    why = (
        f"{algorithm} on {n_rows} rows x {n_cols} columns needs about {_gib(mem)} and "
        f"{secs:.0f} s (limits {_gib(limit)}, {time_limit_s:.0f} s)"
    )
    if algorithm in QUADRATIC:
        return ClusteringPlan(
            algorithm,
            "refuse",
            mem,
            secs,
            f"{why}; {algorithm} grows with rows squared: use kmeans, gmm or hdbscan, or cluster "
            f"a sample of at most {SPECTRAL_MAX_ROWS} rows (--sample)",
            SPECTRAL_MAX_ROWS,
        )
    if algorithm in ("dbscan", "hdbscan", "gmm", "genie"):
        rows = n_rows
        while rows > 1_000 and (
            estimate_resources(rows, n_cols, algorithm, k)[1] > time_limit_s
            or estimate_resources(rows, n_cols, algorithm, k)[0] > limit
        ):
            rows //= 2
        return ClusteringPlan(
            algorithm,
            "refuse",
            mem,
            secs,
            f"{why}; cluster a sample of about {rows} rows instead (--sample {rows})",
            rows,
        )
    return ClusteringPlan(
        algorithm,
        "refuse",
        mem,
        secs,
        f"{why}; the table does not fit in memory: stream it from Parquet with "
        "minibatch-kmeans (zhuge cluster --stream)",
    )


def require_feasible(plan: ClusteringPlan) -> ClusteringPlan:
    """Raise a ``DataError`` with the plan's note where it refuses; return it otherwise."""
    if plan.action == "refuse":
        raise ClusterInputError(f"refusing to run: {plan.note}")
    return plan


@dataclass(frozen=True)
class FitPlan:
    """The algorithms left to search after planning, each one's plan, and what changed."""

    algorithms: list[str]
    plans: list[ClusteringPlan]
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, object]:
        return {
            "algorithms": self.algorithms,
            "plans": [p.as_dict() for p in self.plans],
            "notes": self.notes,
        }


def plan_fit(
    n_rows: int,
    n_cols: int,
    algorithms: Sequence[str],
    *,
    k: int = 8,
    explicit: bool = True,
    memory_limit_bytes: int | None = None,
    time_limit_s: float = TIME_LIMIT_S,
) -> FitPlan:
    """Plan every algorithm about to be searched, before anything is fitted.

    ``explicit`` (the caller named the algorithms): a refusal is an error. Otherwise (``auto``)
    a refused algorithm is left out with a note; only when none is left is it an error.
    """
    limit = default_memory_limit() if memory_limit_bytes is None else memory_limit_bytes
    plans = [
        plan_clustering(n_rows, n_cols, a, k=k, memory_limit_bytes=limit, time_limit_s=time_limit_s)
        for a in algorithms
    ]
    kept: list[str] = []
    notes: list[str] = []
    refused = [p for p in plans if p.action == "refuse"]
    if refused and (explicit or len(refused) == len(plans)):
        raise ClusterInputError(
            "refusing to run: " + "; ".join(dict.fromkeys(p.note for p in refused))
        )
    for plan in plans:
        if plan.action == "refuse":
            notes.append(f"left out {plan.algorithm}: {plan.note}")
            continue
        if plan.action == "switch":
            notes.append(plan.note)
        if plan.algorithm not in kept:
            kept.append(plan.algorithm)
    return FitPlan(kept, plans, notes)
