"""``auto`` (issue 15): the shape-over-convex rule, determinism, the candidates kept at scale,
noise in the profile."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from zhuge.jobs.cluster.report import profile_summary
from zhuge.ml.cluster import Segmenter
from zhuge.ml.cluster.battery import battery, score_ari
from zhuge.ml.cluster.profile import profile_clusters

pytestmark = pytest.mark.slow


def _frame(X: np.ndarray) -> pd.DataFrame:
    return pd.DataFrame(X, columns=[f"x{i}" for i in range(X.shape[1])])


def _set(name: str):
    return next(s for s in battery(("rings",)) if s.name == name)


def test_rings_blurred_by_noise_dimensions_beat_the_convex_cut() -> None:
    """Two rings plus two Gaussian columns: no partition separates the near-neighbour graph,
    the convex search cuts straight through both rings (ARI ~0.01); Genie's two rings keep
    near neighbours together several times better and win, and the reason says why."""
    s = _set("rings_2_in_4d")
    seg = Segmenter(random_state=0).fit(_frame(s.X))
    assert seg.search_.decided_by == "dunn_owa_ratio", seg.search_.reason
    assert seg.n_clusters_ == 2
    assert score_ari(s.y, seg.labels_) > 0.9
    assert "times better" in seg.search_.reason and "convex search chose" in seg.search_.reason
    assert seg.search_.winner_record.scores["stability"] >= 0.8
    assert seg.search_.k_selection.startswith("the convex search's")  # k came from the gap


def test_touching_blobs_keep_the_convex_answer() -> None:
    """Three Gaussian blobs that touch: no shape beats the convex cut by the ratio, so the
    convex evidence decides (the rule must not fire on blob-like data)."""
    rng = np.random.default_rng(3)
    centres = np.array([[0.0, 0.0], [2.5, 0.0], [1.25, 2.2]])
    y = rng.integers(0, 3, 450)
    X = centres[y] + rng.normal(size=(450, 2))
    seg = Segmenter(random_state=0).fit(_frame(X))
    assert seg.search_.decided_by == "stability", seg.search_.reason


def test_same_input_and_seed_same_result() -> None:
    s = _set("two_ring_pairs")
    first = Segmenter(random_state=7).fit(_frame(s.X))
    second = Segmenter(random_state=7).fit(_frame(s.X))
    assert (first.labels_ == second.labels_).all()
    assert first.search_.reason == second.search_.reason
    assert first.search_.decided_by == second.search_.decided_by
    assert [r.candidate for r in first.search_.candidates] == [
        r.candidate for r in second.search_.candidates
    ]


def test_above_200k_rows_auto_keeps_a_density_and_a_hierarchical_candidate() -> None:
    """Planning leaves out what grows with rows squared (spectral, Ward, average) but keeps
    Genie (a minimum spanning tree from a nearest-neighbour search) and HDBSCAN; the winner
    is fitted on all 250,000 rows and the search shows both families were scored."""
    rng = np.random.default_rng(0)
    n = 250_000
    truth = rng.integers(0, 3, n)
    X = np.array([[0.0, 0.0], [9.0, 0.0], [0.0, 9.0]])[truth] + rng.normal(size=(n, 2))
    seg = Segmenter(random_state=0).fit(_frame(X))
    assert {"genie", "hdbscan", "dbscan"} <= set(seg.plan_.algorithms)
    assert not {"spectral", "ward", "average"} & set(seg.plan_.algorithms)
    scored = {r.candidate.algorithm for r in seg.search_.candidates}
    assert {"genie", "hdbscan"} <= scored
    assert len(seg.labels_) == n and seg.n_clusters_ == 3
    assert score_ari(truth, seg.labels_) > 0.99


def test_noise_is_named_noise_in_the_profile_and_comes_last() -> None:
    frame = pd.DataFrame({"a": [0.0, 0.1, 5.0, 5.1, 40.0], "b": [1.0, 1.1, 2.0, 2.1, -9.0]})
    labels = np.array([0, 0, 1, 1, -1])
    profile = profile_clusters(frame, labels)
    assert profile["cluster"].tolist()[-2:] == [-1, -1]
    assert set(profile.loc[profile["cluster"] == -1, "kind"]) == {"noise"}
    assert set(profile.loc[profile["cluster"] >= 0, "kind"]) == {"cluster"}
    summary = profile_summary(profile)
    assert [c["cluster"] for c in summary] == [0, 1, -1]
    assert [c["noise"] for c in summary] == [False, False, True]


def test_auto_plans_its_final_fit_for_the_largest_k_its_search_reaches() -> None:
    """Told nothing, auto may search k up to k_max (40 on an 800-row sample), so the plan
    costs k-means at that k, not at the default range's 10."""
    auto = Segmenter()._plan((300_000, 2))
    named = Segmenter(algorithm="kmeans")._plan((300_000, 2))
    seconds = {p.algorithm: p.seconds for p in auto.plans}
    assert seconds["kmeans"] == pytest.approx(4 * named.plans[0].seconds)
