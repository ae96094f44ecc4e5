"""Load bands: the classification target (``target="bucket"``), like Resource Central's
P95-CPU buckets. Edges ``[0, 25, 50, 75, 100]`` make bands ``0-25``, ``25-50``, ... ; values
below the first edge fall in the first band and above the last edge in the last band.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["DEFAULT_EDGES", "assign_buckets", "bucket_labels"]

DEFAULT_EDGES: tuple[float, ...] = (0.0, 25.0, 50.0, 75.0, 100.0)


def assign_buckets(values: np.ndarray, edges: Sequence[float]) -> np.ndarray:
    """Band index (0 .. len(edges)-2) of each value; -1 where the value is NaN."""
    edges = np.asarray(edges, dtype=np.float64)
    idx = np.clip(np.searchsorted(edges, values, side="right") - 1, 0, len(edges) - 2)
    return np.where(np.isnan(values), -1, idx)


def bucket_labels(edges: Sequence[float]) -> list[str]:
    return [f"{edges[i]:g}-{edges[i + 1]:g}" for i in range(len(edges) - 1)]
