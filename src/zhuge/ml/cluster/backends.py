"""The one place that chooses the clustering engine: cuML, torch k-means, or scikit-learn.

``auto`` picks, in order: cuML when it imports *and* a GPU answers; else the ``torch`` engine
when torch is installed and sees CUDA; else scikit-learn. The ``torch`` engine supplies
k-means only (:class:`~zhuge.ml.cluster.torch_kmeans.TorchKMeans`); every other algorithm
stays on scikit-learn under it, and :meth:`Backend.describe` says so.

cuML and torch are optional. Nothing here imports either at module import time; asking for
the ``cuml`` or ``torch`` backend where it is not installed raises
:class:`~zhuge.errors.MissingDependency` naming what to install.
"""

from __future__ import annotations

import importlib
import importlib.util
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Literal

from zhuge.errors import MissingDependency
from zhuge.hardware import gpu_count
from zhuge.ml.cluster.torch_kmeans import TORCH_INSTALL_HINT

__all__ = ["Backend", "BackendName", "cuml_available", "get_backend", "torch_cuda_available"]

BackendName = Literal["auto", "sklearn", "cuml", "torch"]
EngineName = Literal["sklearn", "cuml", "torch"]

GPU_INSTALL_HINT = (
    "install RAPIDS cuML from NVIDIA's package index on a machine with an NVIDIA GPU and CUDA 12: "
    "pip install --extra-index-url=https://pypi.nvidia.com cuml-cu12"
)

# algorithm name -> (sklearn module, class name), (cuML module, class name) or None
_CLASSES: dict[str, tuple[tuple[str, str], tuple[str, str] | None]] = {
    "kmeans": (("sklearn.cluster", "KMeans"), ("cuml.cluster", "KMeans")),
    "minibatch_kmeans": (("sklearn.cluster", "MiniBatchKMeans"), None),
    "dbscan": (("sklearn.cluster", "DBSCAN"), ("cuml.cluster", "DBSCAN")),
    "hdbscan": (("sklearn.cluster", "HDBSCAN"), ("cuml.cluster", "HDBSCAN")),
    "gmm": (("sklearn.mixture", "GaussianMixture"), None),
    "spectral": (("sklearn.cluster", "SpectralClustering"), None),
    "genie": (("genieclust", "Genie"), None),
    "ward": (("sklearn.cluster", "AgglomerativeClustering"), None),
    "average": (("sklearn.cluster", "AgglomerativeClustering"), None),
}
# algorithm name -> (module, class name) of the torch engine; the rest stay on scikit-learn
_TORCH_CLASSES: dict[str, tuple[str, str]] = {
    "kmeans": ("zhuge.ml.cluster.torch_kmeans", "TorchKMeans"),
}


@lru_cache(maxsize=1)
def cuml_available() -> bool:
    """True when cuML imports and at least one CUDA device answers."""
    try:
        importlib.import_module("cuml")
        cupy = importlib.import_module("cupy")
        return int(cupy.cuda.runtime.getDeviceCount()) > 0
    except Exception:  # ImportError, or a CUDA runtime error on a machine without a GPU
        return False


@lru_cache(maxsize=1)
def torch_cuda_available() -> bool:
    """True when torch imports and sees a CUDA device (torch is imported only where
    ``nvidia-smi`` lists a GPU, so CPU machines do not pay for the import)."""
    if gpu_count() == 0 or importlib.util.find_spec("torch") is None:
        return False
    try:
        return bool(importlib.import_module("torch").cuda.is_available())
    except Exception:  # a broken CUDA install: scikit-learn will do
        return False


@dataclass(frozen=True)
class Backend:
    """An engine that supplies estimator classes for algorithm names."""

    name: EngineName

    def describe(self, algorithm: str) -> str:
        """Which engine fits ``algorithm`` under this backend, in a user's words."""
        engine = {"cuml": "cuML", "torch": "torch"}.get(self.name)
        if engine is None:
            return f"{algorithm}: fitted by scikit-learn"
        covered = (
            _TORCH_CLASSES
            if self.name == "torch"
            else {a: gpu for a, (_, gpu) in _CLASSES.items() if gpu is not None}
        )
        if algorithm in covered:
            return f"{algorithm}: fitted by {engine} (backend {self.name!r})"
        return (
            f"{algorithm}: fitted by scikit-learn on the CPU (backend {self.name!r} "
            f"has no {algorithm}; it covers {', '.join(sorted(covered))})"
        )

    def estimator_class(self, algorithm: str) -> type[Any]:
        try:
            cpu, gpu = _CLASSES[algorithm]
        except KeyError as exc:
            raise KeyError(f"no estimator class for algorithm {algorithm!r}") from exc
        module, cls = cpu
        if self.name == "torch" and algorithm in _TORCH_CLASSES:
            module, cls = _TORCH_CLASSES[algorithm]
        if self.name == "cuml" and gpu is not None:
            module, cls = gpu
            try:
                return getattr(importlib.import_module(module), cls)
            except ImportError as exc:
                raise MissingDependency(
                    f"the cuml backend needs cuML ({module}.{cls}): {GPU_INSTALL_HINT}"
                ) from exc
        # cuML lacks this algorithm (or we are on CPU): scikit-learn's implementation
        return getattr(importlib.import_module(module), cls)


def get_backend(name: BackendName = "auto") -> Backend:
    """Resolve ``auto`` | ``sklearn`` | ``cuml`` | ``torch`` to a :class:`Backend`.

    ``cuml`` or ``torch`` asked for explicitly and absent raises ``MissingDependency``
    (``torch`` runs on the CPU where there is no GPU); ``auto`` takes cuML, else torch on
    CUDA, else quietly falls back to scikit-learn.
    """
    if name == "sklearn":
        return Backend("sklearn")
    if name == "cuml":
        if importlib.util.find_spec("cuml") is None:
            raise MissingDependency(
                f"backend 'cuml' was requested but cuML is not installed: {GPU_INSTALL_HINT}"
            )
        return Backend("cuml")
    if name == "torch":
        if importlib.util.find_spec("torch") is None:
            raise MissingDependency(f"backend 'torch' was requested: {TORCH_INSTALL_HINT}")
        return Backend("torch")
    if name == "auto":
        if cuml_available():
            return Backend("cuml")
        return Backend("torch") if torch_cuda_available() else Backend("sklearn")
    raise ValueError(f"unknown backend {name!r}; expected 'auto', 'sklearn', 'cuml' or 'torch'")
