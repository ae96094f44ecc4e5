"""Clustering and segmentation: algorithms, automatic search, planning, streaming, profiles.

Pure: imports nothing from the platform layers (jobs, api, cli).
"""

from zhuge.ml.cluster._validation import ClusterInputError
from zhuge.ml.cluster.algorithms import ALGORITHMS, ClusterResult, fit_algorithm, predict_labels
from zhuge.ml.cluster.backends import Backend, get_backend
from zhuge.ml.cluster.model import Segmenter
from zhuge.ml.cluster.search import SearchOptions, SearchResult, search_clusterings

__all__ = [
    "ALGORITHMS",
    "Backend",
    "ClusterInputError",
    "ClusterResult",
    "SearchOptions",
    "SearchResult",
    "Segmenter",
    "fit_algorithm",
    "get_backend",
    "predict_labels",
    "search_clusterings",
]
