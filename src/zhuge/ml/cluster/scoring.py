"""Internal (label-free) criteria for judging a clustering.

* ``internal_scores``: silhouette (on a sample for large data), Calinski–Harabasz,
  Davies–Bouldin, and BIC for Gaussian mixtures.
* ``gap_statistic``: Tibshirani, Walther & Hastie (2001) with a PCA-aligned uniform
  reference and the 1-standard-error rule; used to choose the number of clusters.
* ``stability``: agreement (adjusted Rand index) between fits on overlapping random
  subsamples (Ben-Hur et al. 2002; Lange et al. 2004); used to choose between algorithms.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.cluster import KMeans
from sklearn.metrics import (
    adjusted_rand_score,
    calinski_harabasz_score,
    davies_bouldin_score,
    silhouette_score,
)

from zhuge.ml.cluster.algorithms import fit_algorithm

__all__ = ["GapResult", "gap_statistic", "internal_scores", "stability"]

SILHOUETTE_SAMPLE = 5_000  # rows; silhouette is O(n^2) in time


def internal_scores(
    X: np.ndarray, labels: np.ndarray, *, model: Any = None, random_state: int = 0
) -> dict[str, float]:
    """Silhouette, Calinski–Harabasz, Davies–Bouldin on the non-noise rows (+ BIC for GMM).

    Missing entries mean the criterion is undefined (fewer than two clusters).
    """
    keep = labels >= 0
    Xk, lk = X[keep], labels[keep]
    n_clusters = len(np.unique(lk))
    scores: dict[str, float] = {"noise_fraction": float(1.0 - keep.mean())}
    if 2 <= n_clusters < len(lk):
        sample = min(SILHOUETTE_SAMPLE, len(lk))
        scores["silhouette"] = float(
            silhouette_score(
                Xk, lk, sample_size=sample if sample < len(lk) else None, random_state=random_state
            )
        )
        scores["calinski_harabasz"] = float(calinski_harabasz_score(Xk, lk))
        scores["davies_bouldin"] = float(davies_bouldin_score(Xk, lk))
    if model is not None and hasattr(model, "bic"):
        scores["bic"] = float(model.bic(X))
    return scores


@dataclass(frozen=True)
class GapResult:
    """Gap curve over k and the k the 1-standard-error rule picks (None: still rising)."""

    ks: tuple[int, ...]
    gap: tuple[float, ...]
    s: tuple[float, ...]
    chosen_k: int | None

    def explain(self) -> str:
        if self.chosen_k is None:
            return (
                f"gap statistic kept rising up to k={self.ks[-1]} (no k satisfied "
                "gap(k) >= gap(k+1) - s(k+1))"
            )
        i = self.ks.index(self.chosen_k)
        return (
            f"gap statistic chose k={self.chosen_k}: the smallest k with gap(k) >= gap(k+1) - s(k+1) "
            f"({self.gap[i]:.3f} >= {self.gap[i + 1]:.3f} - {self.s[i + 1]:.3f})"
        )


def _log_inertia(X: np.ndarray, k: int, seed: int, n_init: int) -> float:
    model = KMeans(n_clusters=k, n_init=n_init, random_state=seed).fit(X)
    return float(np.log(max(model.inertia_, 1e-12)))


def gap_statistic(
    X: np.ndarray,
    ks: Sequence[int],
    *,
    n_references: int = 8,
    random_state: int = 0,
) -> GapResult:
    """Gap(k) = E*[log W_k] - log W_k with uniform references in the data's principal box.

    ``ks`` must be increasing and consecutive; one extra k is evaluated so the rule can be
    applied to the last one.
    """
    rng = np.random.default_rng(random_state)
    ks = list(ks)
    eval_ks = [*ks, ks[-1] + 1] if ks[-1] + 1 <= len(X) else ks
    centred = X - X.mean(axis=0)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    rotated = centred @ vt.T
    low, high = rotated.min(axis=0), rotated.max(axis=0)
    refs = [rng.uniform(low, high, size=rotated.shape) for _ in range(n_references)]
    gaps, sds = [], []
    for k in eval_ks:
        observed = _log_inertia(X, k, random_state, n_init=4)
        ref = np.array([_log_inertia(r, k, random_state, n_init=2) for r in refs])
        gaps.append(float(ref.mean() - observed))
        sds.append(float(ref.std() * np.sqrt(1.0 + 1.0 / n_references)))
    chosen = next(
        (k for i, k in enumerate(eval_ks[:-1]) if gaps[i] >= gaps[i + 1] - sds[i + 1]), None
    )
    return GapResult(tuple(eval_ks), tuple(gaps), tuple(sds), chosen)


def stability(
    X: np.ndarray,
    algorithm: str,
    params: dict[str, Any],
    *,
    n_pairs: int = 3,
    fraction: float = 0.8,
    random_state: int = 0,
    fit: Callable[..., Any] = fit_algorithm,
) -> float:
    """Mean ARI between two fits on overlapping ``fraction`` subsamples, on their overlap.

    Noise (-1) is treated as one more label, so an unstable noise set lowers the score.
    """
    rng = np.random.default_rng(random_state)
    n = len(X)
    m = max(2, round(fraction * n))
    agreements = []
    for pair in range(n_pairs):
        a = np.sort(rng.choice(n, m, replace=False))
        b = np.sort(rng.choice(n, m, replace=False))
        common, ia, ib = np.intersect1d(a, b, assume_unique=True, return_indices=True)
        if len(common) < 2:
            continue
        la = fit(algorithm, X[a], params, random_state=random_state + 2 * pair).labels
        lb = fit(algorithm, X[b], params, random_state=random_state + 2 * pair + 1).labels
        agreements.append(adjusted_rand_score(la[ia], lb[ib]))
    return float(np.mean(agreements)) if agreements else 0.0
