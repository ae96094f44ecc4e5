"""Nine clustering algorithms behind one results contract.

``fit_algorithm(name, X, params)`` returns a :class:`ClusterResult`: integer ``labels`` (``-1``
marks noise for the density methods), the number of clusters found, the fitted estimator and
how it assigns *new* rows. Estimator classes come from :mod:`zhuge.ml.cluster.backends`, so
the CPU/GPU choice is made once, there.

New rows: k-means and Gaussian mixtures use their own ``predict``. The others (DBSCAN,
HDBSCAN, Genie, Ward, average linkage, spectral) label only the rows they were fitted on, so
the result keeps a :class:`NeighbourLabeler`: a new row takes the label of its nearest
fitted, non-noise row; for the density methods it is noise (``-1``) unless it lies within
that row's core distance (its distance to its ``min_samples``-th neighbour), the reach
DBSCAN/HDBSCAN themselves use to call a point part of a cluster.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from zhuge.ml.cluster._validation import ClusterInputError, check_k
from zhuge.ml.cluster.backends import Backend, get_backend

__all__ = [
    "ALGORITHMS",
    "AlgorithmInfo",
    "ClusterResult",
    "NeighbourLabeler",
    "fit_algorithm",
    "predict_labels",
]


@dataclass(frozen=True)
class AlgorithmInfo:
    """What the search and the planner need to know about one algorithm."""

    name: str
    takes_k: bool  # the number of clusters is a parameter (else the algorithm finds it)
    can_predict: bool  # can assign rows it was not fitted on
    density: bool  # labels -1 for noise
    build: Callable[[type[Any], dict[str, Any], int], Any]  # (class, params, seed) -> estimator


def _kmeans(cls: type[Any], p: dict[str, Any], seed: int) -> Any:
    return cls(
        n_clusters=p["n_clusters"],
        init=p.get("init", "k-means++"),
        n_init=p.get("n_init", 4),
        max_iter=p.get("max_iter", 300),
        random_state=seed,
    )


def _minibatch(cls: type[Any], p: dict[str, Any], seed: int) -> Any:
    return cls(
        n_clusters=p["n_clusters"],
        init=p.get("init", "k-means++"),
        n_init=p.get("n_init", 3),
        batch_size=p.get("batch_size", 4096),
        random_state=seed,
    )


def _dbscan(cls: type[Any], p: dict[str, Any], seed: int) -> Any:
    return cls(eps=p.get("eps", 0.5), min_samples=p.get("min_samples", 5))


def _hdbscan(cls: type[Any], p: dict[str, Any], seed: int) -> Any:
    kwargs = {"min_cluster_size": p.get("min_cluster_size", 5), "min_samples": p.get("min_samples")}
    if cls.__module__.startswith("sklearn"):
        kwargs["copy"] = True  # explicit: the default changes in scikit-learn 1.10
    return cls(**kwargs)


def _gmm(cls: type[Any], p: dict[str, Any], seed: int) -> Any:
    return cls(
        n_components=p["n_clusters"],
        covariance_type=p.get("covariance_type", "full"),
        n_init=p.get("n_init", 2),
        reg_covar=p.get("reg_covar", 1e-5),
        random_state=seed,
    )


def _genie(cls: type[Any], p: dict[str, Any], seed: int) -> Any:
    return cls(n_clusters=p["n_clusters"], gini_threshold=p.get("gini_threshold", 0.3))


def _linkage(method: str) -> Callable[[type[Any], dict[str, Any], int], Any]:
    def build(cls: type[Any], p: dict[str, Any], seed: int) -> Any:
        return cls(n_clusters=p["n_clusters"], linkage=method)

    return build


def _spectral(cls: type[Any], p: dict[str, Any], seed: int) -> Any:
    return cls(
        n_clusters=p["n_clusters"],
        affinity=p.get("affinity", "nearest_neighbors"),
        n_neighbors=p.get("n_neighbors", 10),
        assign_labels=p.get("assign_labels", "cluster_qr"),
        random_state=seed,
    )


ALGORITHMS: dict[str, AlgorithmInfo] = {
    "kmeans": AlgorithmInfo("kmeans", True, True, False, _kmeans),
    "minibatch_kmeans": AlgorithmInfo("minibatch_kmeans", True, True, False, _minibatch),
    "dbscan": AlgorithmInfo("dbscan", False, False, True, _dbscan),
    "hdbscan": AlgorithmInfo("hdbscan", False, False, True, _hdbscan),
    "gmm": AlgorithmInfo("gmm", True, True, False, _gmm),
    "spectral": AlgorithmInfo("spectral", True, False, False, _spectral),
    "genie": AlgorithmInfo("genie", True, False, False, _genie),
    "ward": AlgorithmInfo("ward", True, False, False, _linkage("ward")),
    "average": AlgorithmInfo("average", True, False, False, _linkage("average")),
}
NEIGHBOUR_ROWS = 100_000  # fitted rows a NeighbourLabeler keeps (a seeded sample beyond)


@dataclass
class NeighbourLabeler:
    """Labels new rows by their nearest fitted, non-noise row (see the module docstring)."""

    index: Any  # sklearn NearestNeighbors over the kept non-noise rows
    labels: np.ndarray
    reach: np.ndarray | None  # core distance per kept row (density methods), else None

    @classmethod
    def fit(
        cls, X: np.ndarray, labels: np.ndarray, *, min_samples: int | None, seed: int = 0
    ) -> NeighbourLabeler:
        from sklearn.neighbors import NearestNeighbors

        rows = np.flatnonzero(labels >= 0)
        if len(rows) > NEIGHBOUR_ROWS:
            rng = np.random.default_rng(seed)
            rows = np.sort(rng.choice(rows, NEIGHBOUR_ROWS, replace=False))
        reach = None
        if min_samples is not None:
            m = int(min(max(min_samples, 1), len(X) - 1))
            dist, _ = NearestNeighbors(n_neighbors=m + 1).fit(X).kneighbors(X[rows])
            reach = dist[:, -1]
        return cls(NearestNeighbors(n_neighbors=1).fit(X[rows]), labels[rows], reach)

    def predict(self, X: np.ndarray) -> np.ndarray:
        if len(self.labels) == 0:
            return np.full(len(X), -1, dtype=np.int64)
        dist, idx = self.index.kneighbors(X)
        out = self.labels[idx[:, 0]].astype(np.int64)
        if self.reach is not None:
            out[dist[:, 0] > self.reach[idx[:, 0]]] = -1
        return out


@dataclass(frozen=True)
class ClusterResult:
    """One fitted clustering. ``labels`` are 0..n_clusters-1, or -1 for noise."""

    algorithm: str
    params: dict[str, Any]
    labels: np.ndarray
    n_clusters: int
    can_predict: bool
    model: Any
    notes: tuple[str, ...] = field(default=())
    extension: NeighbourLabeler | None = None  # how new rows are labelled without predict()

    @property
    def noise_fraction(self) -> float:
        return float(np.mean(self.labels < 0)) if len(self.labels) else 0.0


def _info(name: str) -> AlgorithmInfo:
    try:
        return ALGORITHMS[name]
    except KeyError as exc:
        raise ClusterInputError(
            f"unknown algorithm {name!r}; choose one of {sorted(ALGORITHMS)} or 'auto'"
        ) from exc


def _relabel(labels: np.ndarray) -> np.ndarray:
    """Map cluster ids to 0..k-1 in order of first appearance; keep -1 as noise."""
    out = np.full(labels.shape, -1, dtype=np.int64)
    seen: dict[int, int] = {}
    for i, lab in enumerate(labels.tolist()):
        if lab < 0:
            continue
        out[i] = seen.setdefault(lab, len(seen))
    return out


def fit_algorithm(
    name: str,
    X: np.ndarray,
    params: dict[str, Any] | None = None,
    *,
    random_state: int = 0,
    backend: Backend | None = None,
) -> ClusterResult:
    """Fit algorithm ``name`` on ``X`` (already numeric and scaled) and return the result."""
    info = _info(name)
    params = dict(params or {})
    n = X.shape[0]
    if info.takes_k:
        k = params.get("n_clusters")
        if k is None:
            raise ClusterInputError(f"algorithm {name!r} needs n_clusters")
        check_k(k, n)
    if name == "spectral":
        params["n_neighbors"] = min(params.get("n_neighbors", 10), n - 1)
    if name in ("dbscan", "hdbscan"):
        params["min_samples"] = min(params.get("min_samples") or 5, n)
        if name == "hdbscan":
            params["min_cluster_size"] = max(2, min(params.get("min_cluster_size", 5), n))
    backend = backend or get_backend("auto")
    estimator = info.build(backend.estimator_class(name), params, random_state)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        if info.can_predict and name == "gmm":
            raw = estimator.fit(X).predict(X)
        else:
            raw = estimator.fit_predict(X)
    notes = tuple(dict.fromkeys(f"{w.category.__name__}: {w.message}" for w in caught))
    if backend.name != "sklearn":  # say which engine did the work when it is not the default
        notes = (backend.describe(name), *notes)
    raw = np.asarray(raw)
    # KMeans-family labels stay aligned with predict(); others are renumbered 0..k-1.
    labels = raw.astype(np.int64) if info.can_predict else _relabel(raw)
    found = labels[labels >= 0]
    # counting labels, not sorting them: O(n) on the million-row final fit
    n_found = int(np.count_nonzero(np.bincount(found))) if len(found) else 0
    extension = None
    if not info.can_predict:
        reach = params.get("min_samples") if info.density else None
        if name == "hdbscan" and reach is None:
            reach = params["min_cluster_size"]
        extension = NeighbourLabeler.fit(X, labels, min_samples=reach, seed=random_state)
    return ClusterResult(name, params, labels, n_found, True, estimator, notes, extension)


def with_labels(result: ClusterResult, X: np.ndarray, labels: np.ndarray) -> ClusterResult:
    """``result`` relabelled: ``labels`` found for ``X`` by another route (a fit on a sample
    extended to all rows); new rows are then labelled from these."""
    info = _info(result.algorithm)
    labels = np.asarray(labels, dtype=np.int64)
    found = labels[labels >= 0]
    n_found = int(np.count_nonzero(np.bincount(found))) if len(found) else 0
    extension = result.extension
    if not info.can_predict:
        reach = result.params.get("min_samples") if info.density else None
        if result.algorithm == "hdbscan" and reach is None:
            reach = result.params.get("min_cluster_size", 5)
        extension = NeighbourLabeler.fit(X, labels, min_samples=reach)
    return replace(result, labels=labels, n_clusters=n_found, extension=extension)


def predict_labels(result: ClusterResult, X: np.ndarray) -> np.ndarray:
    """Assign new rows to the clusters of ``result`` (see the module docstring for how)."""
    if result.extension is not None:
        return result.extension.predict(X)
    if not ALGORITHMS[result.algorithm].can_predict:
        raise ClusterInputError(
            f"{result.algorithm} cannot assign new rows (this model was saved without its "
            "fitted rows); refit on the new data"
        )
    return np.asarray(result.model.predict(X)).astype(np.int64)
