"""``auto`` end to end: :func:`zhuge.ml.cluster.selection.select` on a sample, then the winner
fitted on all rows, reported like any search.

Three outcomes, each named by ``decided_by``:

* **separated** (``dunn_owa``): some partition of the sample leaves no near neighbour in
  another cluster; the selection's finest stable one wins, unless the gap statistic finds
  touching blobs *inside* its clusters and a k-means partition nests in it
  (:func:`_convex_refinement`, ``gap_statistic``).
* **overlapping** (``stability``): nothing separates; the convex search
  (:func:`zhuge.ml.cluster.search.search_clusterings` over :data:`CONVEX_ALGORITHMS`) picks
  k by the gap statistic and the algorithm by stability and the silhouette /
  Calinski-Harabasz / Davies-Bouldin consensus.
* **shape beats convex** (``dunn_owa_ratio``): overlapping, but at the convex winner's k a
  noise-free partition of the sample keeps near neighbours together at least
  :data:`SHAPE_RATIO` times better (DuNN-OWA) than the convex winner does, and comes back
  under subsampling: thin shapes blurred by noisy extra dimensions (rings plus Gaussian
  columns), where k-means and mixtures cut straight through the shapes at the right k.
  The ratio was set between what was measured on the tune families and bundled sets
  (``docs/clustering.md``): 4.6 on rings in 4-d (the convex cut: ARI 0.01, the shape: 0.97),
  at most 1.95 on wine, breast cancer and digits, where the convex answer is the better one.

The final fit: Ward / average / spectral on at most 20,000 rows, HDBSCAN / DBSCAN on at most
200,000 (their sizes scaled with the rows so the density level found on the sample is kept),
Genie up to 2,000,000; beyond, a seeded sample is fitted and the other rows take the label of
their nearest fitted row.
"""

from __future__ import annotations

import contextlib
import math
import os
from dataclasses import replace
from typing import Any

import numpy as np
from threadpoolctl import threadpool_limits

from zhuge.ml.cluster._validation import ClusterInputError, check_k
from zhuge.ml.cluster.algorithms import NeighbourLabeler, fit_algorithm, with_labels
from zhuge.ml.cluster.backends import get_backend
from zhuge.ml.cluster.scoring import GapResult, gap_statistic, internal_scores
from zhuge.ml.cluster.search import (
    AUTO_ALGORITHMS,
    CONVEX_ALGORITHMS,
    FINAL_N_INIT,
    Candidate,
    CandidateRecord,
    MapFn,
    SearchOptions,
    SearchResult,
    search_clusterings,
)
from zhuge.ml.cluster.selection import (
    ONE_THREAD,
    SELECT_ROWS,
    STABLE_ENOUGH,
    Scored,
    Selection,
    select,
    stability_of,
)
from zhuge.ml.cluster.validity import dunn_owa

__all__ = ["FINAL_FIT_ROWS", "SHAPE_RATIO", "select_and_fit"]

# the most rows each winner is fitted on; beyond, a seeded sample of that many rows is fitted
# and the other rows take the label of their nearest fitted row
FINAL_FIT_ROWS = {
    "genie": 2_000_000,
    "hdbscan": 200_000,
    "dbscan": 200_000,
    "ward": 20_000,
    "average": 20_000,
    "spectral": 20_000,
}
MAX_MIN_SAMPLES = 100  # density winners: min_samples grows with the rows fitted, up to this
SHAPE_RATIO = 3.0  # DuNN-OWA of a shape over the convex winner's at its k (see the docstring)
REFINES = 0.95  # share of a convex cluster's rows inside one separated cluster: "nested"
REFINE_MAX_GROUPS = 10  # separated clusters searched for touching blobs inside (gap per group)
REFINE_MIN_ROWS = 30


def select_and_fit(X: np.ndarray, opts: SearchOptions, map_fn: MapFn | None) -> SearchResult:
    """``auto``: choose on a sample (see the module docstring), fit the winner on all rows.

    Up to ``opts.max_search_rows`` rows every fit runs on one BLAS / OpenMP thread: the fits
    are many and small, and spare threads spin (on a busy 2-core machine rings_2 took 6.4 s
    of CPU with the default threads, 1.7 s with one). Beyond, only the sample's work does.
    """
    small = len(X) <= opts.max_search_rows
    with threadpool_limits(ONE_THREAD) if small else contextlib.nullcontext():
        return _select_and_fit(X, opts, map_fn)


def _select_and_fit(X: np.ndarray, opts: SearchOptions, map_fn: MapFn | None) -> SearchResult:
    n = len(X)
    families = [
        a for a in (opts.algorithms if opts.auto else AUTO_ALGORITHMS) if a != "minibatch_kmeans"
    ]
    families = [a for a in AUTO_ALGORITHMS if a in families] or list(AUTO_ALGORITHMS)
    if opts.n_clusters is not None:
        check_k(opts.n_clusters, n)
    rows = min(n, SELECT_ROWS)
    if opts.n_clusters is not None and opts.n_clusters >= rows:
        raise ClusterInputError(
            f"n_clusters={opts.n_clusters} needs more than the {rows} rows auto searches on; "
            "name an algorithm (--algorithm kmeans)"
        )
    try:
        sel = select(
            X,
            families=families,
            n_clusters=opts.n_clusters,
            random_state=opts.random_state,
            map_fn=map_fn,
        )
    except ValueError as exc:
        raise ClusterInputError(str(exc)) from exc
    if not sel.separated:
        convex = _overlapping(X, opts, map_fn, families, sel)
        with threadpool_limits(ONE_THREAD):
            shape = _shape_over_convex(X, opts, sel, convex)
        if shape is None:
            return convex
        best, reason = shape
        k_note = f"the convex search's: {convex.k_selection}"
        return _fit_winner(
            X, opts, sel, best, reason, "dunn_owa_ratio", convex.candidates, k_note, convex.gap
        )
    best, reason, decided_by = sel.winner, sel.reason, sel.decided_by
    if opts.n_clusters is None and best.n_clusters < sel.k_max:
        with threadpool_limits(ONE_THREAD):
            refined = _convex_refinement(X, opts, sel)
        if refined is not None:
            best, reason, decided_by = refined
    return _fit_winner(X, opts, sel, best, reason, decided_by, None)


def _fit_winner(
    X: np.ndarray,
    opts: SearchOptions,
    sel: Selection,
    best: Scored,
    reason: str,
    decided_by: str,
    listed: list[CandidateRecord] | None,
    k_note: str | None = None,
    gap: GapResult | None = None,
) -> SearchResult:
    """Fit the chosen partition's algorithm on all rows (or a sample and extend)."""
    n = len(X)
    notes: list[str] = []
    algorithm, params = best.algorithm, dict(best.params)
    params.pop("assign_labels", None)
    limit = FINAL_FIT_ROWS.get(algorithm, n)
    if algorithm == "kmeans" and n > 200_000:
        algorithm = "minibatch_kmeans"
        notes.append("kmeans replaced by minibatch_kmeans for more than 200000 rows")
    fit_rows = min(n, limit)
    if algorithm in ("hdbscan", "dbscan") and fit_rows > len(sel.sample_rows):
        # the same density level on more rows: neighbour counts grow with the rows
        ratio = fit_rows / len(sel.sample_rows)
        params["min_samples"] = int(min(MAX_MIN_SAMPLES, round(params["min_samples"] * ratio)))
        if algorithm == "hdbscan":
            params["min_cluster_size"] = round(params["min_cluster_size"] * ratio)
        notes.append(
            f"{algorithm}'s sizes were found on {len(sel.sample_rows)} rows and scaled to "
            f"the {fit_rows} fitted: {params}"
        )
    backend = get_backend(opts.backend)
    if fit_rows < n:
        rng = np.random.default_rng(opts.random_state)
        fit_idx = np.sort(rng.choice(n, fit_rows, replace=False))
        fitted = fit_algorithm(
            algorithm, X[fit_idx], params, random_state=opts.random_state, backend=backend
        )
        labels = np.empty(n, dtype=np.int64)
        labels[fit_idx] = fitted.labels
        rest = np.setdiff1d(np.arange(n), fit_idx)
        extension = fitted.extension or NeighbourLabeler.fit(
            X[fit_idx], fitted.labels, min_samples=None
        )
        labels[rest] = extension.predict(X[rest])
        winner = with_labels(fitted, X[fit_idx], fitted.labels)
        winner = replace(winner, labels=labels)
        notes.append(
            f"{algorithm} was fitted on {fit_rows} of {n} rows; the other rows took the label "
            "of their nearest fitted row"
        )
    else:
        params_final = dict(params)
        if algorithm in ("kmeans", "minibatch_kmeans") and "n_init" not in opts.params:
            params_final["n_init"] = FINAL_N_INIT
        winner = fit_algorithm(
            algorithm, X, params_final, random_state=opts.random_state, backend=backend
        )
    rows = len(sel.sample_rows)
    if listed is None:
        records = [_record(c, rows) for c in sel.ranked]
        if best is not sel.winner:
            records.insert(0, _record(best, rows))
    else:  # the convex search's candidates and the selection's, the winner first
        top = _record(best, rows)
        records = [top, *(r for r in listed if r.candidate != top.candidate)]
    if k_note is None:
        k_note = (
            f"k={opts.n_clusters} given by the caller"
            if opts.n_clusters is not None
            else f"chosen with the algorithm among 2..{sel.k_max} by the validity indices"
        )
    return SearchResult(
        winner,
        records[0],
        records,
        winner.n_clusters,
        k_note,
        gap,
        [rows],
        reason,
        notes + list(winner.notes),
        decided_by,
    )


def _record(scored: Any, rows: int) -> CandidateRecord:
    params = {k: v for k, v in scored.params.items() if k != "assign_labels"}
    return CandidateRecord(
        Candidate(scored.algorithm, params),
        rows,
        scored.n_clusters,
        dict(scored.scores),
        scored.valid,
        scored.note,
        0,
        "",
        scored.process or os.getpid(),
    )


def _overlapping(
    X: np.ndarray, opts: SearchOptions, map_fn: MapFn | None, families: list[str], sel: Any
) -> SearchResult:
    """No partition separates the near-neighbour graph: the groups touch, and the density and
    separation indices have nothing to hold on to. The convex evidence decides: the number
    of clusters by the gap statistic, the algorithm by stability and the silhouette /
    Calinski-Harabasz / Davies-Bouldin consensus (the search for named algorithms)."""
    listed = [a for a in CONVEX_ALGORITHMS if a in families] or ["kmeans"]
    if len(X) > 200_000 and "kmeans" in listed:
        listed = ["minibatch_kmeans" if a == "kmeans" else a for a in listed]
    result = search_clusterings(X, replace(opts, algorithms=listed, auto=False), map_fn=map_fn)
    why = (
        f"Auto: none of {len(sel.ranked)} partitions of a {len(sel.sample_rows)}-row sample "
        "separates its clusters cleanly (DuNN-OWA finite for all: the groups touch), so the "
        "convex evidence decided. "
    )
    seen = [_record(c, len(sel.sample_rows)) for c in sel.ranked]  # the evidence, listed too
    return replace(
        result,
        candidates=[*result.candidates, *seen],
        reason=why + result.reason,
        decided_by="stability",
    )


def _shape_over_convex(
    X: np.ndarray, opts: SearchOptions, sel: Selection, convex: SearchResult
) -> tuple[Scored, str] | None:
    """Overlapping data whose groups are shapes, not blobs: at the convex winner's k, the
    noise-free partition with the best DuNN-OWA wins if it keeps near neighbours together
    :data:`SHAPE_RATIO` times better than the convex winner (on the same sample) and is
    stable under subsampling (>= ``STABLE_ENOUGH``). Noise-free: a density method can raise
    its DuNN-OWA by calling the rows between two groups noise."""
    S = X[sel.sample_rows]
    k = convex.winner.n_clusters
    convex_dunn = dunn_owa(S, convex.winner.labels[sel.sample_rows])
    if not np.isfinite(convex_dunn) or convex_dunn <= 0:
        return None
    shapes = [
        c
        for c in sel.ranked
        if c.valid and c.n_clusters == k and c.scores.get("noise_fraction", 0.0) == 0.0
    ]
    shapes = [c for c in shapes if c.scores.get("dunn_owa", math.nan) >= SHAPE_RATIO * convex_dunn]
    if not shapes:
        return None
    best = max(shapes, key=lambda c: c.scores["dunn_owa"])
    stable = stability_of(S, best, opts.random_state)
    if stable < STABLE_ENOUGH:
        return None
    best = replace(best, scores={**best.scores, "stability": stable})
    ratio = best.scores["dunn_owa"] / convex_dunn
    label = _record(best, len(S)).candidate.label()
    reason = (
        f"Auto: none of {len(sel.ranked)} partitions of a {len(S)}-row sample separates its "
        f"clusters cleanly (DuNN-OWA finite for all), and the convex search chose "
        f"{convex.winner_record.candidate.label()} with k={k} (DuNN-OWA {convex_dunn:.3f} on the "
        f"sample). At that k, {label} keeps near neighbours together {ratio:.1f} times better "
        f"(DuNN-OWA {best.scores['dunn_owa']:.3f}, at least {SHAPE_RATIO} needed) and is stable "
        f"under subsampling ({stable:.2f}): the groups are shapes the convex cut goes through, "
        "so it won."
    )
    return best, reason


def _convex_refinement(X: np.ndarray, opts: SearchOptions, sel: Any) -> Any:
    """Blobs that touch inside a separated group (two touching species beside a third apart):
    the gap statistic is asked, inside each separated cluster, whether it holds more than
    one group (k=1 allowed); when it does, and k-means with the total k nests inside the
    separated winner, that finer partition wins."""
    from sklearn.cluster import KMeans

    S = X[sel.sample_rows]
    best = sel.winner
    if best.n_clusters > REFINE_MAX_GROUPS or (best.labels < 0).any():
        return None  # many groups: costly; noise: k-means would swallow it into clusters
    found, explained = 0, []
    for c in range(int(best.labels.max()) + 1):
        part = S[best.labels == c]
        if len(part) < REFINE_MIN_ROWS:
            found += 1
            continue
        gap = gap_statistic(
            part, range(1, 6), n_references=opts.gap_references, random_state=opts.random_state
        )
        sub = gap.chosen_k or 1
        found += sub
        if sub > 1:
            explained.append(f"cluster {c}: {gap.explain()}")
    k = found
    if k <= best.n_clusters:
        return None
    labels = KMeans(k, n_init=4, random_state=opts.random_state).fit_predict(S)
    inside = best.labels >= 0
    nested = sum(np.bincount(best.labels[inside & (labels == c)]).max(initial=0) for c in range(k))
    share = nested / max(1, inside.sum())
    if share < REFINES:
        return None
    scores = internal_scores(S, labels, random_state=opts.random_state)
    refined = Scored("kmeans", {"n_clusters": int(k)}, int(k), scores, True, "", labels)
    reason = (
        f"{sel.reason} Inside its clusters the gap statistic (k=1 allowed) finds touching "
        f"groups ({'; '.join(explained)}); the k-means partition with k={k} nests inside the "
        f"separated one ({share:.0%} of rows), so the finer one won."
    )
    return refined, reason, "gap_statistic"
