"""The one place that chooses the clustering engine: cuML on a GPU when present, else sklearn.

cuML is optional. Nothing here imports it at module import time; asking for the ``cuml``
backend where it is not installed raises :class:`~zhuge.errors.MissingDependency` naming the
extra to install. ``auto`` uses cuML only when it imports *and* a GPU is visible.
"""

from __future__ import annotations

import importlib
import importlib.util
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Literal

from zhuge.errors import MissingDependency

__all__ = ["Backend", "BackendName", "cuml_available", "get_backend"]

BackendName = Literal["auto", "sklearn", "cuml"]

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


@dataclass(frozen=True)
class Backend:
    """An engine that supplies estimator classes for algorithm names."""

    name: Literal["sklearn", "cuml"]

    def estimator_class(self, algorithm: str) -> type[Any]:
        try:
            cpu, gpu = _CLASSES[algorithm]
        except KeyError as exc:
            raise KeyError(f"no estimator class for algorithm {algorithm!r}") from exc
        module, cls = cpu
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
    """Resolve ``auto`` | ``sklearn`` | ``cuml`` to a :class:`Backend`.

    ``cuml`` asked for explicitly and absent raises ``MissingDependency``; ``auto`` quietly
    falls back to scikit-learn.
    """
    if name == "sklearn":
        return Backend("sklearn")
    if name == "cuml":
        if importlib.util.find_spec("cuml") is None:
            raise MissingDependency(
                f"backend 'cuml' was requested but cuML is not installed: {GPU_INSTALL_HINT}"
            )
        return Backend("cuml")
    if name == "auto":
        return Backend("cuml") if cuml_available() else Backend("sklearn")
    raise ValueError(f"unknown backend {name!r}; expected 'auto', 'sklearn' or 'cuml'")
