"""Declarative, saveable preprocessing for tables handed to clustering.

A :class:`PreprocessSpec` is plain data (JSON via ``to_dict``/``from_dict``/``load_spec``, the
file behind ``--preprocess SPEC.json``). :class:`Preprocessor` turns it into a fitted
scikit-learn ``ColumnTransformer`` (+ ``PCA``) and records, in ``description_``, what it did.

What ``"auto"`` decides, and how:

* **column kinds** — bool and numeric dtypes are *numeric*, except integer columns whose
  name ends in ``id`` and whose values are all distinct (identifiers: dropped). Datetimes are
  dropped (derive features such as hour or recency first). String/categorical columns with at
  most ``one_hot_max_levels`` distinct values are *categorical*; others are *text* when their
  values average at least 3 words, else dropped as identifier-like. Numeric columns that are
  entirely missing are dropped.
* **imputation** — missing numerics are filled by ``KNNImputer`` (on scaled values) up to
  ``KNN_IMPUTE_MAX_ROWS`` rows, by the median beyond (KNN imputation is quadratic).
* **scaling** — ``robust`` (median / IQR) when more than 2 % of numeric cells lie more than
  3 IQR outside their column's quartiles (Tukey's "far out"; such tails dominate a standard
  deviation), else ``standard``. Columns with zero IQR are not counted.
* **outliers** — IsolationForest flags outliers (``outlier_mask_``) from 100 rows up; they stay
  in the fit unless ``outliers="exclude"``.
* **PCA** — keeps 95 % of variance when the encoded table has 10 or more features.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.compose import ColumnTransformer
from sklearn.decomposition import PCA
from sklearn.ensemble import IsolationForest
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.impute import KNNImputer, SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, RobustScaler, StandardScaler
from sklearn.utils.validation import check_is_fitted, validate_data

from zhuge.errors import DataError

__all__ = ["PreprocessInputError", "PreprocessSpec", "Preprocessor", "load_spec", "resolve_columns"]

KNN_IMPUTE_MAX_ROWS = 50_000  # KNNImputer compares every row with every other
OUTLIER_MIN_ROWS = 100
HEAVY_TAIL_SHARE = 0.02  # of numeric cells beyond 3 IQR (Tukey's "far out"); bundled sets: <= 0.7 %
PCA_MIN_FEATURES = 10
PCA_VARIANCE = 0.95
TEXT_MIN_WORDS = 3.0

Auto = Literal["auto"]


@dataclass(frozen=True)
class PreprocessSpec:
    """What to do to a table; every ``"auto"`` is resolved at fit time (module docstring)."""

    numeric: list[str] | Auto = "auto"
    categorical: list[str] | Auto = "auto"
    text: list[str] | Auto = "auto"
    drop: list[str] = field(default_factory=list)
    impute: Literal["auto", "knn", "median", "none"] = "auto"
    knn_neighbors: int = 5
    outliers: Literal["auto", "flag", "exclude", "none"] = "auto"
    scaling: Literal["auto", "standard", "robust", "none"] = "auto"
    one_hot_max_levels: int = 20
    text_max_features: int = 100
    pca: float | int | Auto | None = "auto"
    random_state: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PreprocessSpec:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise PreprocessInputError(
                f"unknown preprocessing option(s) {unknown}; known: {sorted(known)}"
            )
        return cls(**data)


def load_spec(path: str | Path) -> PreprocessSpec:
    """Read a spec from a JSON file (``--preprocess SPEC.json``)."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise PreprocessInputError(f"cannot read preprocessing spec {path}: {exc}") from exc
    if not isinstance(data, dict):
        raise PreprocessInputError(f"preprocessing spec {path} must be a JSON object")
    return PreprocessSpec.from_dict(data)


class PreprocessInputError(DataError, ValueError):
    """Unusable input: a ``DataError`` for zhuge's API, a ``ValueError`` for scikit-learn's
    tooling (``check_estimator``)."""


def _as_frame(estimator: Preprocessor, X: Any, *, reset: bool) -> pd.DataFrame:
    """A DataFrame as given (columns keep their kinds), or an array checked the scikit-learn
    way (2-D, numeric, dense, no infinity, feature count as in fit) and named ``x0``, ``x1``..."""
    if isinstance(X, pd.DataFrame):
        return X
    try:
        arr = validate_data(
            estimator,
            X,
            reset=reset,
            ensure_all_finite="allow-nan",
            ensure_min_samples=2 if reset else 1,
        )
    except ValueError as exc:
        raise PreprocessInputError(str(exc)) from exc
    return pd.DataFrame(arr, columns=[f"x{i}" for i in range(arr.shape[1])])


def _extreme_share(values: np.ndarray) -> float:
    if values.size == 0:
        return 0.0
    q1, q3 = np.nanpercentile(values, [25, 75], axis=0)
    iqr = q3 - q1
    spread = iqr > 0
    if not spread.any():
        return 0.0
    v, lo, hi = values[:, spread], (q1 - 3 * iqr)[spread], (q3 + 3 * iqr)[spread]
    return float(np.mean((v < lo) | (v > hi)))


def _is_identifier(name: str, col: pd.Series) -> bool:
    return str(name).lower().endswith("id") and col.nunique(dropna=True) == len(col)


def _resolve_columns(
    frame: pd.DataFrame, spec: PreprocessSpec, notes: list[str]
) -> dict[str, list[str]]:
    cols = [str(c) for c in frame.columns]
    given = [
        c
        for key in ("numeric", "categorical", "text")
        if (v := getattr(spec, key)) != "auto"
        for c in v
    ]
    unknown = sorted(set(given + list(spec.drop)) - set(cols))
    if unknown:
        raise PreprocessInputError(f"unknown column name(s) {unknown}; the table has {cols}")
    taken = set(given) | set(spec.drop)
    kinds: dict[str, list[str]] = {"numeric": [], "categorical": [], "text": []}
    for key in kinds:
        if getattr(spec, key) != "auto":
            kinds[key] = list(getattr(spec, key))
    for name in cols:
        if name in taken:
            continue
        col = frame[name]
        if pd.api.types.is_bool_dtype(col) or pd.api.types.is_numeric_dtype(col):
            if pd.api.types.is_integer_dtype(col) and _is_identifier(name, col):
                notes.append(f"dropped {name}: identifier (all values distinct)")
            elif col.isna().all():
                notes.append(f"dropped {name}: every value is missing")
            elif spec.numeric == "auto":
                kinds["numeric"].append(name)
        elif pd.api.types.is_datetime64_any_dtype(col):
            notes.append(f"dropped {name}: datetime (derive features such as recency first)")
        else:
            levels = col.nunique(dropna=True)
            if levels <= spec.one_hot_max_levels:
                if spec.categorical == "auto":
                    kinds["categorical"].append(name)
            elif col.dropna().astype(str).str.split().str.len().mean() >= TEXT_MIN_WORDS:
                if spec.text == "auto":
                    kinds["text"].append(name)
            else:
                notes.append(f"dropped {name}: {levels} distinct short strings (identifier-like)")
    return kinds


def resolve_columns(
    frame: pd.DataFrame, spec: PreprocessSpec | None = None
) -> tuple[dict[str, list[str]], list[str]]:
    """What ``spec`` (default: all ``auto``) would use each column of ``frame`` as, without
    fitting anything: ``({"numeric": [...], "categorical": [...], "text": [...]}, notes)``.
    Cheap (one ``nunique`` per column), so a command can check a table before a job runs."""
    notes: list[str] = []
    kinds = _resolve_columns(frame, spec or PreprocessSpec(), notes)
    return kinds, notes


class Preprocessor(TransformerMixin, BaseEstimator):
    """Fit a :class:`PreprocessSpec` on a table; ``transform`` gives a dense float matrix.

    Learned: ``resolved_spec_`` (every ``auto`` replaced by the choice made),
    ``description_`` (one line per step), ``outlier_mask_`` (training rows flagged),
    ``column_transformer_``, ``pca_``, ``columns_``, ``n_features_in_`` (and
    ``feature_names_in_`` when fitted on a DataFrame). Arrays must be numeric; pass a
    DataFrame for categorical and text columns.
    """

    def __init__(self, *, spec: PreprocessSpec | dict[str, Any] | None = None) -> None:
        self.spec = spec

    def _spec(self) -> PreprocessSpec:
        if self.spec is None:
            return PreprocessSpec()
        if isinstance(self.spec, dict):
            return PreprocessSpec.from_dict(self.spec)
        return self.spec

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = True  # missing values are imputed
        return tags

    def fit(self, X: Any, y: Any = None) -> Preprocessor:
        self.fit_transform(X)
        return self

    def fit_transform(self, X: Any, y: Any = None, **_: Any) -> np.ndarray:
        spec = self._spec()
        frame = _as_frame(self, X, reset=True)
        if len(frame) == 0:
            raise PreprocessInputError("the table has no rows")
        if len(frame) == 1:
            raise PreprocessInputError(
                "the table has a single row; clustering needs at least 2 rows"
            )
        if frame.isna().all(axis=None):
            raise PreprocessInputError(
                f"all rows are missing: every value of all {len(frame)} rows is empty"
            )
        notes: list[str] = []
        kinds = _resolve_columns(frame, spec, notes)
        if not kinds["numeric"] and not kinds["categorical"] and not kinds["text"]:
            raise PreprocessInputError(
                f"no numeric columns (and no usable categorical or text column) in {list(frame.columns)}"
            )
        numeric = frame[kinds["numeric"]].apply(pd.to_numeric, errors="coerce").astype(float)
        used = pd.concat([numeric, frame[kinds["categorical"] + kinds["text"]]], axis=1)
        if used.isna().all(axis=None):
            raise PreprocessInputError(
                "all rows are missing: every value in the used columns is empty"
            )
        if not kinds["categorical"] and not kinds["text"] and numeric.isna().all(axis=1).all():
            raise PreprocessInputError("all rows are missing: no row has a single numeric value")

        n_missing = int(numeric.isna().sum().sum())
        impute = spec.impute
        if impute == "auto":
            impute = "knn" if len(frame) <= KNN_IMPUTE_MAX_ROWS else "median"
        scaling = spec.scaling
        if scaling == "auto":
            share = _extreme_share(numeric.to_numpy())
            scaling = "robust" if share > HEAVY_TAIL_SHARE else "standard"
            notes.append(f"scaling {scaling}: {share:.2%} of numeric cells lie beyond 3 IQR")

        self.column_transformer_ = self._column_transformer(kinds, spec, scaling, impute, n_missing)
        prepared = self._prepare(frame, kinds)
        matrix = self.column_transformer_.fit_transform(prepared)
        if n_missing:
            if impute == "none":
                raise PreprocessInputError(f"{n_missing} missing numeric values and impute='none'")
            notes.append(f"imputed {n_missing} missing numeric values ({impute})")

        outliers = spec.outliers
        if outliers == "auto":
            outliers = "flag" if len(frame) >= OUTLIER_MIN_ROWS else "none"
        self.outlier_mask_ = np.zeros(len(frame), dtype=bool)
        if outliers in ("flag", "exclude"):
            forest = IsolationForest(random_state=spec.random_state, n_estimators=100)
            self.outlier_mask_ = forest.fit_predict(matrix) == -1
            kept = "excluded from fitting" if outliers == "exclude" else "kept in fitting"
            notes.append(
                f"outliers: {int(self.outlier_mask_.sum())} rows flagged by IsolationForest ({kept})"
            )
            if (
                outliers == "exclude"
                and self.outlier_mask_.any()
                and (~self.outlier_mask_).sum() >= 2
            ):
                self.column_transformer_.fit(prepared[~self.outlier_mask_])
                matrix = self.column_transformer_.transform(prepared)

        pca = spec.pca
        if pca == "auto":
            pca = PCA_VARIANCE if matrix.shape[1] >= PCA_MIN_FEATURES else None
        self.pca_ = None
        if pca is not None and matrix.shape[1] > 1:
            fit_rows = matrix[~self.outlier_mask_] if outliers == "exclude" else matrix
            self.pca_ = PCA(n_components=pca, random_state=spec.random_state).fit(fit_rows)
            before = matrix.shape[1]
            matrix = self.pca_.transform(matrix)
            notes.append(f"PCA: {before} -> {matrix.shape[1]} components keep {pca} of variance")

        self.kinds_ = kinds
        self.columns_ = [str(c) for c in frame.columns]
        self.n_features_in_ = len(frame.columns)
        if isinstance(X, pd.DataFrame):
            self.feature_names_in_ = np.asarray(self.columns_, dtype=object)
        elif hasattr(self, "feature_names_in_"):
            del self.feature_names_in_  # refitted on an array: no names, as scikit-learn does
        self.resolved_spec_ = replace(
            spec,
            numeric=kinds["numeric"],
            categorical=kinds["categorical"],
            text=kinds["text"],
            impute=impute,
            scaling=scaling,
            outliers=outliers,
            pca=pca,
        ).to_dict()
        self.description_ = [
            f"numeric ({len(kinds['numeric'])}): {', '.join(kinds['numeric']) or '-'}; {scaling} scaling",
            f"categorical one-hot ({len(kinds['categorical'])}): {', '.join(kinds['categorical']) or '-'}",
            f"text TF-IDF ({len(kinds['text'])}): {', '.join(kinds['text']) or '-'}",
            *notes,
        ]
        return np.ascontiguousarray(matrix, dtype=np.float64)

    def transform(self, X: Any) -> np.ndarray:
        check_is_fitted(self, "column_transformer_")
        frame = _as_frame(self, X, reset=False)
        missing = [c for c in self.columns_ if c not in frame.columns.astype(str)]
        if missing:
            raise PreprocessInputError(
                f"columns {missing} seen in fit are missing from the new table"
            )
        frame.columns = frame.columns.astype(str)
        matrix = self.column_transformer_.transform(self._prepare(frame, self.kinds_))
        if self.pca_ is not None:
            matrix = self.pca_.transform(matrix)
        return np.ascontiguousarray(matrix, dtype=np.float64)

    @staticmethod
    def _prepare(frame: pd.DataFrame, kinds: dict[str, list[str]]) -> pd.DataFrame:
        out = pd.DataFrame(index=frame.index)
        for c in kinds["numeric"]:
            out[c] = pd.to_numeric(frame[c], errors="coerce").astype(float)
        for c in kinds["categorical"]:
            out[c] = frame[c].astype("string").fillna("<missing>").astype(object)
        for c in kinds["text"]:
            out[c] = frame[c].astype("string").fillna("").astype(object)
        return out

    @staticmethod
    def _column_transformer(
        kinds: dict[str, list[str]], spec: PreprocessSpec, scaling: str, impute: str, n_missing: int
    ) -> ColumnTransformer:
        parts: list[tuple[str, Any, Any]] = []
        if kinds["numeric"]:
            steps: list[tuple[str, Any]] = []
            if scaling == "standard":
                steps.append(("scale", StandardScaler()))
            elif scaling == "robust":
                steps.append(("scale", RobustScaler()))
            if n_missing and impute == "knn":
                steps.append(
                    ("impute", KNNImputer(n_neighbors=spec.knn_neighbors, keep_empty_features=True))
                )
            elif n_missing and impute == "median":
                steps.append(("impute", SimpleImputer(strategy="median", keep_empty_features=True)))
            parts.append(("numeric", Pipeline(steps) if steps else "passthrough", kinds["numeric"]))
        if kinds["categorical"]:
            encoder = OneHotEncoder(handle_unknown="ignore", sparse_output=False)
            parts.append(("categorical", encoder, kinds["categorical"]))
        for c in kinds["text"]:
            parts.append((f"text_{c}", TfidfVectorizer(max_features=spec.text_max_features), c))
        return ColumnTransformer(parts, sparse_threshold=0.0)
