"""Torch k-means on CUDA: scikit-learn's quality there, and a model fitted on the GPU predicts
on the CPU (as on a machine without one). Skipped where no NVIDIA GPU is visible."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
from sklearn.cluster import KMeans
from sklearn.datasets import make_blobs
from sklearn.metrics import adjusted_rand_score

from zhuge.hardware import gpu_count
from zhuge.ml.cluster.backends import get_backend
from zhuge.ml.cluster.torch_kmeans import TorchKMeans, require_torch

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(gpu_count() == 0, reason="no NVIDIA GPU visible"),
]

K = 8


@pytest.fixture(scope="module")
def blobs() -> tuple[np.ndarray, np.ndarray]:
    X, y = make_blobs(200_000, n_features=16, centers=K, cluster_std=4.0, random_state=2)
    return X, y


def test_auto_picks_torch_on_cuda_without_cuml() -> None:
    torch = require_torch()
    assert torch.cuda.is_available(), f"a GPU is visible but torch {torch.__version__} has no CUDA"
    assert get_backend("auto").name in ("torch", "cuml")  # cuML first where it is installed


def test_cuda_quality_matches_sklearn(blobs) -> None:
    X, y = blobs
    ref = KMeans(n_clusters=K, n_init=3, random_state=0).fit(X)
    ours = TorchKMeans(n_clusters=K, n_init=3, random_state=0, device="cuda").fit(X)
    assert ours.device_.startswith("cuda")
    assert adjusted_rand_score(y, ours.labels_) >= adjusted_rand_score(y, ref.labels_) - 0.01
    assert ours.inertia_ == pytest.approx(ref.inertia_, rel=0.01)
    np.testing.assert_array_equal(ours.predict(X), ours.labels_)


def test_cuda_fitted_model_predicts_on_cpu(blobs) -> None:
    X, _ = blobs
    model = TorchKMeans(n_clusters=K, n_init=2, random_state=0, device="cuda").fit(X)
    restored = pickle.loads(pickle.dumps(model))
    restored.set_params(device="cpu")  # what predict falls back to where CUDA is absent
    on_cpu = restored.predict(X)
    # float32 on two devices: a row equidistant to two centres may flip, nothing more
    assert np.mean(on_cpu == model.labels_) > 0.9999
    cpu_fit = TorchKMeans(n_clusters=K, n_init=2, random_state=0, device="cpu").fit(X)
    assert cpu_fit.inertia_ == pytest.approx(model.inertia_, rel=0.01)
