"""Automatic choice of clustering algorithm and parameters, with reasons.

``auto`` runs :mod:`zhuge.ml.cluster.auto` (many candidates on a sample, the near-neighbour
separation rule, the winner fitted on all rows); where no candidate separates its clusters
cleanly, and for named algorithms, the search below decides.

How the winner is chosen among named algorithms (label-free):

1. **How many clusters.** Silhouette, Calinski–Harabasz and Davies–Bouldin all favour few,
   well-separated groups (silhouette picks k=2 on iris). The number of clusters ``k*`` is
   instead chosen by the *gap statistic* with the 1-standard-error rule over ``k_range``
   (KMeans on a sample, uniform reference in the data's principal box). Where the gap is still
   rising at the top of the range the rule gives no answer; then ``k*`` is the k of the best
   silhouette among the KMeans fits, and the result says so. ``n_clusters`` given by the
   caller skips this step.
2. **Which algorithm.** Candidates: KMeans (k-means++ / random init), GaussianMixture (four
   covariance types), SpectralClustering (k-NN graph), all at ``k*``; DBSCAN (eps from k-NN
   distance quantiles x min_samples) and HDBSCAN (min_cluster_size grid), which find their own
   k. Each is scored by **stability**: the adjusted Rand agreement of fits on overlapping 80 %
   subsamples (density methods: times the share of non-noise rows; under 2 clusters or over
   50 % noise: invalid). A partition that the data really holds is found again on another
   sample; a partition imposed by the algorithm's shape assumptions is not.
3. **Consensus among the stable.** Candidates within ``tolerance`` of the best stability are
   contenders; among them the best mean rank of silhouette (high), Calinski–Harabasz (high)
   and Davies–Bouldin (low) wins (plus BIC when all contenders are Gaussian mixtures). A
   candidate with a silhouette <= 0 (a split that is stable only because it is nearly
   constant, as spectral clustering finds on shapeless data) ranks after every other.
4. **Successive halving.** Candidates are first judged on a small random sample; the best
   ``1/eta`` go on to a sample ``eta`` times larger, up to ``max_search_rows``. Most candidates
   never see more than a few hundred rows.

Algorithms that cannot label rows they were not fitted on (spectral, DBSCAN, HDBSCAN) are left
out when the data has more rows than ``max_search_rows``, since the winner must then be fitted
once on all rows; the notes say so.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field, replace
from functools import partial
from typing import Any

import numpy as np
from sklearn.cluster import KMeans
from sklearn.metrics import silhouette_score
from sklearn.neighbors import NearestNeighbors

from zhuge.ml.cluster._validation import ClusterInputError, check_k
from zhuge.ml.cluster.algorithms import ALGORITHMS, ClusterResult, fit_algorithm
from zhuge.ml.cluster.backends import BackendName, get_backend
from zhuge.ml.cluster.scoring import GapResult, gap_statistic, internal_scores, stability
from zhuge.ml.cluster.selection import AUTO_FAMILIES

__all__ = [
    "AUTO_ALGORITHMS",
    "CONVEX_ALGORITHMS",
    "Candidate",
    "CandidateRecord",
    "SearchOptions",
    "SearchResult",
    "choose_k",
    "evaluate_candidate",
    "rank_candidates",
    "search_clusterings",
]

AUTO_ALGORITHMS = AUTO_FAMILIES  # what auto may search (planning may leave some out)
# the search for named algorithms, and auto's on data no partition separates (convex evidence)
CONVEX_ALGORITHMS = ("kmeans", "gmm", "spectral", "dbscan", "hdbscan")
MAX_NOISE_FRACTION = 0.5
FINAL_N_INIT = 10  # restarts for the winning k-means fit on all rows
# A lone candidate's scores only inform (nothing is compared): a small sample keeps the cost
# of calling one algorithm through zhuge within a few percent of calling it directly.
SINGLE_SCORE_ROWS = 1_000
CONSENSUS = (("silhouette", True), ("calinski_harabasz", True), ("davies_bouldin", False))

MapFn = Callable[[Callable[[Any], Any], Iterable[Any]], Iterable[Any]]


@dataclass(frozen=True)
class SearchOptions:
    """Knobs of :func:`search_clusterings`; defaults suit tables up to a few million rows."""

    algorithms: Sequence[str] | str = "auto"
    n_clusters: int | None = None
    k_range: tuple[int, int] = (2, 10)
    random_state: int = 0
    eta: int = 3  # successive halving: keep 1/eta, grow the sample eta-fold
    min_rung_rows: int = 250
    max_search_rows: int = 20_000
    stability_pairs: int = 3
    tolerance: float = 0.03  # stability difference treated as a tie
    gap_rows: int = 3_000
    gap_references: int = 8
    params: dict[str, Any] = field(default_factory=dict)  # fixed, e.g. {"n_init": 3}
    auto: bool = False  # algorithms is a list the caller did not choose (auto minus planning)
    backend: BackendName = "auto"  # engine of every fit: see zhuge.ml.cluster.backends


@dataclass(frozen=True)
class Candidate:
    algorithm: str
    params: dict[str, Any]

    def label(self) -> str:
        inner = ", ".join(f"{k}={v}" for k, v in sorted(self.params.items()))
        return f"{self.algorithm}({inner})"


@dataclass(frozen=True)
class CandidateRecord:
    """A candidate's last evaluation: scores, how far it got and why it stopped."""

    candidate: Candidate
    rows: int
    n_clusters: int
    scores: dict[str, float]
    valid: bool
    note: str = ""
    rung: int = 0
    eliminated: str = ""
    process: int = 0  # id of the process that evaluated it (several under a Dask map_fn)

    @property
    def score(self) -> float:
        return self.scores.get("stability_score", -math.inf) if self.valid else -math.inf

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["candidate"] = self.candidate.label()
        out["algorithm"] = self.candidate.algorithm
        out["params"] = self.candidate.params
        return out


@dataclass(frozen=True)
class SearchResult:
    """The winner (fitted on all rows), every candidate's record, and the reasons."""

    winner: ClusterResult
    winner_record: CandidateRecord
    candidates: list[CandidateRecord]
    chosen_k: int | None
    k_selection: str
    gap: GapResult | None
    rungs: list[int]
    reason: str
    notes: list[str] = field(default_factory=list)
    decided_by: str = ""  # auto: the validity index that ranked the winner best

    def table(self) -> list[dict[str, Any]]:
        return [r.as_dict() for r in self.candidates]


# -- evaluating one candidate (a plain function so map_fn can ship it to a worker) --------


def evaluate_candidate(
    task: tuple[Candidate, np.ndarray, int, int, int, int | None, BackendName],
) -> CandidateRecord:
    """Fit one candidate on a sample and score it.

    ``task`` = (candidate, X, stability pairs, seed, rung, k*, backend name). A density method that finds a
    number of clusters other than ``k*`` is invalid: the number of clusters is decided once,
    by the gap statistic, and stability is known to favour fewer clusters (k=2 is nearly
    always the most stable), so it must not overrule that decision.
    """
    record = _evaluate(task)
    return replace(record, process=os.getpid())


def _evaluate(
    task: tuple[Candidate, np.ndarray, int, int, int, int | None, BackendName],
) -> CandidateRecord:
    candidate, X, pairs, seed, rung, k_star, backend_name = task
    fit = partial(fit_algorithm, backend=get_backend(backend_name))
    try:
        result = fit(candidate.algorithm, X, candidate.params, random_state=seed)
    except (ValueError, np.linalg.LinAlgError) as exc:
        return CandidateRecord(candidate, len(X), 0, {}, False, f"failed: {exc}", rung)
    scores = internal_scores(X, result.labels, model=result.model, random_state=seed)
    noise = scores["noise_fraction"]
    if result.n_clusters < 2:
        return CandidateRecord(
            candidate, len(X), result.n_clusters, scores, False, "fewer than 2 clusters", rung
        )
    if noise > MAX_NOISE_FRACTION:
        return CandidateRecord(
            candidate, len(X), result.n_clusters, scores, False, f"{noise:.0%} noise", rung
        )
    if (
        k_star is not None
        and not ALGORITHMS[candidate.algorithm].takes_k
        and result.n_clusters != k_star
    ):
        note = f"found {result.n_clusters} clusters, not the chosen k={k_star}"
        return CandidateRecord(candidate, len(X), result.n_clusters, scores, False, note, rung)
    stab = stability(
        X, candidate.algorithm, candidate.params, n_pairs=pairs, random_state=seed, fit=fit
    )
    scores["stability"] = stab
    scores["stability_score"] = stab * (1.0 - noise)
    return CandidateRecord(candidate, len(X), result.n_clusters, scores, True, "", rung)


# -- ranking ----------------------------------------------------------------------------


def _consensus_rank(records: list[CandidateRecord]) -> dict[int, float]:
    criteria = list(CONSENSUS)
    if all(r.candidate.algorithm == "gmm" for r in records):
        criteria.append(("bic", False))
    ranks = {i: [] for i in range(len(records))}
    for name, higher in criteria:
        values = [r.scores.get(name, -math.inf if higher else math.inf) for r in records]
        order = sorted(range(len(records)), key=lambda i: -values[i] if higher else values[i])
        for position, i in enumerate(order):
            ranks[i].append(position + 1)
    return {i: float(np.mean(v)) for i, v in ranks.items()}


def _sound(record: CandidateRecord) -> bool:
    """A partition whose silhouette is not positive puts the average row nearer another
    cluster than its own: stable maybe (a near-constant split is found again on every
    subsample), but no segmentation. It may win only if nothing better was found."""
    silhouette = record.scores.get("silhouette", math.nan)
    return not silhouette <= 0.0  # NaN (not computed) counts as sound


def rank_candidates(records: list[CandidateRecord], tolerance: float) -> list[CandidateRecord]:
    """Best first: repeatedly take, among those within ``tolerance`` of the best stability
    score, the one with the best consensus rank of silhouette / CH / DB; candidates with a
    silhouette <= 0 come after all others."""
    ordered: list[CandidateRecord] = []
    for sound in (True, False):
        remaining = [r for r in records if r.valid and _sound(r) == sound]
        while remaining:
            best = max(r.score for r in remaining)
            contenders = [r for r in remaining if r.score >= best - tolerance]
            ranks = _consensus_rank(contenders)
            pick = contenders[min(ranks, key=lambda i: (ranks[i], -contenders[i].score))]
            ordered.append(pick)
            remaining.remove(pick)
    return ordered + [r for r in records if not r.valid]


# -- candidates -------------------------------------------------------------------------


def _density_grid(X: np.ndarray, seed: int) -> list[Candidate]:
    rng = np.random.default_rng(seed)
    sample = X[rng.choice(len(X), min(len(X), 2_000), replace=False)]
    out = []
    for min_samples in sorted({5, min(2 * X.shape[1], 50)}):
        m = min(min_samples, len(sample) - 1)
        if m < 2:
            continue
        dist, _ = NearestNeighbors(n_neighbors=m + 1).fit(sample).kneighbors(sample)
        for q in (0.5, 0.75, 0.9):
            eps = float(np.quantile(dist[:, -1], q))
            if eps > 0:
                out.append(Candidate("dbscan", {"eps": round(eps, 6), "min_samples": m}))
    n = len(X)
    for size in sorted({max(5, n // 100), max(10, n // 30), max(15, n // 10)}):
        out.append(Candidate("hdbscan", {"min_cluster_size": int(size)}))
    return out


def _candidates(
    algorithms: Sequence[str], k: int | None, X: np.ndarray, seed: int
) -> list[Candidate]:
    out: list[Candidate] = []
    for name in algorithms:
        if name == "kmeans":
            out += [
                Candidate("kmeans", {"n_clusters": k, "init": i}) for i in ("k-means++", "random")
            ]
        elif name == "minibatch_kmeans":
            out.append(Candidate("minibatch_kmeans", {"n_clusters": k}))
        elif name == "gmm":
            out += [
                Candidate("gmm", {"n_clusters": k, "covariance_type": c})
                for c in ("full", "tied", "diag", "spherical")
            ]
        elif name == "spectral":
            out.append(Candidate("spectral", {"n_clusters": k, "n_neighbors": 10}))
        elif name == "genie":
            out += [Candidate("genie", {"n_clusters": k, "gini_threshold": g}) for g in (0.3, 0.1)]
        elif name in ("ward", "average"):
            out.append(Candidate(name, {"n_clusters": k}))
    if any(name in ("dbscan", "hdbscan") for name in algorithms):
        out += [c for c in _density_grid(X, seed) if c.algorithm in algorithms]
    return out


def _choose_k(
    X: np.ndarray, opts: SearchOptions, rng: np.random.Generator
) -> tuple[int, str, GapResult]:
    sample = X[rng.choice(len(X), opts.gap_rows, replace=False)] if len(X) > opts.gap_rows else X
    k_lo, k_hi = opts.k_range
    k_hi = min(k_hi, len(sample) - 2)
    if k_hi < k_lo:
        raise ClusterInputError(f"k_range {opts.k_range} does not fit {len(X)} rows")
    gap = gap_statistic(
        sample,
        range(k_lo, k_hi + 1),
        n_references=opts.gap_references,
        random_state=opts.random_state,
    )
    if gap.chosen_k is not None:
        return gap.chosen_k, gap.explain(), gap
    sil = {}
    for k in range(k_lo, k_hi + 1):
        labels = KMeans(n_clusters=k, n_init=4, random_state=opts.random_state).fit_predict(sample)
        sil[k] = float(silhouette_score(sample, labels)) if len(np.unique(labels)) > 1 else -1.0
    k = max(sil, key=sil.get)
    return k, f"{gap.explain()}; fell back to the best KMeans silhouette: k={k} ({sil[k]:.3f})", gap


def choose_k(
    X: np.ndarray, k_range: tuple[int, int] = (2, 10), *, random_state: int = 0
) -> tuple[int, str]:
    """The number of clusters the search would choose on ``X``, and why (gap statistic)."""
    opts = SearchOptions(k_range=k_range, random_state=random_state)
    k, note, _ = _choose_k(X, opts, np.random.default_rng(random_state))
    return k, note


def _rungs(n: int, opts: SearchOptions) -> list[int]:
    top = min(n, opts.max_search_rows)
    sizes = []
    size = opts.min_rung_rows
    while size < top:
        sizes.append(size)
        size *= opts.eta
    sizes.append(top)
    # a rung less than twice the one before it adds little; merge it into the final one
    if len(sizes) >= 2 and sizes[-1] < 2 * sizes[-2]:
        sizes.pop(-2)
    return sizes


def search_clusterings(
    X: np.ndarray, options: SearchOptions | None = None, *, map_fn: MapFn | None = None
) -> SearchResult:
    """Search algorithms and parameters on prepared numeric ``X``; see the module docstring.

    ``map_fn(fn, tasks)`` (e.g. ``executor.map`` or a Dask client's) evaluates candidates of
    one rung in parallel; by default they run here, one after another.
    """
    opts = options or SearchOptions()
    if opts.algorithms == "auto" or opts.auto:
        from zhuge.ml.cluster.auto import select_and_fit  # auto calls back into this search

        return select_and_fit(X, opts, map_fn)
    mapper: MapFn = map_fn or map
    n = len(X)
    rng = np.random.default_rng(opts.random_state)
    notes: list[str] = []
    algorithms = list(
        AUTO_ALGORITHMS
        if opts.algorithms == "auto"
        else [opts.algorithms]
        if isinstance(opts.algorithms, str)
        else opts.algorithms
    )
    for name in algorithms:
        if name not in ALGORITHMS:
            raise ClusterInputError(
                f"unknown algorithm {name!r}; choose from {sorted(ALGORITHMS)} or 'auto'"
            )
    if n > opts.max_search_rows:
        dropped = [a for a in algorithms if not ALGORITHMS[a].can_predict]
        if dropped and len(dropped) < len(algorithms):
            algorithms = [a for a in algorithms if a not in dropped]
            notes.append(
                f"left out {dropped}: they cannot label rows beyond the {opts.max_search_rows} searched"
            )
        auto = opts.algorithms == "auto" or opts.auto
        if auto and "kmeans" in algorithms and n > 200_000:
            algorithms = ["minibatch_kmeans" if a == "kmeans" else a for a in algorithms]
            notes.append("kmeans replaced by minibatch_kmeans for more than 200000 rows")

    k: int | None = None
    gap = None
    k_note = "not needed: only density methods were searched"
    if any(ALGORITHMS[a].takes_k for a in algorithms):
        if opts.n_clusters is not None:
            check_k(opts.n_clusters, n)
            k, k_note = opts.n_clusters, f"k={opts.n_clusters} given by the caller"
        else:
            if opts.k_range[0] > n:
                check_k(opts.k_range[0], n)
            k, k_note, gap = _choose_k(X, opts, rng)

    candidates = [
        replace(c, params={**c.params, **dict(opts.params)}) if opts.params else c
        for c in _candidates(algorithms, k, X, opts.random_state)
    ]
    candidates = list({c.label(): c for c in candidates}.values())  # params may merge some
    if len(candidates) == 1:
        return _fit_single(X, candidates[0], opts, k, k_note, gap, notes)
    order = rng.permutation(n)
    rungs = _rungs(n, opts)
    records: dict[str, CandidateRecord] = {}
    alive = candidates
    for level, rows in enumerate(rungs):
        last = level == len(rungs) - 1
        sample = X[np.sort(order[:rows])]
        pairs = opts.stability_pairs + (2 if last else 0)
        tasks = [(c, sample, pairs, opts.random_state, level, k, opts.backend) for c in alive]
        evaluated = list(mapper(evaluate_candidate, tasks))
        for rec in evaluated:
            records[rec.candidate.label()] = rec
        ranked = rank_candidates(evaluated, opts.tolerance)
        if last:
            break
        keep = max(2, math.ceil(len(ranked) / opts.eta))
        survivors = [r for r in ranked[:keep] if r.valid] or ranked[:1]
        for r in ranked:
            if r not in survivors:
                records[r.candidate.label()] = replace(r, eliminated=f"eliminated at {rows} rows")
        alive = [r.candidate for r in survivors]

    final = rank_candidates([records[c.label()] for c in alive], opts.tolerance)
    if final and not final[0].valid and opts.n_clusters is not None:
        notes.append(f"kept {final[0].candidate.label()} although {final[0].note}: k was given")
    elif not final or not final[0].valid:
        raise ClusterInputError(
            "no candidate produced at least 2 clusters with under half the rows as noise; "
            "the data may have no cluster structure at this scale"
        )
    best = final[0]
    for r in final[1:]:
        records[r.candidate.label()] = replace(
            r, eliminated=f"lost to {best.candidate.label()} at {r.rows} rows"
        )
    winner = _final_fit(X, best.candidate, opts)
    reason = _explain(best, final, k_note, rungs, len(candidates), opts.tolerance)
    ordered = rank_candidates(list(records.values()), math.inf)
    ordered.sort(key=lambda r: (-r.rung, 0 if r.valid else 1, -r.score))
    return SearchResult(
        winner, best, ordered, k, k_note, gap, rungs, reason, notes + list(winner.notes)
    )


def _final_fit(X: np.ndarray, candidate: Candidate, opts: SearchOptions) -> ClusterResult:
    params = dict(candidate.params)
    if candidate.algorithm in ("kmeans", "minibatch_kmeans") and "n_init" not in opts.params:
        # the search compares inits with few restarts; the one fit users keep gets more
        params["n_init"] = FINAL_N_INIT
    backend = get_backend(opts.backend)
    return fit_algorithm(
        candidate.algorithm, X, params, random_state=opts.random_state, backend=backend
    )


def _fit_single(
    X: np.ndarray,
    candidate: Candidate,
    opts: SearchOptions,
    k: int | None,
    k_note: str,
    gap: GapResult | None,
    notes: list[str],
) -> SearchResult:
    """One candidate: nothing to compare, so no stability fits; fit it on all rows."""
    winner = _final_fit(X, candidate, opts)
    rng = np.random.default_rng(opts.random_state)
    idx = np.sort(rng.choice(len(X), min(len(X), SINGLE_SCORE_ROWS), replace=False))
    scores = internal_scores(X[idx], winner.labels[idx], random_state=opts.random_state)
    record = CandidateRecord(candidate, len(X), winner.n_clusters, scores, True)
    reason = f"Number of clusters: {k_note}. Only one candidate, {candidate.label()}: fitted on all rows without a search."
    return SearchResult(
        winner, record, [record], k, k_note, gap, [len(X)], reason, notes + list(winner.notes)
    )


def _explain(
    best: CandidateRecord,
    final: list[CandidateRecord],
    k_note: str,
    rungs: list[int],
    n_candidates: int,
    tol: float,
) -> str:
    s = best.scores
    parts = [
        f"Number of clusters: {k_note}.",
        f"{n_candidates} candidates were screened by successive halving on samples of {rungs} rows.",
        f"{best.candidate.label()} won at {best.rows} rows with stability {s.get('stability', float('nan')):.3f} "
        f"(agreement of fits on overlapping 80% subsamples), silhouette {s.get('silhouette', float('nan')):.3f}, "
        f"Calinski-Harabasz {s.get('calinski_harabasz', float('nan')):.1f}, "
        f"Davies-Bouldin {s.get('davies_bouldin', float('nan')):.3f}.",
    ]
    valid_rest = [r for r in final[1:] if r.valid]
    if valid_rest:
        runner = valid_rest[0]
        if runner.score >= best.score - tol:
            parts.append(
                f"{runner.candidate.label()} was as stable (within {tol}: {runner.scores['stability_score']:.3f}); "
                "the winner has the better consensus rank of silhouette, Calinski-Harabasz and Davies-Bouldin."
            )
        else:
            parts.append(
                f"Runner-up {runner.candidate.label()} was less stable ({runner.scores['stability_score']:.3f})."
            )
    if best.scores.get("noise_fraction", 0) > 0:
        parts.append(f"{best.scores['noise_fraction']:.1%} of rows are labelled noise (-1).")
    return " ".join(parts)
