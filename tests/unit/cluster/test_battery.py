"""The CI battery (issue 15): ``auto``, told nothing, against fixed choices on labelled sets.

Seven sets of the battery (at most 1,000 rows each), one or more from every report family
plus the rings and the 20 blobs the issue names. The full battery, with the per-set table,
is ``benchmarks/cluster_battery.py`` (results in ``benchmarks/README_clustering.md``).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from zhuge.ml.cluster import Segmenter
from zhuge.ml.cluster.battery import battery, score_ari

pytestmark = pytest.mark.slow

CI_SETS = (
    "rings_2",
    "blobs_k20_d2",
    "noise_20_blobs_5",
    "moons",
    "unbalanced_3",
    "elongated_3",
    "ring_and_blobs",
)


def _references(X: np.ndarray, k: int) -> dict[str, np.ndarray]:
    from sklearn.cluster import HDBSCAN, KMeans
    from sklearn.mixture import GaussianMixture
    from sklearn.preprocessing import StandardScaler

    Z = StandardScaler().fit_transform(X)
    n = len(Z)
    return {
        "hdbscan": HDBSCAN(min_cluster_size=max(5, n // 100), copy=True).fit_predict(Z),
        "kmeans_true_k": KMeans(k, n_init=10, random_state=0).fit_predict(Z),
        "gmm_true_k": GaussianMixture(k, n_init=2, random_state=0).fit(Z).predict(Z),
    }


@pytest.fixture(scope="module")
def runs() -> dict[str, dict]:
    out = {}
    for s in battery():
        if s.name not in CI_SETS:
            continue
        assert len(s.X) <= 1000
        frame = pd.DataFrame(s.X, columns=[f"x{i}" for i in range(s.X.shape[1])])
        seg = Segmenter(random_state=0).fit(frame)
        scores = {name: score_ari(s.y, lab) for name, lab in _references(s.X, s.k).items()}
        scores["auto"] = score_ari(s.y, seg.labels_)
        out[s.name] = {"set": s, "seg": seg, "scores": scores}
    assert set(out) == set(CI_SETS)
    return out


def test_auto_beats_each_reference_on_mean_ari(runs) -> None:
    means = {
        name: float(np.mean([r["scores"][name] for r in runs.values()]))
        for name in ("auto", "hdbscan", "kmeans_true_k", "gmm_true_k")
    }
    detail = {k: {n: round(v, 3) for n, v in r["scores"].items()} for k, r in runs.items()}
    for reference in ("hdbscan", "kmeans_true_k", "gmm_true_k"):
        assert means["auto"] > means[reference], (means, detail)


def test_background_noise_is_labelled_noise(runs) -> None:
    run = runs["noise_20_blobs_5"]
    truth, labels = run["set"].y, run["seg"].labels_
    assert np.mean(truth < 0) == pytest.approx(0.2, abs=0.01)
    # most background points are called noise, few cluster points are
    assert np.mean(labels[truth < 0] == -1) > 0.5
    assert np.mean(labels[truth >= 0] == -1) < 0.1
    assert run["scores"]["auto"] > 0.95


def test_two_nested_rings_are_split(runs) -> None:
    run = runs["rings_2"]
    assert run["seg"].n_clusters_ == 2
    assert run["scores"]["auto"] > 0.95
    assert run["seg"].search_.decided_by == "dunn_owa"


def test_twenty_blobs_are_found(runs) -> None:
    run = runs["blobs_k20_d2"]
    assert run["seg"].n_clusters_ == 20
    assert run["scores"]["auto"] > 0.95


def test_every_choice_labels_new_rows(runs) -> None:
    """Whatever auto chose (density, hierarchical, centroid), fitted rows nudged a little get
    their own labels back (noise may stay noise)."""
    for name, run in runs.items():
        s, seg = run["set"], run["seg"]
        frame = pd.DataFrame(s.X[:50] + 1e-6, columns=[f"x{i}" for i in range(s.X.shape[1])])
        predicted = seg.predict(frame)
        fitted = seg.labels_[:50]
        keep = fitted >= 0
        assert (predicted[keep] == fitted[keep]).mean() > 0.95, name
