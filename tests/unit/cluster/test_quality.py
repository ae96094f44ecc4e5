"""The quality bar: without being told k, ``algorithm="auto", preprocess="auto"`` reaches at
least the adjusted Rand index of standardised KMeans given the true k, on sklearn's bundled
data sets (no download)."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn import datasets
from sklearn.cluster import KMeans
from sklearn.metrics import adjusted_rand_score
from sklearn.preprocessing import StandardScaler

from zhuge.ml.cluster import Segmenter


def baseline_ari(X, y) -> float:
    k = len(set(y))
    labels = KMeans(n_clusters=k, n_init=10, random_state=0).fit_predict(
        StandardScaler().fit_transform(X)
    )
    return adjusted_rand_score(y, labels)


# The suite's 300 s timeout is a hang guard; the full search on digits takes ~115 s of CPU and,
# on a 2-core machine shared with other work, measured 215-300 s of wall time. A guard this
# test cannot trip by being slow on a busy machine:
@pytest.mark.timeout(1200)
@pytest.mark.slow
@pytest.mark.parametrize("name", ["wine", "breast_cancer", "digits"])
def test_auto_matches_or_beats_kmeans_with_true_k(name: str) -> None:
    data = getattr(datasets, f"load_{name}")(as_frame=True)
    X, y = data.data, data.target.to_numpy()
    seg = Segmenter().fit(X)
    ours = adjusted_rand_score(y, seg.labels_)
    base = baseline_ari(X.to_numpy(), y)
    assert ours >= base - 1e-9, (
        f"{name}: auto ARI {ours:.3f} < baseline {base:.3f}\n{seg.search_.reason}"
    )


@pytest.mark.slow
def test_auto_on_iris_keeps_the_separated_species_apart() -> None:
    """Iris changed with issue 15: setosa is separated from the other two species (no near
    neighbour crosses), versicolor and virginica touch. The separation rule keeps the two
    groups it can see (ARI 0.554; k-means told k=3 reaches 0.620): the documented cost of
    not assuming convex clusters (docs/clustering.md, "When to override auto")."""
    data = datasets.load_iris(as_frame=True)
    seg = Segmenter().fit(data.data)
    y = data.target.to_numpy()
    assert seg.search_.decided_by == "dunn_owa"
    setosa = seg.labels_[y == 0]
    label = np.bincount(setosa[setosa >= 0]).argmax()
    assert np.mean(setosa == label) >= 0.95  # a setosa outlier may be called noise
    assert not (seg.labels_[y != 0] == label).any()
    assert adjusted_rand_score(y, seg.labels_) > 0.55
