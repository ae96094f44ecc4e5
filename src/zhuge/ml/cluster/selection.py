"""``auto``: choose algorithm, parameters and k by evidence that does not assume convex clusters.

1. **Candidates**, fitted on one seeded sample of at most ``SELECT_ROWS`` rows: Genie at gini
   thresholds 0.1/0.3/0.5/0.7 and every k up to ``k_max`` (one fit each: Genie returns all
   coarser partitions), Ward and average linkage cut at every k, k-means and spectral
   clustering (one k-NN graph embedding, cut at every k) and full Gaussian mixtures at every k,
   HDBSCAN over min cluster size x min samples, DBSCAN with eps at the knee of the k-distance
   curve. ``k_max = min(50, max(10, round(sqrt(2 n))))`` on the sample's n, so sets of 20-40
   clusters are in reach.
2. **Indices** per partition, each computed on the same sample: DBCV (density-based,
   :func:`~zhuge.ml.cluster.validity.dbcv`), DuNN-OWA (a generalised Dunn index on near
   neighbours), silhouette (compactness; convex). A partition with fewer than 2 clusters,
   more than half the rows as noise, or a cluster under ``MIN_SHARE`` of the rows (an outlier
   peeled off as a "cluster") is invalid.
3. **The combining rule** (derived on the tune families, see ``docs/clustering.md``). The
   data characteristic that says which index to trust is whether some valid partition
   *separates the near-neighbour graph*: DuNN-OWA infinite, no row having one of its
   nearest neighbours in another cluster.

   * **Separated** (rings, spirals, separated blobs, noise around dense groups): the winner
     is the *finest* such partition (most clusters; a spurious split of one connected group
     always puts some neighbours apart, so it cannot be finer), ties broken by less noise,
     then higher DBCV. Touching blobs may still hide inside a separated group; the search
     then asks the gap statistic inside each group (k=1 allowed) and keeps a finer k-means
     partition only if it nests inside the separated one
     (:func:`zhuge.ml.cluster.auto._convex_refinement`).
   * **Overlapping** (no partition separates; iris-like touching groups): density and
     separation indices have nothing to hold on to; the convex evidence decides: the gap
     statistic's k and the stability + silhouette / Calinski-Harabasz / Davies-Bouldin
     search over k-means, mixtures, spectral, DBSCAN and HDBSCAN; unless, at that k, a
     noise-free partition here keeps near neighbours together several times better than
     the convex winner (:data:`zhuge.ml.cluster.auto.SHAPE_RATIO`).

   Each valid partition also gets its rank on DBCV, DuNN-OWA and silhouette and the mean of
   those ranks (:func:`combine`): the order in which the report lists the rest.
4. **Stability** of the best ``STABLE_TOP`` in that order: the adjusted Rand agreement of
   refits on two overlapping 80 % subsamples. A winner less stable than a contender by more
   than ``STABILITY_MARGIN`` gives way to it (and the report says so).

The result is a plain :class:`Selection`; :func:`zhuge.ml.cluster.auto.select_and_fit`
fits it on all rows and reports it like any search.
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from scipy.spatial.distance import cdist
from sklearn.metrics import adjusted_rand_score, silhouette_score
from threadpoolctl import threadpool_limits

from zhuge.ml.cluster.validity import DUNN_NEIGHBOURS, dbcv, dunn_owa

__all__ = [
    "AUTO_FAMILIES",
    "INDICES",
    "SELECT_ROWS",
    "Scored",
    "Selection",
    "combine",
    "k_max_for",
    "select",
    "stability_of",
]

SELECT_ROWS = 800  # rows of the sample every candidate is fitted and scored on
SHORTLIST = 5  # per family, partitions that get the costly indices besides the clean ones
MIN_SHARE = 0.01  # a cluster under this share of the (non-noise) rows makes a partition invalid
MIN_ROWS = DUNN_NEIGHBOURS + 1  # ... or under these rows: its near neighbours must fit inside
MAX_NOISE = 0.5
STABLE_TOP = 3
STABILITY_MARGIN = 0.15
STABLE_ENOUGH = 0.8  # separated regime: the finest clean partition this stable wins
STABLE_TRIES = 6  # ... trying at most this many numbers of clusters, finest first
INDICES = ("dbcv", "dunn_owa", "silhouette")  # all: higher is better
AUTO_FAMILIES = ("genie", "hdbscan", "ward", "average", "kmeans", "gmm", "spectral", "dbscan")
# BLAS / OpenMP threads per candidate fit: the fits are many and small (<= SELECT_ROWS rows),
# so threads cost more than they save; on a busy 2-core machine the CI battery took 80 s of
# CPU with the default threads and 22 s with one (spin-waiting threads). map_fn spreads
# the families over processes instead.
ONE_THREAD = 1
GINI = (0.3, 0.1, 0.5, 0.7)  # 0.3 first: the one kept when two give the same partition

MapFn = Callable[[Callable[[Any], Any], Iterable[Any]], Iterable[Any]]


def k_max_for(n: int) -> int:
    return int(min(50, max(10, round(math.sqrt(2 * n))), n - 1))


@dataclass(frozen=True)
class Scored:
    algorithm: str
    params: dict[str, Any]
    n_clusters: int
    scores: dict[str, float]
    valid: bool
    note: str = ""
    labels: np.ndarray | None = None
    process: int = 0  # id of the process that fitted and scored it (a Dask worker in a job)


@dataclass(frozen=True)
class Selection:
    winner: Scored
    ranked: list[Scored]  # valid, best first; then the invalid ones
    decided_by: str
    reason: str
    sample_rows: np.ndarray  # indices into X of the sample
    k_max: int
    separated: bool  # some partition's clusters share no near neighbours (DuNN-OWA infinite)


# -- candidate partitions (one task per family, so map_fn can spread them) ---------------


def _genie(S: np.ndarray, k_max: int, seed: int) -> list[tuple[dict[str, Any], np.ndarray]]:
    from genieclust import Genie

    out = []
    for g in GINI:
        model = Genie(n_clusters=k_max, gini_threshold=g, coarser=True).fit(S)
        for k in range(2, k_max + 1):
            out.append(({"n_clusters": k, "gini_threshold": g}, model.labels_matrix_[k - 1]))
    return out


def _linkage(method: str) -> Callable[..., list[tuple[dict[str, Any], np.ndarray]]]:
    def cut(S: np.ndarray, k_max: int, seed: int) -> list[tuple[dict[str, Any], np.ndarray]]:
        from scipy.cluster.hierarchy import fcluster, linkage

        Z = linkage(S, method)
        return [({"n_clusters": k}, fcluster(Z, k, "maxclust") - 1) for k in range(2, k_max + 1)]

    return cut


def _kmeans(S: np.ndarray, k_max: int, seed: int) -> list[tuple[dict[str, Any], np.ndarray]]:
    from sklearn.cluster import KMeans

    return [
        ({"n_clusters": k}, KMeans(k, n_init=2, random_state=seed).fit_predict(S))
        for k in range(2, k_max + 1)
    ]


def _gmm(S: np.ndarray, k_max: int, seed: int) -> list[tuple[dict[str, Any], np.ndarray]]:
    from sklearn.mixture import GaussianMixture

    out = []
    for k in range(2, min(k_max, 15) + 1):  # full covariances: k*d*d parameters, few rows each
        model = GaussianMixture(k, covariance_type="full", reg_covar=1e-5, random_state=seed)
        try:
            out.append(({"n_clusters": k, "covariance_type": "full"}, model.fit(S).predict(S)))
        except (ValueError, np.linalg.LinAlgError):
            continue
    return out


def _spectral(S: np.ndarray, k_max: int, seed: int) -> list[tuple[dict[str, Any], np.ndarray]]:
    """SpectralClustering's own steps, the embedding computed once for every k."""
    from sklearn.cluster import KMeans
    from sklearn.manifold import spectral_embedding
    from sklearn.neighbors import kneighbors_graph

    graph = kneighbors_graph(S, n_neighbors=min(10, len(S) - 1), include_self=True)
    affinity = 0.5 * (graph + graph.T)
    k_top = min(k_max, 20)
    maps = spectral_embedding(affinity, n_components=k_top, random_state=seed, drop_first=False)
    out = []
    for k in range(2, k_top + 1):
        labels = KMeans(k, n_init=2, random_state=seed).fit_predict(maps[:, :k])
        out.append(({"n_clusters": k, "n_neighbors": 10, "assign_labels": "kmeans"}, labels))
    return out


def _hdbscan(S: np.ndarray, k_max: int, seed: int) -> list[tuple[dict[str, Any], np.ndarray]]:
    from sklearn.cluster import HDBSCAN

    n = len(S)
    out = []
    for size in sorted({max(5, n // 100), max(10, n // 50), max(15, n // 25)}):
        for samples in sorted({5, size}):
            model = HDBSCAN(min_cluster_size=size, min_samples=samples, copy=True)
            out.append(({"min_cluster_size": size, "min_samples": samples}, model.fit_predict(S)))
    return out


def knee_eps(S: np.ndarray, min_samples: int) -> float:
    """eps at the knee of the sorted k-distance curve: the point farthest below the chord
    from its first to its last value (Kneedle, on the curve scaled to the unit square)."""
    from sklearn.neighbors import NearestNeighbors

    m = int(min(min_samples, len(S) - 1))
    dist, _ = NearestNeighbors(n_neighbors=m + 1).fit(S).kneighbors(S)
    curve = np.sort(dist[:, -1])
    x = np.linspace(0.0, 1.0, len(curve))
    span = curve[-1] - curve[0]
    if span <= 0:
        return float(curve[-1]) or 1e-6
    y = (curve - curve[0]) / span
    return float(curve[int(np.argmax(x - y))])


def _dbscan(S: np.ndarray, k_max: int, seed: int) -> list[tuple[dict[str, Any], np.ndarray]]:
    from sklearn.cluster import DBSCAN

    out = []
    for m in sorted({5, min(2 * S.shape[1], 50)}):
        eps = knee_eps(S, m)
        if eps > 0:
            params = {"eps": round(eps, 6), "min_samples": m}
            out.append((params, DBSCAN(eps=eps, min_samples=m).fit_predict(S)))
    return out


_FAMILIES: dict[str, Callable[..., list[tuple[dict[str, Any], np.ndarray]]]] = {
    "genie": _genie,
    "hdbscan": _hdbscan,
    "ward": _linkage("ward"),
    "average": _linkage("average"),
    "kmeans": _kmeans,
    "gmm": _gmm,
    "spectral": _spectral,
    "dbscan": _dbscan,
}


def _score(S: np.ndarray, D: np.ndarray, algorithm: str, params: dict, labels: np.ndarray):
    labels = np.asarray(labels, dtype=np.int64)
    keep = labels >= 0
    sizes = np.bincount(labels[keep]) if keep.any() else np.zeros(0, int)
    sizes = sizes[sizes > 0]
    k = len(sizes)
    noise = float(1.0 - keep.mean())
    scores: dict[str, float] = {"noise_fraction": noise}
    if k < 2:
        return Scored(algorithm, params, k, scores, False, "fewer than 2 clusters", labels)
    if noise > MAX_NOISE:
        return Scored(algorithm, params, k, scores, False, f"{noise:.0%} noise", labels)
    if sizes.min() < max(MIN_ROWS, MIN_SHARE * keep.sum()):
        note = f"a cluster of {sizes.min()} rows (under {MIN_ROWS} or {MIN_SHARE:.0%})"
        return Scored(algorithm, params, k, scores, False, note, labels)
    scores["dunn_owa"] = dunn_owa(S, labels)
    return Scored(algorithm, params, k, scores, True, "", labels)


def _score_more(S: np.ndarray, D: np.ndarray, c: Scored) -> Scored:
    """DBCV and silhouette (the costly indices: O(n^2) each) added to a shortlisted one."""
    keep = c.labels >= 0
    scores = dict(c.scores)
    scores["dbcv"] = dbcv(S, c.labels, distances=D)
    Dk = D[np.ix_(keep, keep)]
    scores["silhouette"] = float(silhouette_score(Dk, c.labels[keep], metric="precomputed"))
    return replace(c, scores=scores)


def evaluate_family(task: tuple[str, np.ndarray, int, int]) -> tuple[list[Scored], int]:
    """Fit one family's partitions on the sample and score them (a plain function: map_fn
    may ship it to a worker). Returns them with the id of the process that did it."""
    family, S, k_max, seed = task
    with warnings.catch_warnings(), threadpool_limits(ONE_THREAD):
        warnings.simplefilter("ignore")  # convergence chatter of the many small fits
        try:
            parts = _FAMILIES[family](S, k_max, seed)
        except (ValueError, np.linalg.LinAlgError) as exc:
            return [Scored(family, {}, 0, {}, False, f"failed: {exc}")], os.getpid()
        D = cdist(S, S)
        seen: set[bytes] = set()
        out = []
        for params, labels in parts:
            key = np.asarray(labels, dtype=np.int64).tobytes()
            if key in seen:  # e.g. Genie at two gini thresholds: the same partition
                continue
            seen.add(key)
            out.append(_score(S, D, family, params, labels))
        # DBCV and silhouette for the shortlist: every clean partition, and the family's
        # SHORTLIST best by DuNN-OWA; the rest keep DuNN-OWA only (and rank after)
        valid = [c for c in out if c.valid]
        by_dunn = sorted(valid, key=lambda c: -np.nan_to_num(c.scores["dunn_owa"], nan=-1e300))
        short = {id(c) for c in by_dunn[:SHORTLIST]}
        short |= {id(c) for c in valid if c.scores["dunn_owa"] == math.inf}
        out = [_score_more(S, D, c) if id(c) in short else c for c in out]
    return out, os.getpid()


# -- combining the indices -----------------------------------------------------------------


def _ranks(values: list[float]) -> np.ndarray:
    """1 = best (highest, +inf included); NaN ranks last; ties share the better rank."""
    arr = np.array([-np.inf if np.isnan(v) else v for v in values], dtype=float)
    order = np.argsort(-arr, kind="stable")
    ranks = np.empty(len(arr))
    position = 0
    for i, idx in enumerate(order):
        if i == 0 or arr[idx] != arr[order[i - 1]]:
            position = i + 1
        ranks[idx] = position
    return ranks


def combine(candidates: list[Scored]) -> tuple[list[Scored], dict[int, dict[str, float]]]:
    """Valid candidates best first by the mean rank of the :data:`INDICES` (ties: higher
    DBCV); returns them and, per position in the input, each index's rank and the mean."""
    valid = [i for i, c in enumerate(candidates) if c.valid]
    table: dict[int, dict[str, float]] = {}
    if not valid:
        return [], table
    ranks = {
        name: _ranks([candidates[i].scores.get(name, math.nan) for i in valid]) for name in INDICES
    }
    for j, i in enumerate(valid):
        row = {f"rank_{name}": float(ranks[name][j]) for name in INDICES}
        row["mean_rank"] = float(np.mean([ranks[name][j] for name in INDICES]))
        table[i] = row
    dbcv_of = {i: candidates[i].scores.get("dbcv", -math.inf) for i in valid}
    order = sorted(valid, key=lambda i: (table[i]["mean_rank"], -np.nan_to_num(dbcv_of[i], nan=-1)))
    return [candidates[i] for i in order], table


def stability_of(S: np.ndarray, cand: Scored, seed: int, pairs: int = 2) -> float:
    """Adjusted Rand agreement of ``cand``'s algorithm refitted on two overlapping 80 %
    subsamples of ``S`` (mean over ``pairs``), on the rows both hold."""
    from zhuge.ml.cluster.algorithms import fit_algorithm
    from zhuge.ml.cluster.backends import get_backend

    def refit_labels(algorithm: str, params: dict, rows: np.ndarray, seed: int) -> np.ndarray:
        fitted = fit_algorithm(algorithm, rows, params, random_state=seed, backend=backend)
        return fitted.labels

    backend = get_backend("sklearn")
    rng = np.random.default_rng(seed)
    n = len(S)
    m = max(2, round(0.8 * n))
    agreements = []
    with threadpool_limits(ONE_THREAD):
        for pair in range(pairs):
            a = np.sort(rng.choice(n, m, replace=False))
            b = np.sort(rng.choice(n, m, replace=False))
            _, ia, ib = np.intersect1d(a, b, assume_unique=True, return_indices=True)
            la = refit_labels(cand.algorithm, cand.params, S[a], seed + 2 * pair)
            lb = refit_labels(cand.algorithm, cand.params, S[b], seed + 2 * pair + 1)
            agreements.append(adjusted_rand_score(la[ia], lb[ib]))
    return float(np.mean(agreements))


def select(
    X: np.ndarray,
    *,
    families: Iterable[str] = AUTO_FAMILIES,
    n_clusters: int | None = None,
    random_state: int = 0,
    sample_rows: int = SELECT_ROWS,
    map_fn: MapFn | None = None,
) -> Selection:
    """Choose among every family's partitions of a sample of ``X``; see the module docstring.
    ``n_clusters`` given: only partitions with that many clusters compete."""
    rng = np.random.default_rng(random_state)
    n = len(X)
    rows = np.sort(rng.choice(n, sample_rows, replace=False)) if n > sample_rows else np.arange(n)
    S = X[rows]
    k_max = k_max_for(len(S))
    if n_clusters is not None:
        k_max = max(2, min(n_clusters, len(S) - 1))
    tasks = [(f, S, k_max, random_state) for f in families]
    scored: list[Scored] = []
    for part, pid in (map_fn or map)(evaluate_family, tasks):
        scored.extend(replace(c, process=pid) for c in part)
    if n_clusters is not None:
        scored = [
            c
            if c.n_clusters == n_clusters or not c.valid
            else replace(
                c, valid=False, note=f"found {c.n_clusters} clusters, not the k={n_clusters} given"
            )
            for c in scored
        ]
    ranked, table = combine(scored)
    if not ranked:
        raise ValueError(
            "no candidate produced at least 2 clusters with under half the rows as noise; "
            "the data may have no cluster structure at this scale"
        )
    position = {id(c): i for i, c in enumerate(scored)}
    clean = [c for c in ranked if c.scores.get("dunn_owa") == math.inf]
    if clean:  # separated regime: the finest partition no near neighbour crosses
        order = sorted(
            clean,
            key=lambda c: (
                -c.n_clusters,
                round(c.scores["noise_fraction"], 2),  # noise only where it is needed
                -_finite(c.scores.get("dbcv")),
            ),
        )
    else:
        order = ranked
    stab: dict[int, float] = {}
    note = ""
    if clean:
        # finest first, but a split must come back on subsamples: a thin ring has random
        # gaps its near neighbours do not cross, and those move from one sample to the next
        per_k = list({c.n_clusters: c for c in reversed(order)}.values())[::-1]
        winner = None
        for c in per_k[:STABLE_TRIES]:
            stab[id(c)] = stability_of(S, c, random_state)
            if stab[id(c)] >= STABLE_ENOUGH:
                winner = c
                break
        if winner is None:
            winner = max((c for c in per_k if id(c) in stab), key=lambda c: stab[id(c)])
            note = f" No finer clean partition reached stability {STABLE_ENOUGH}."
        skipped = [c for c in per_k if id(c) in stab and c is not winner]
        if skipped and not note:
            note = (
                f" Finer clean partitions were unstable under subsampling "
                f"({', '.join(f'k={c.n_clusters}: {stab[id(c)]:.2f}' for c in skipped)})."
            )
    else:
        top = order[:STABLE_TOP]
        stab = {id(c): stability_of(S, c, random_state) for c in top}
        winner = top[0]
        steadiest = max(top, key=lambda c: stab[id(c)])
        if stab[id(steadiest)] > stab[id(winner)] + STABILITY_MARGIN:
            note = (
                f" It replaced {_label(winner)} (stability {stab[id(winner)]:.2f}), which was "
                f"less stable by more than {STABILITY_MARGIN}."
            )
            winner = steadiest
    out = []
    for c in scored:
        extra = dict(table.get(position[id(c)], {}))
        if id(c) in stab:
            extra["stability"] = stab[id(c)]
        out.append(replace(c, scores={**c.scores, **extra}))
    by_position = {position[id(c)]: o for c, o in zip(scored, out, strict=True)}
    ordered = [by_position[position[id(c)]] for c in order]
    ordered += [by_position[position[id(c)]] for c in ranked if c not in order]
    winner_out = by_position[position[id(winner)]]
    ordered.remove(winner_out)
    ordered.insert(0, winner_out)
    invalid = [o for o in out if not o.valid]
    s = winner_out.scores
    head = (
        f"{len(scored)} partitions of a {len(S)}-row sample ({', '.join(families)}; k up to "
        f"{k_max}) were scored by DuNN-OWA, DBCV and silhouette."
    )
    if clean:
        decided_by = "dunn_owa"
        reason = (
            f"{head} {len(clean)} separate their clusters cleanly (DuNN-OWA infinite: no row "
            f"has one of its nearest neighbours in another cluster); the finest of them "
            f"that is stable under subsampling (>= {STABLE_ENOUGH}), ties broken by less "
            f"noise then DBCV, is {_label(winner_out)} with {winner_out.n_clusters} "
            f"clusters (DBCV {s.get('dbcv', math.nan):.3f}, stability "
            f"{s.get('stability', math.nan):.2f}).{note}"
        )
    else:
        decided_by = "mean_rank"
        reason = (
            f"{head} None separates its clusters cleanly; by the mean rank of the three "
            f"indices {_label(winner_out)} is first (mean rank {s['mean_rank']:.1f}, DBCV "
            f"{s.get('dbcv', math.nan):.3f}, silhouette {s.get('silhouette', math.nan):.3f}, "
            f"stability {s.get('stability', math.nan):.2f}).{note}"
        )
    return Selection(winner_out, ordered + invalid, decided_by, reason, rows, k_max, bool(clean))


def _finite(value: float | None) -> float:
    return -1.0 if value is None or not np.isfinite(value) else float(value)


def _label(c: Scored) -> str:
    inner = ", ".join(f"{k}={v}" for k, v in sorted(c.params.items()))
    return f"{c.algorithm}({inner})"
