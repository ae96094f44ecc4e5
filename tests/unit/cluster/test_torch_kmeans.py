"""The torch k-means backend on the CPU (as CI runs it): scikit-learn's quality and contract,
batching that changes nothing, the backend switch, and save/load through the Segmenter."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
from sklearn.cluster import KMeans
from sklearn.datasets import make_blobs
from sklearn.metrics import adjusted_rand_score

from zhuge.errors import MissingDependency
from zhuge.ml.cluster import backends
from zhuge.ml.cluster.algorithms import fit_algorithm
from zhuge.ml.cluster.backends import get_backend
from zhuge.ml.cluster.model import Segmenter, load_model
from zhuge.ml.cluster.torch_kmeans import TorchKMeans

K = 5
# what a user without torch sees is tested below, with torch hidden; the rest needs torch
needs_torch = pytest.mark.skipif(
    importlib.util.find_spec("torch") is None,
    reason="the torch k-means backend needs torch: pip install 'zhuge[torch]'",
)


@pytest.fixture(scope="module")
def blobs() -> tuple[np.ndarray, np.ndarray]:
    # overlapping blobs, away from the origin: k-means must work for its ARI here
    X, y = make_blobs(4000, n_features=6, centers=K, cluster_std=2.5, random_state=3)
    return X + 50.0, y


@pytest.fixture(scope="module")
def fitted(blobs) -> tuple[KMeans, TorchKMeans]:
    X, _ = blobs
    ref = KMeans(n_clusters=K, n_init=4, random_state=0).fit(X)
    ours = TorchKMeans(n_clusters=K, n_init=4, random_state=0, device="cpu").fit(X)
    return ref, ours


@needs_torch
def test_quality_matches_sklearn(blobs, fitted) -> None:
    _, y = blobs
    ref, ours = fitted
    ref_ari = adjusted_rand_score(y, ref.labels_)
    assert adjusted_rand_score(y, ours.labels_) >= ref_ari - 0.01
    assert ours.inertia_ == pytest.approx(ref.inertia_, rel=0.01)
    assert 1 <= ours.n_iter_ <= 300


@needs_torch
def test_results_contract_is_sklearns(blobs, fitted) -> None:
    X, _ = blobs
    ref, ours = fitted
    assert ours.labels_.shape == ref.labels_.shape
    assert ours.labels_.dtype == ref.labels_.dtype
    assert isinstance(ours.cluster_centers_, np.ndarray)
    assert ours.cluster_centers_.shape == (K, X.shape[1])
    assert set(np.unique(ours.labels_)) == set(range(K))
    # inertia_ is the inertia of labels_ on cluster_centers_, as scikit-learn's
    recomputed = ((X - ours.cluster_centers_[ours.labels_]) ** 2).sum()
    assert ours.inertia_ == pytest.approx(recomputed, rel=1e-4)
    assert ours.score(X) == pytest.approx(-recomputed, rel=1e-4)


@needs_torch
def test_predict_agrees_with_fit_labels(blobs, fitted) -> None:
    X, _ = blobs
    _, ours = fitted
    np.testing.assert_array_equal(ours.predict(X), ours.labels_)
    np.testing.assert_array_equal(ours.fit_predict(X), ours.labels_)


@needs_torch
def test_same_seed_same_result_other_seed_still_good(blobs) -> None:
    X, y = blobs
    a = TorchKMeans(n_clusters=K, n_init=2, random_state=7).fit(X)
    b = TorchKMeans(n_clusters=K, n_init=2, random_state=7).fit(X)
    np.testing.assert_array_equal(a.labels_, b.labels_)
    np.testing.assert_array_equal(a.cluster_centers_, b.cluster_centers_)
    assert a.inertia_ == b.inertia_
    other = TorchKMeans(n_clusters=K, n_init=2, random_state=8).fit(X)
    assert other.inertia_ == pytest.approx(a.inertia_, rel=0.01)
    assert adjusted_rand_score(y, other.labels_) >= adjusted_rand_score(y, a.labels_) - 0.02


@needs_torch
def test_batched_equals_unbatched(blobs) -> None:
    X, _ = blobs
    whole = TorchKMeans(n_clusters=K, n_init=2, random_state=1, batch_size=len(X)).fit(X)
    # 97 rows: batches that do not divide n, smaller than k-means++'s candidate chunk too
    batched = TorchKMeans(n_clusters=K, n_init=2, random_state=1, batch_size=97).fit(X)
    np.testing.assert_array_equal(batched.labels_, whole.labels_)
    np.testing.assert_allclose(batched.cluster_centers_, whole.cluster_centers_, rtol=1e-6)
    assert batched.inertia_ == pytest.approx(whole.inertia_, rel=1e-6)
    assert batched.n_iter_ == whole.n_iter_


@needs_torch
def test_duplicate_rows_leave_no_cluster_empty() -> None:
    # 3 distinct points, k=3, many copies: seeding and Lloyd must still use all 3
    X = np.repeat(np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]]), 50, axis=0)
    model = TorchKMeans(n_clusters=3, random_state=0).fit(X)
    assert np.bincount(model.labels_).tolist() == [50, 50, 50]
    assert model.inertia_ == pytest.approx(0.0, abs=1e-6)


@needs_torch
def test_bad_parameters_raise() -> None:
    X = np.zeros((4, 2))
    with pytest.raises(ValueError, match="n_clusters"):
        TorchKMeans(n_clusters=5).fit(X)
    with pytest.raises(ValueError, match="k-means\\+\\+"):
        TorchKMeans(n_clusters=2, init="random").fit(X)


@needs_torch
def test_backend_switch(monkeypatch) -> None:
    assert get_backend("torch").estimator_class("kmeans") is TorchKMeans
    # the torch engine covers k-means only: the rest stay on scikit-learn, and it says so
    assert get_backend("torch").estimator_class("gmm").__module__.startswith("sklearn")
    assert "scikit-learn" in get_backend("torch").describe("gmm")
    monkeypatch.setattr(backends, "cuml_available", lambda: False)
    monkeypatch.setattr(backends, "torch_cuda_available", lambda: True)
    assert get_backend("auto").name == "torch"
    monkeypatch.setattr(backends, "torch_cuda_available", lambda: False)
    assert get_backend("auto").name == "sklearn"
    monkeypatch.setattr(backends, "cuml_available", lambda: True)
    assert get_backend("auto").name == "cuml"


def test_torch_backend_without_torch_names_the_extra(monkeypatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "torch" else real(name, *a)
    )
    with pytest.raises(MissingDependency, match=r"zhuge\[torch\]"):
        get_backend("torch")
    with pytest.raises(MissingDependency, match=r"zhuge\[torch\]"):
        Segmenter(algorithm="kmeans", n_clusters=2, backend="torch").fit(np.zeros((4, 2)))


@needs_torch
def test_fit_algorithm_notes_the_engine(blobs) -> None:
    X, _ = blobs
    torch_backend = get_backend("torch")
    result = fit_algorithm("kmeans", X[:500], {"n_clusters": K}, backend=torch_backend)
    assert isinstance(result.model, TorchKMeans)
    assert result.labels.dtype == np.int64 and result.n_clusters == K
    assert any("fitted by torch" in note for note in result.notes)
    gmm = fit_algorithm("gmm", X[:500], {"n_clusters": K}, backend=torch_backend)
    assert any("fitted by scikit-learn" in note for note in gmm.notes)


@needs_torch
def test_segmenter_torch_end_to_end_save_load(tmp_path, blobs) -> None:
    X, y = blobs[0][:1500], blobs[1][:1500]
    seg = Segmenter(
        algorithm="kmeans", n_clusters=K, preprocess=None, params={"n_init": 2}, backend="torch"
    ).fit(X)
    assert isinstance(seg.result_.model, TorchKMeans)
    assert seg.labels_.shape == (len(X),) and seg.labels_.dtype == np.int64
    assert adjusted_rand_score(y, seg.labels_) > 0.9
    assert any("fitted by torch" in note for note in seg.notes_)
    np.testing.assert_array_equal(seg.predict(X), seg.labels_)
    url = f"file://{tmp_path}/seg"
    seg.save(url)
    loaded = load_model(url)
    assert isinstance(loaded, Segmenter)
    assert isinstance(loaded.result_.model.cluster_centers_, np.ndarray)
    np.testing.assert_array_equal(loaded.predict(X[:300]), seg.labels_[:300])
