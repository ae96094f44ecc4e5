"""Six clustering algorithms behind one results contract.

``fit_algorithm(name, X, params)`` returns a :class:`ClusterResult`: integer ``labels`` (``-1``
marks noise for the density methods), the number of clusters found, the fitted estimator and
whether it can assign *new* rows (``can_predict``). Estimator classes come from
:mod:`zhuge.ml.cluster.backends`, so the CPU/GPU choice is made once, there.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from zhuge.ml.cluster._validation import ClusterInputError, check_k
from zhuge.ml.cluster.backends import Backend, get_backend

__all__ = [
    "ALGORITHMS",
    "AlgorithmInfo",
    "ClusterResult",
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
}


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
    return ClusterResult(name, params, labels, n_found, info.can_predict, estimator, notes)


def predict_labels(result: ClusterResult, X: np.ndarray) -> np.ndarray:
    """Assign new rows to the clusters of ``result``; a clear error where the algorithm cannot."""
    if not result.can_predict:
        raise ClusterInputError(
            f"{result.algorithm} cannot assign new rows (it labels only the rows it was fitted "
            "on); refit on the new data, or choose kmeans, minibatch_kmeans or gmm"
        )
    return np.asarray(result.model.predict(X)).astype(np.int64)
