"""``Segmenter``: preprocessing + algorithm search as one scikit-learn clusterer, saveable."""

from __future__ import annotations

import copy
import io
from collections.abc import Callable
from typing import Any

import joblib
import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, ClusterMixin
from sklearn.utils.validation import check_is_fitted, validate_data

from zhuge.artifacts import ArtifactDir
from zhuge.errors import DataError, ModelNotFound
from zhuge.ml.cluster._validation import ClusterInputError, as_matrix
from zhuge.ml.cluster.algorithms import ClusterResult, predict_labels
from zhuge.ml.cluster.backends import BackendName, get_backend
from zhuge.ml.cluster.planning import TIME_LIMIT_S, FitPlan, plan_fit
from zhuge.ml.cluster.search import (
    AUTO_ALGORITHMS,
    SearchOptions,
    SearchResult,
    search_clusterings,
)
from zhuge.ml.cluster.selection import SELECT_ROWS, k_max_for
from zhuge.ml.cluster.streaming import STREAMED_ARTIFACT_KIND, StreamedKMeans
from zhuge.ml.preprocess import Preprocessor, PreprocessSpec

__all__ = ["ARTIFACT_KIND", "Segmenter", "load_model"]

ARTIFACT_KIND = "zhuge.cluster.segmenter"
_PAYLOAD = "segmenter.joblib"


class Segmenter(ClusterMixin, BaseEstimator):
    """Segment rows of a table: prepare, search algorithms/parameters, keep the winner.

    Parameters (keyword-only):
        algorithm: ``"auto"``, one name (``kmeans``, ``minibatch_kmeans``, ``dbscan``,
            ``hdbscan``, ``gmm``, ``spectral``, ``genie``, ``ward``, ``average``) or a list
            of names to search among.
        n_clusters: fix k; ``None`` lets the gap statistic choose within ``k_range``.
        k_range: inclusive range of k searched.
        preprocess: ``"auto"``, a :class:`PreprocessSpec` / its dict, or ``None`` (input is
            already numeric and scaled).
        random_state: seed for every random choice.
        map_fn: ``Executor.map``-like callable used to evaluate candidates in parallel.
        max_search_rows: the largest sample the search looks at.
        params: fixed parameters merged into every candidate, e.g. ``{"n_init": 3}``.
        memory_limit_bytes: memory the fit may plan to use (``None``: 70 % of what is
            available when ``fit`` starts).
        time_limit_s: estimated seconds above which an algorithm is switched or refused.
        backend: clustering engine, ``"auto"`` (cuML, else torch k-means on CUDA, else
            scikit-learn), ``"sklearn"``, ``"cuml"`` or ``"torch"``; see
            :mod:`zhuge.ml.cluster.backends`. ``notes_`` says which engine fitted the winner.

    Before any fit, the algorithms are planned (:func:`~zhuge.ml.cluster.planning.plan_fit`)
    on the prepared matrix's shape: a named algorithm that would not fit the limits raises a
    ``DataError`` saying what to do instead (or KMeans becomes MiniBatchKMeans, with a note);
    under ``"auto"`` such algorithms are left out, with a note.

    Learned: ``labels_``, ``n_clusters_``, ``result_`` (:class:`ClusterResult`),
    ``search_`` (:class:`SearchResult`: every candidate and why the winner won),
    ``plan_`` (:class:`FitPlan`), ``notes_`` (what planning and the search changed),
    ``preprocessor_``, ``cluster_centers_`` (k-means family), ``n_features_in_``.
    """

    def __init__(
        self,
        *,
        algorithm: str | list[str] = "auto",
        n_clusters: int | None = None,
        k_range: tuple[int, int] = (2, 10),
        preprocess: str | PreprocessSpec | dict[str, Any] | None = "auto",
        random_state: int = 0,
        map_fn: Callable[..., Any] | None = None,
        max_search_rows: int = 20_000,
        params: dict[str, Any] | None = None,
        memory_limit_bytes: int | None = None,
        time_limit_s: float = TIME_LIMIT_S,
        backend: BackendName = "auto",
    ) -> None:
        self.algorithm = algorithm
        self.n_clusters = n_clusters
        self.k_range = k_range
        self.preprocess = preprocess
        self.random_state = random_state
        self.map_fn = map_fn
        self.max_search_rows = max_search_rows
        self.params = params
        self.memory_limit_bytes = memory_limit_bytes
        self.time_limit_s = time_limit_s
        self.backend = backend

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = self.preprocess is not None
        tags.non_deterministic = False
        return tags

    # -- fitting -----------------------------------------------------------------------

    def _prepare_fit(self, X: Any) -> np.ndarray:
        if self.preprocess is None:
            try:
                validated = validate_data(self, X, reset=True, ensure_min_samples=2)
            except ValueError as exc:  # keep scikit-learn's message, raise it as a DataError
                raise ClusterInputError(str(exc)) from exc
            self.preprocessor_ = None
            return as_matrix(validated, known_finite=True)
        spec = None if self.preprocess == "auto" else self.preprocess
        if isinstance(self.preprocess, str) and self.preprocess != "auto":
            raise ClusterInputError(
                f"preprocess must be 'auto', a spec or None, not {self.preprocess!r}"
            )
        self.preprocessor_ = Preprocessor(spec=spec)
        try:
            matrix = self.preprocessor_.fit_transform(X)
        except DataError as exc:
            raise ClusterInputError(exc.message) from exc
        self.n_features_in_ = self.preprocessor_.n_features_in_
        if isinstance(X, pd.DataFrame):
            self.feature_names_in_ = self.preprocessor_.feature_names_in_
        return as_matrix(matrix, what="prepared table")

    def fit(self, X: Any, y: Any = None) -> Segmenter:
        get_backend(self.backend)  # an unknown or uninstalled engine fails before any work
        matrix = self._prepare_fit(X)
        self.plan_: FitPlan = self._plan(matrix.shape)
        options = SearchOptions(
            algorithms=self.plan_.algorithms,
            auto=self.algorithm == "auto",
            n_clusters=self.n_clusters,
            k_range=tuple(self.k_range),
            random_state=self.random_state,
            max_search_rows=self.max_search_rows,
            params=dict(self.params or {}),
            backend=self.backend,
        )
        self.search_: SearchResult = search_clusterings(matrix, options, map_fn=self.map_fn)
        self.result_: ClusterResult = self.search_.winner
        self.labels_ = self.result_.labels
        self.n_clusters_ = self.result_.n_clusters
        self.notes_ = [*self.plan_.notes, *self.search_.notes]
        centers = getattr(self.result_.model, "cluster_centers_", None)
        if centers is not None:
            self.cluster_centers_ = np.asarray(centers)
        return self

    def _plan(self, shape: tuple[int, int]) -> FitPlan:
        if self.algorithm == "auto":
            names: list[str] = list(AUTO_ALGORITHMS)
        elif isinstance(self.algorithm, str):
            names = [self.algorithm]
        else:
            names = list(self.algorithm)
        k = self.n_clusters or int(self.k_range[1])
        if self.algorithm == "auto" and self.n_clusters is None:
            # auto's final fit may have as many clusters as its search reaches
            k = max(k, k_max_for(min(shape[0], SELECT_ROWS)))
        return plan_fit(
            shape[0],
            shape[1],
            names,
            k=k,
            explicit=self.algorithm != "auto",
            memory_limit_bytes=self.memory_limit_bytes,
            time_limit_s=self.time_limit_s,
        )

    @property
    def required_columns(self) -> list[str] | None:
        """The input columns the model uses (``None``: fitted on an array, by position).
        Columns preprocessing dropped (identifiers, datetimes, empty ones) are not needed."""
        check_is_fitted(self, "result_")
        if self.preprocessor_ is None:
            names = getattr(self, "feature_names_in_", None)
            return None if names is None else [str(c) for c in names]
        kinds = self.preprocessor_.kinds_
        used = {*kinds["numeric"], *kinds["categorical"], *kinds["text"]}
        return [c for c in self.preprocessor_.columns_ if c in used]

    def _transform_new(self, X: Any) -> np.ndarray:
        check_is_fitted(self, "result_")
        if self.preprocessor_ is not None and isinstance(X, pd.DataFrame):
            X = self._with_fitted_columns(X)
        if self.preprocessor_ is None:
            try:
                validated = validate_data(self, X, reset=False)
            except ValueError as exc:
                raise ClusterInputError(str(exc)) from exc
            return as_matrix(validated, min_rows=1)
        try:
            return as_matrix(self.preprocessor_.transform(X), what="prepared table", min_rows=1)
        except DataError as exc:
            raise ClusterInputError(exc.message) from exc

    def _with_fitted_columns(self, frame: pd.DataFrame) -> pd.DataFrame:
        """``frame`` with the fitted column layout: a used column it lacks is an error naming
        what the model needs; a column preprocessing dropped may be absent (filled empty)."""
        frame = frame.copy()
        frame.columns = [str(c) for c in frame.columns]
        needed = self.required_columns or []
        lacking = [c for c in needed if c not in frame.columns]
        if lacking:
            raise ClusterInputError(
                f"the model needs the columns {needed}; the new table lacks {lacking} "
                f"(it has {list(frame.columns)})"
            )
        for c in self.preprocessor_.columns_:
            if c not in frame.columns:
                frame[c] = pd.NA  # dropped when the model was fitted: never read
        return frame[self.preprocessor_.columns_]

    def predict(self, X: Any) -> np.ndarray:
        """Assign new rows: k-means and mixtures by their own ``predict``, the other
        algorithms by the nearest fitted row (see :mod:`zhuge.ml.cluster.algorithms`)."""
        check_is_fitted(self, "result_")
        return predict_labels(self.result_, self._transform_new(X))

    @property
    def can_predict(self) -> bool:
        check_is_fitted(self, "result_")
        return self.result_.can_predict

    # -- persistence -------------------------------------------------------------------

    def summary(self) -> dict[str, Any]:
        check_is_fitted(self, "result_")
        return {
            "algorithm": self.result_.algorithm,
            "params": self.result_.params,
            "n_clusters": int(self.n_clusters_),
            "can_predict": self.result_.can_predict,
            "reason": self.search_.reason,
            "notes": list(self.notes_),
            "preprocessing": self.preprocessor_.description_ if self.preprocessor_ else [],
        }

    def save(self, url: str, *, metadata: dict[str, Any] | None = None) -> dict[str, Any]:
        """Write the fitted segmenter under ``url`` with a hashed manifest; return the manifest.
        ``metadata`` (e.g. which columns and template fed it) is stored in the manifest too."""
        check_is_fitted(self, "result_")
        stored = copy.copy(self)
        stored.map_fn = None  # a job's ctx.map is bound to that job: not part of the model
        buf = io.BytesIO()
        joblib.dump(stored, buf)
        return ArtifactDir(url).save(
            {_PAYLOAD: buf.getvalue()},
            kind=ARTIFACT_KIND,
            libraries=["scikit-learn", "numpy", "joblib", "pandas"],
            metadata=_jsonable({**self.summary(), **(metadata or {})}),
        )

    @classmethod
    def load(cls, url: str) -> Segmenter:
        """Load a segmenter saved by :meth:`save`, verifying the manifest hash first."""
        _, files = ArtifactDir(url).load(kind=ARTIFACT_KIND)
        # The payload's SHA-256 was checked against the manifest above before unpickling.
        model = joblib.load(io.BytesIO(files[_PAYLOAD]))
        if not isinstance(model, cls):
            raise ModelNotFound(f"artifact at {url} does not hold a Segmenter")
        return model


def load_model(url: str) -> Segmenter | StreamedKMeans:
    """A saved clustering model of either kind (its manifest says which), hash-verified."""
    folder = ArtifactDir(url)
    if not folder.exists("manifest.json"):
        raise ModelNotFound(f"no saved clustering model at {url} (no manifest.json)")
    kind = folder.read_json("manifest.json").get("kind")
    if kind == STREAMED_ARTIFACT_KIND:
        return StreamedKMeans.load(url)
    if kind == ARTIFACT_KIND:
        return Segmenter.load(url)
    raise ModelNotFound(f"artifact at {url} is a {kind!r}, not a clustering model")


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.generic):
        return obj.item()
    return obj if isinstance(obj, str | int | float | bool | type(None)) else repr(obj)
