"""How the search orders evaluated candidates (``rank_candidates``)."""

from __future__ import annotations

import math

from zhuge.ml.cluster.search import Candidate, CandidateRecord, rank_candidates


def record(algorithm: str, stability: float, silhouette: float, ch: float, db: float):
    return CandidateRecord(
        candidate=Candidate(algorithm, {"n_clusters": 2}),
        rows=300,
        n_clusters=2,
        scores={
            "stability": stability,
            "stability_score": stability,
            "silhouette": silhouette,
            "calinski_harabasz": ch,
            "davies_bouldin": db,
        },
        valid=True,
    )


def test_a_stable_split_with_negative_silhouette_does_not_beat_a_real_one():
    # seen on shapeless load profiles: spectral splits 87/13 % along noise, stably
    degenerate = record("spectral", 1.0, -0.126, 0.1, 18.7)
    kmeans = record("kmeans", 0.806, 0.353, 165.4, 1.17)
    gmm = record("gmm", 0.657, 0.351, 162.6, 1.15)
    ranked = rank_candidates([degenerate, gmm, kmeans], tolerance=0.03)
    assert [r.candidate.algorithm for r in ranked] == ["kmeans", "gmm", "spectral"]


def test_when_nothing_is_sound_the_most_stable_still_wins():
    a = record("kmeans", 0.9, -0.01, 10.0, 3.0)
    b = record("gmm", 0.5, -0.2, 5.0, 4.0)
    assert [r.candidate.algorithm for r in rank_candidates([b, a], 0.03)] == ["kmeans", "gmm"]


def test_stability_first_among_sound_candidates_and_unscored_silhouette_counts_as_sound():
    stable = record("kmeans", 0.95, 0.2, 50.0, 1.5)
    sharper = record("gmm", 0.7, 0.5, 90.0, 0.8)
    unscored = record("spectral", 0.99, math.nan, 60.0, 1.0)
    ranked = rank_candidates([sharper, stable, unscored], tolerance=0.03)
    assert [r.candidate.algorithm for r in ranked] == ["spectral", "kmeans", "gmm"]
