"""k-means in PyTorch: the GPU engine for ``kmeans`` where cuML is not installed.

:class:`TorchKMeans` follows scikit-learn's ``KMeans`` contract (greedy k-means++ seeding,
Lloyd iterations, ``n_init`` restarts keeping the lowest inertia, the same ``tol`` scaling)
and returns numpy. The rows live on the device once (float32); every distance computation
walks them in batches of ``batch_size`` rows, so the n x k distance matrix is never held
whole and memory stays O(n·d + batch_size·k) however many millions of rows there are.

Learned state is numpy only (``cluster_centers_``, ``labels_``, ...), so a model fitted on a
GPU pickles without device tensors and predicts on a CPU-only machine (``predict`` runs on
CUDA where it is available, else on the CPU). torch is imported lazily: this module imports
without it, and using the estimator without it raises ``MissingDependency``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClusterMixin
from sklearn.utils.validation import check_is_fitted, validate_data

from zhuge.errors import MissingDependency

__all__ = ["TORCH_INSTALL_HINT", "TorchKMeans", "require_torch"]

TORCH_INSTALL_HINT = "the torch clustering backend needs PyTorch: pip install zhuge[torch]"
# Elements of one batch's distance block (rows x centres): 2**25 float32 = 128 MiB.
_BATCH_ELEMENTS = 2**25


def require_torch() -> Any:
    """Import torch or raise ``MissingDependency`` naming the extra to install."""
    try:
        import torch
    except ImportError as exc:
        raise MissingDependency(TORCH_INSTALL_HINT) from exc
    return torch


class TorchKMeans(ClusterMixin, BaseEstimator):
    """k-means (k-means++ init, Lloyd iterations) on a torch device.

    Parameters (keyword-only):
        n_clusters: k.
        init: only ``"k-means++"`` (greedy, as scikit-learn's).
        n_init: restarts; the one of lowest inertia is kept.
        max_iter: Lloyd iterations per restart.
        tol: relative tolerance: a restart stops when the centres move (sum of squared
            shifts) by at most ``tol`` times the mean per-feature variance of ``X``.
        random_state: seed of every random choice (numpy's generator, so a seed gives the
            same seeding on any device).
        batch_size: rows per distance batch; ``None`` sizes batches to ~128 MiB.
        device: ``"cuda"``, ``"cpu"``, ... or ``None``: CUDA when available, else CPU.
    """

    def __init__(
        self,
        *,
        n_clusters: int = 8,
        init: str = "k-means++",
        n_init: int = 1,
        max_iter: int = 300,
        tol: float = 1e-4,
        random_state: int | None = None,
        batch_size: int | None = None,
        device: str | None = None,
    ) -> None:
        self.n_clusters = n_clusters
        self.init = init
        self.n_init = n_init
        self.max_iter = max_iter
        self.tol = tol
        self.random_state = random_state
        self.batch_size = batch_size
        self.device = device

    def fit(self, X: Any, y: Any = None) -> TorchKMeans:
        torch = require_torch()
        if self.init != "k-means++":
            raise ValueError(f"TorchKMeans supports init='k-means++' only, not {self.init!r}")
        X = validate_data(self, X, dtype=[np.float64, np.float32], ensure_min_samples=2)
        if not 1 <= self.n_clusters <= X.shape[0]:
            raise ValueError(f"n_clusters={self.n_clusters} must be in [1, n_samples={len(X)}]")
        device = _device(torch, self.device, strict=True)
        rng = np.random.default_rng(self.random_state)
        # Centred rows: the |x|^2 - 2x.c + |c|^2 expansion loses precision far from the origin.
        mean = X.mean(axis=0)
        rows = torch.as_tensor(np.ascontiguousarray(X - mean, dtype=np.float32), device=device)
        tol = self.tol * float(np.mean(X.var(axis=0)))
        batch = self.batch_size or max(1024, _BATCH_ELEMENTS // max(self.n_clusters, 1))
        best: tuple[float, Any, Any, int] | None = None
        with torch.no_grad():
            for _ in range(max(1, self.n_init)):
                centres = _kmeans_plusplus(torch, rows, self.n_clusters, rng, batch)
                centres, labels, inertia, n_iter = _lloyd(
                    torch, rows, centres, self.max_iter, tol, batch
                )
                if best is None or inertia < best[0]:
                    best = (inertia, centres, labels, n_iter)
        inertia, centres, labels, n_iter = best
        self.cluster_centers_ = centres.double().cpu().numpy() + mean
        self.labels_ = labels.cpu().numpy().astype(np.int32)  # scikit-learn's label dtype
        self.inertia_ = float(inertia)
        self.n_iter_ = int(n_iter)
        self.device_ = str(device)
        return self

    def predict(self, X: Any) -> np.ndarray:
        """Nearest centre of each row (on CUDA where available, else CPU)."""
        check_is_fitted(self, "cluster_centers_")
        torch = require_torch()
        X = validate_data(self, X, dtype=[np.float64, np.float32], reset=False)
        device = _device(torch, self.device, strict=False)
        mean = self.cluster_centers_.mean(axis=0)
        rows = torch.as_tensor(np.ascontiguousarray(X - mean, dtype=np.float32), device=device)
        centres = torch.as_tensor(self.cluster_centers_ - mean, dtype=torch.float32, device=device)
        batch = self.batch_size or max(1024, _BATCH_ELEMENTS // len(centres))
        with torch.no_grad():
            labels, _ = _assign(torch, rows, centres, batch)
        return labels.cpu().numpy().astype(np.int32)

    def fit_predict(self, X: Any, y: Any = None) -> np.ndarray:
        return self.fit(X).labels_

    def score(self, X: Any, y: Any = None) -> float:
        """Opposite of the inertia of ``X`` on the fitted centres (scikit-learn's sign)."""
        X = validate_data(self, X, dtype=[np.float64, np.float32], reset=False)
        nearest = self.cluster_centers_[self.predict(X)]
        return -float(((X - nearest) ** 2).sum())


# -- the numeric work: plain functions on tensors -----------------------------------------


def _device(torch: Any, name: str | None, *, strict: bool) -> Any:
    """The device to run on: ``name``, or CUDA when available; off-CUDA falls back to CPU
    unless ``strict`` (fit: the caller asked for that device; predict: any device will do)."""
    if name is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        if strict:
            raise ValueError(f"device {name!r} was asked for but torch sees no CUDA device")
        return torch.device("cpu")
    return device


def _assign(torch: Any, rows: Any, centres: Any, batch: int) -> tuple[Any, Any]:
    """(nearest-centre label, squared distance to it) of every row, ``batch`` rows at a time."""
    n = rows.shape[0]
    labels = torch.empty(n, dtype=torch.int64, device=rows.device)
    dist = torch.empty(n, dtype=rows.dtype, device=rows.device)
    centre_sq = (centres * centres).sum(dim=1)
    for start in range(0, n, batch):
        block = rows[start : start + batch]
        # |x - c|^2 = |x|^2 - 2 x.c + |c|^2; |x|^2 does not change the argmin, added after
        partial = torch.addmm(centre_sq, block, centres.T, alpha=-2.0)
        best, idx = partial.min(dim=1)
        labels[start : start + batch] = idx
        dist[start : start + batch] = (best + (block * block).sum(dim=1)).clamp_(min=0.0)
    return labels, dist


def _sq_dist_to(torch: Any, rows: Any, points: Any, batch: int) -> Any:
    """Squared distances (n x m) from every row to a few ``points`` (k-means++ candidates)."""
    out = torch.empty((rows.shape[0], points.shape[0]), dtype=rows.dtype, device=rows.device)
    point_sq = (points * points).sum(dim=1)
    for start in range(0, rows.shape[0], batch):
        block = rows[start : start + batch]
        d = torch.addmm(point_sq, block, points.T, alpha=-2.0)
        d += (block * block).sum(dim=1, keepdim=True)
        out[start : start + batch] = d.clamp_(min=0.0)
    return out


def _sample(torch: Any, weights: Any, count: int, rng: np.random.Generator) -> Any:
    """``count`` row indices drawn with probability proportional to ``weights`` (float64 cumsum
    and a binary search: torch.multinomial refuses more than 2**24 categories)."""
    cumulative = torch.cumsum(weights.double(), dim=0)
    total = float(cumulative[-1])
    if total <= 0.0:  # every row sits on a centre already: any row will do
        return torch.as_tensor(rng.integers(0, len(weights), count), device=weights.device)
    draws = torch.as_tensor(rng.random(count) * total, dtype=torch.float64, device=weights.device)
    return torch.searchsorted(cumulative, draws).clamp_(max=len(weights) - 1)


def _kmeans_plusplus(torch: Any, rows: Any, k: int, rng: np.random.Generator, batch: int) -> Any:
    """Greedy k-means++ (Arthur & Vassilvitskii; scikit-learn's variant): each new centre is
    the best, by resulting potential, of 2 + log(k) candidates drawn by squared distance."""
    n = rows.shape[0]
    trials = 2 + int(math.log(k))
    chunk = max(1, batch // trials)
    centres = torch.empty((k, rows.shape[1]), dtype=rows.dtype, device=rows.device)
    centres[0] = rows[int(rng.integers(n))]
    closest = _sq_dist_to(torch, rows, centres[:1], batch)[:, 0]
    for c in range(1, k):
        candidates = _sample(torch, closest, trials, rng)
        to_candidates = _sq_dist_to(torch, rows, rows[candidates], chunk)
        improved = torch.minimum(to_candidates, closest[:, None])
        best = int(torch.argmin(improved.double().sum(dim=0)))
        centres[c] = rows[candidates[best]]
        closest = improved[:, best].contiguous()
    return centres


def _lloyd(
    torch: Any, rows: Any, centres: Any, max_iter: int, tol: float, batch: int
) -> tuple[Any, Any, float, int]:
    """Lloyd iterations from ``centres``: (centres, labels, inertia, iterations run).

    Stops when the labels no longer change or the centres move by at most ``tol``; the labels
    returned are always those of the centres returned (a last assignment after the move).
    """
    k = centres.shape[0]
    previous = None
    n_iter = 0
    while n_iter < max_iter:
        n_iter += 1
        labels, dist = _assign(torch, rows, centres, batch)
        if previous is not None and torch.equal(labels, previous):
            return centres, labels, float(dist.double().sum()), n_iter  # strict convergence
        sums = torch.zeros((k, rows.shape[1]), dtype=torch.float64, device=rows.device)
        for start in range(0, rows.shape[0], batch):  # float64 sums, one batch at a time
            block = slice(start, start + batch)
            sums.index_add_(0, labels[block], rows[block].double())
        counts = torch.bincount(labels, minlength=k)
        new = (sums / counts.clamp(min=1)[:, None]).to(rows.dtype)
        empty = torch.nonzero(counts == 0).flatten()
        if len(empty):  # as scikit-learn: an empty cluster takes the row farthest from its centre
            far = torch.topk(dist, len(empty)).indices
            new[empty] = rows[far]
        shift = float(((new.double() - centres.double()) ** 2).sum())
        centres, previous = new, labels
        if shift <= tol:
            break
    labels, dist = _assign(torch, rows, centres, batch)  # the labels of the centres returned
    return centres, labels, float(dist.double().sum()), n_iter
