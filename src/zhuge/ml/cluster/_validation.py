"""Input checks shared by the clustering modules: bad input becomes a clear ``DataError``."""

from __future__ import annotations

from typing import Any

import numpy as np

from zhuge.errors import DataError

__all__ = ["ClusterInputError", "as_matrix", "check_k"]


class ClusterInputError(DataError, ValueError):
    """A :class:`~zhuge.errors.DataError` that is also a ``ValueError``.

    scikit-learn's tooling (``check_estimator``, ``GridSearchCV(error_score=...)``) recognises
    bad input by ``ValueError``; zhuge's API maps ``DataError`` to a 422. This is both.
    """


def as_matrix(
    X: Any, *, what: str = "input", min_rows: int = 2, known_finite: bool = False
) -> np.ndarray:
    """A finite 2-D float64 array of at least ``min_rows`` rows (2 to fit, 1 to predict).
    ``known_finite``: already checked (by ``validate_data``); skip the pass over every value."""
    try:
        arr = np.asarray(X, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ClusterInputError(f"{what} is not numeric: {exc}") from exc
    if arr.ndim == 1:
        raise ClusterInputError(
            f"{what} is 1-D with shape {arr.shape}; expected a 2-D table (rows x columns); "
            "reshape a single feature with X.reshape(-1, 1)"
        )
    if arr.ndim != 2:
        raise ClusterInputError(f"{what} must be 2-D, got {arr.ndim} dimensions")
    if arr.shape[1] == 0:
        raise ClusterInputError(
            f"{what} has 0 feature(s) (shape {arr.shape}); need at least one numeric column"
        )
    if arr.shape[0] == 0:
        raise ClusterInputError(f"{what} has 0 sample(s) (shape {arr.shape}); need at least 2 rows")
    if arr.shape[0] == 1 and min_rows > 1:
        raise ClusterInputError(
            f"{what} has 1 sample (n_samples = 1); clustering needs at least 2 rows"
        )
    if not known_finite and not np.isfinite(arr).all():
        if np.isnan(arr).all(axis=1).all():
            raise ClusterInputError(f"{what}: all rows are missing (every value is NaN)")
        raise ClusterInputError(
            f"{what} contains NaN or infinity; impute first (preprocess='auto' does KNN imputation)"
        )
    return arr


def check_k(k: int, n_rows: int) -> None:
    if not isinstance(k, int | np.integer) or k < 1:
        raise ClusterInputError(f"number of clusters must be a positive integer, got {k!r}")
    if k > n_rows:
        raise ClusterInputError(
            f"n_clusters={k} is larger than the number of rows ({n_rows}); "
            f"ask for at most {n_rows} clusters"
        )
