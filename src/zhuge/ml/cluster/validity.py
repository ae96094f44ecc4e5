"""Validity indices that do not assume convex clusters.

* :func:`dbcv`: Density-Based Clustering Validation (Moulavi, Jaskowiak, Campello, Zimek &
  Sander, SDM 2014). Per cluster, the *sparseness* is the largest internal edge of the minimum
  spanning tree under the all-points mutual reachability distance; the *separation* is the
  smallest such distance to another cluster's internal points. A cluster scores
  ``(separation - sparseness) / max(...)`` in [-1, 1]; the index is their mean weighted by
  size over *all* rows, so rows labelled noise count as zero (a solution cannot score well
  by calling everything noise).
* :func:`dunn_owa`: a generalised Dunn index on near neighbours (Gagolewski, Bartoszuk &
  Cena 2021, "Are cluster validity measures (in)valid?", DuNN-OWA): the smallest distances
  between near neighbours in different clusters over the largest nearest-neighbour distance
  inside a cluster; from ``genieclust``. Infinite when no near neighbours are split.

Both are O(n^2) in time and memory on their input; callers pass a sample (``VALIDITY_ROWS``).
"""

from __future__ import annotations

import numpy as np
from scipy.sparse.csgraph import minimum_spanning_tree
from scipy.spatial.distance import cdist

__all__ = ["VALIDITY_ROWS", "dbcv", "dunn_owa"]

VALIDITY_ROWS = 1_500  # rows: both indices build an n x n distance matrix
# near neighbours DuNN-OWA looks at (fewer than the smallest cluster): Gagolewski et al.
# use 25 on sets of thousands of rows; on an 800-row sample the outer of three thin rings
# has neighbours 25 deep that reach across the gap, 10 deep it has not
DUNN_NEIGHBOURS = 10


def _core_distances(D: np.ndarray, d: int) -> np.ndarray:
    """All-points core distance of each row within its cluster (``D``: the cluster's own
    distance matrix): the inverse d-th power mean of the inverse distances to the others,
    computed in log space so high dimensions do not overflow."""
    n = len(D)
    if n < 2:
        return np.zeros(n)
    with np.errstate(divide="ignore"):
        logd = np.log(np.where(D > 0, D, np.inf))  # zero distances (duplicates) are skipped
    np.fill_diagonal(logd, np.inf)
    terms = -d * logd  # log((1/dist)^d)
    finite = np.isfinite(terms)
    top = np.max(np.where(finite, terms, -np.inf), axis=1, keepdims=True)
    top = np.where(np.isfinite(top), top, 0.0)
    s = np.sum(np.where(finite, np.exp(terms - top), 0.0), axis=1)
    with np.errstate(divide="ignore"):
        log_mean = top[:, 0] + np.log(s) - np.log(n - 1)
    return np.exp(-log_mean / d)


def dbcv(X: np.ndarray, labels: np.ndarray, *, distances: np.ndarray | None = None) -> float:
    """DBCV in [-1, 1] (higher is better); ``nan`` with fewer than two clusters.
    ``distances``: ``X``'s Euclidean distance matrix, when the caller already has it."""
    labels = np.asarray(labels)
    clusters = [c for c in np.unique(labels) if c >= 0]
    if len(clusters) < 2:
        return float("nan")
    d = X.shape[1]
    D = cdist(X, X) if distances is None else distances
    core = np.zeros(len(X))
    internal = np.zeros(len(X), dtype=bool)
    sparseness = {}
    for c in clusters:
        idx = np.flatnonzero(labels == c)
        Dc = D[np.ix_(idx, idx)]
        cd = _core_distances(Dc, d)
        core[idx] = cd
        if len(idx) < 3:  # no internal edge: the whole (tiny) cluster is its own core
            internal[idx] = True
            sparseness[c] = float(Dc.max()) if len(idx) == 2 else 0.0
            continue
        mrd = np.maximum(Dc, np.maximum(cd[:, None], cd[None, :]))
        np.fill_diagonal(mrd, 0.0)
        mst = minimum_spanning_tree(np.where(mrd > 0, mrd, 1e-12)).tocoo()
        degree = np.bincount(np.r_[mst.row, mst.col], minlength=len(idx))
        inner = degree > 1
        internal[idx[inner]] = True
        edges = inner[mst.row] & inner[mst.col]
        sparseness[c] = float(mst.data[edges].max()) if edges.any() else float(mst.data.max())
        if not inner.any():
            internal[idx] = True
    score = 0.0
    for c in clusters:
        mine = (labels == c) & internal
        others = (labels >= 0) & (labels != c) & internal
        sub = D[np.ix_(mine, others)]
        mrd = np.maximum(sub, np.maximum(core[mine][:, None], core[others][None, :]))
        separation = float(mrd.min())
        sparse = sparseness[c]
        denom = max(separation, sparse)
        validity = (separation - sparse) / denom if denom > 0 else 0.0
        score += np.sum(labels == c) * validity
    return float(score / len(labels))


def dunn_owa(X: np.ndarray, labels: np.ndarray) -> float:
    """DuNN-OWA (M = :data:`DUNN_NEIGHBOURS`, smoothed minimum over 5 / maximum) on the
    non-noise rows; higher is better, ``+inf`` when no row has one of its M nearest
    neighbours in another cluster; ``nan`` with fewer than two clusters."""
    from genieclust.cluster_validity import dunnowa_index

    keep = np.asarray(labels) >= 0
    lab = np.asarray(labels)[keep]
    if len(np.unique(lab)) < 2 or keep.sum() < 10:
        return float("nan")
    _, lab, sizes = np.unique(lab, return_inverse=True, return_counts=True)
    value = dunnowa_index(
        np.ascontiguousarray(X[keep], dtype=float),
        lab.astype(np.intp),
        M=int(max(2, min(DUNN_NEIGHBOURS, sizes.min() - 1))),
        owa_numerator="SMin:5",
        owa_denominator="Max",
    )
    # +inf: no row has a neighbour (of its 25 nearest) in another cluster: perfectly separated
    return float(value) if not np.isnan(value) else float("nan")
