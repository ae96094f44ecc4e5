"""Clustering a Parquet file larger than memory: MiniBatchKMeans over pages of rows.

Pass 1 streams pages (``pyarrow.parquet.ParquetFile.iter_batches``) to learn per-column mean
and standard deviation; pass 2 (``epochs`` times) feeds standardised pages to
``MiniBatchKMeans.partial_fit``; pass 3 assigns labels page by page and appends them to a
Parquet output, so labels are in input row order (with the input's id column beside them when
one is named). Memory is bounded by one page, whatever the file's size.

The fitted scaling + centres are a :class:`StreamedKMeans`: it labels new tables and is saved
like a :class:`~zhuge.ml.cluster.Segmenter` (hashed manifest), so ``cluster predict`` works on
either. :func:`sample_parquet` draws a uniform row sample page by page (to choose k first).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import fsspec
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from sklearn.cluster import MiniBatchKMeans

from zhuge.artifacts import ArtifactDir
from zhuge.errors import ModelNotFound
from zhuge.ml.cluster._validation import ClusterInputError, check_k

__all__ = [
    "STREAMED_ARTIFACT_KIND",
    "StreamedKMeans",
    "StreamingResult",
    "numeric_columns",
    "sample_parquet",
    "stream_minibatch_kmeans",
]

STREAMED_ARTIFACT_KIND = "zhuge.cluster.streamed-kmeans"
_STREAMED_FILE = "streamed_kmeans.json"


@dataclass(frozen=True)
class StreamedKMeans:
    """Standardise ``columns`` with ``mean``/``std``, then the nearest of ``centers`` (scaled)."""

    columns: list[str]
    mean: np.ndarray
    std: np.ndarray
    centers: np.ndarray  # in scaled units

    can_predict = True

    @property
    def n_clusters(self) -> int:
        return len(self.centers)

    def predict(self, table: pd.DataFrame | np.ndarray) -> np.ndarray:
        if isinstance(table, pd.DataFrame):
            missing = [c for c in self.columns if c not in table.columns]
            if missing:
                raise ClusterInputError(
                    f"columns {missing} seen in fit are missing from the new table"
                )
            table = table[self.columns].to_numpy(dtype=np.float64)
        page = np.asarray(table, dtype=np.float64)
        if not np.isfinite(page).all():
            raise ClusterInputError("the new table has missing or infinite values; clean it first")
        scaled = (page - self.mean) / self.std
        distances = (
            np.square(scaled).sum(axis=1)[:, None]
            - 2 * scaled @ self.centers.T
            + np.square(self.centers).sum(axis=1)[None, :]
        )
        return distances.argmin(axis=1).astype(np.int64)

    def summary(self) -> dict[str, Any]:
        return {
            "algorithm": "minibatch_kmeans",
            "n_clusters": self.n_clusters,
            "can_predict": True,
            "streamed": True,
            "columns": self.columns,
        }

    def save(self, url: str, *, metadata: dict[str, Any] | None = None) -> dict[str, Any]:
        doc = {
            "columns": self.columns,
            "mean": self.mean.tolist(),
            "std": self.std.tolist(),
            "centers": self.centers.tolist(),
        }
        return ArtifactDir(url).save(
            {_STREAMED_FILE: json.dumps(doc).encode()},
            kind=STREAMED_ARTIFACT_KIND,
            libraries=["scikit-learn", "numpy", "pyarrow"],
            metadata={**self.summary(), **(metadata or {})},
        )

    @classmethod
    def load(cls, url: str) -> StreamedKMeans:
        _, files = ArtifactDir(url).load(kind=STREAMED_ARTIFACT_KIND)
        try:
            doc = json.loads(files[_STREAMED_FILE])
            return cls(
                list(doc["columns"]),
                np.asarray(doc["mean"], dtype=np.float64),
                np.asarray(doc["std"], dtype=np.float64),
                np.asarray(doc["centers"], dtype=np.float64),
            )
        except (KeyError, ValueError, TypeError) as exc:
            raise ModelNotFound(f"artifact at {url} holds no usable streamed model: {exc}") from exc


def _is_local(fs: fsspec.AbstractFileSystem) -> bool:
    protocols = (fs.protocol,) if isinstance(fs.protocol, str) else fs.protocol
    return "file" in protocols


def _open_parquet(url: str | Path) -> pq.ParquetFile:
    """A local path or any fsspec URL, opened for page-by-page reading."""
    fs, path = fsspec.core.url_to_fs(str(url))
    if not fs.exists(path):
        raise ClusterInputError(f"input {url} does not exist")
    try:
        # local files through Arrow's own reader: pages are read without Python buffers
        return pq.ParquetFile(path if _is_local(fs) else fs.open(path, "rb"))
    except (pa.ArrowException, OSError) as exc:
        raise ClusterInputError(f"input {url} is not a readable Parquet file: {exc}") from exc


def numeric_columns(path: str | Path) -> list[str]:
    """Integer and floating columns of a Parquet file, from its schema (no data read)."""
    schema = _open_parquet(path).schema_arrow
    return [f.name for f in schema if pa.types.is_integer(f.type) or pa.types.is_floating(f.type)]


def sample_parquet(
    path: str | Path,
    columns: Sequence[str],
    rows: int,
    *,
    batch_rows: int = 100_000,
    random_state: int = 0,
) -> np.ndarray:
    """About ``rows`` uniformly drawn rows of ``columns``, reading one page at a time."""
    pf = _open_parquet(path)
    share = min(1.0, rows / max(pf.metadata.num_rows, 1))
    rng = np.random.default_rng(random_state)
    parts = [page[rng.random(len(page)) < share] for page in _pages(pf, list(columns), batch_rows)]
    return np.concatenate(parts) if parts else np.empty((0, len(columns)))


@dataclass(frozen=True)
class StreamingResult:
    n_rows: int
    columns: list[str]
    cluster_centers: np.ndarray  # in original units
    cluster_sizes: list[int]
    inertia_per_row: float
    pages: int
    output_path: str
    peak_arrow_bytes: int  # largest Arrow allocation seen between pages, over the start
    model: StreamedKMeans
    column_means: np.ndarray  # overall, in original units


def _pages(pf: pq.ParquetFile, columns: list[str], batch_rows: int) -> Iterator[np.ndarray]:
    for batch in pf.iter_batches(batch_size=batch_rows, columns=columns, use_threads=False):
        page = np.column_stack(
            [batch.column(i).to_numpy(zero_copy_only=False) for i in range(len(columns))]
        ).astype(np.float64, copy=False)
        if not np.isfinite(page).all():
            raise ClusterInputError(
                "streaming input contains missing or infinite values; clean it first"
            )
        yield page


def stream_minibatch_kmeans(
    input_path: str | Path,
    output_path: str | Path,
    *,
    n_clusters: int,
    columns: Sequence[str] | None = None,
    batch_rows: int = 100_000,
    epochs: int = 2,
    standardize: bool = True,
    random_state: int = 0,
    label_column: str = "cluster",
    id_column: str | None = None,
) -> StreamingResult:
    """Fit MiniBatchKMeans on ``input_path`` page by page; write labels to ``output_path``
    (with ``id_column`` copied beside them when given). Both are paths or fsspec URLs."""
    pf = _open_parquet(input_path)
    schema = pf.schema_arrow
    numeric = numeric_columns(input_path)
    if columns is None:
        columns = [c for c in numeric if c != id_column]
    unknown = [c for c in [*columns, *([id_column] if id_column else [])] if c not in schema.names]
    if unknown:
        raise ClusterInputError(f"unknown column name(s) {unknown}; the file has {schema.names}")
    not_numeric = [c for c in columns if c not in numeric]
    if not_numeric:
        raise ClusterInputError(
            f"column(s) {not_numeric} are not numeric; streaming clusters numeric columns only"
        )
    if not columns:
        raise ClusterInputError(f"no numeric columns in {input_path}")
    columns = list(columns)
    n_rows = pf.metadata.num_rows
    check_k(n_clusters, n_rows)
    base = pa.total_allocated_bytes()
    peak = base

    total = np.zeros(len(columns))
    total_sq = np.zeros(len(columns))
    for page in _pages(pf, columns, batch_rows):
        total += page.sum(axis=0)
        total_sq += np.square(page).sum(axis=0)
        peak = max(peak, pa.total_allocated_bytes())
    mean = total / n_rows if standardize else np.zeros(len(columns))
    std = (
        np.sqrt(np.maximum(total_sq / n_rows - mean**2, 0.0))
        if standardize
        else np.ones(len(columns))
    )
    std[std == 0] = 1.0

    model = MiniBatchKMeans(
        n_clusters=n_clusters, batch_size=min(batch_rows, 4096), random_state=random_state, n_init=3
    )
    for _ in range(epochs):
        for page in _pages(pf, columns, batch_rows):
            scaled = (page - mean) / std
            if len(scaled) >= n_clusters:
                model.partial_fit(scaled)
            peak = max(peak, pa.total_allocated_bytes())

    sizes = np.zeros(n_clusters, dtype=np.int64)
    inertia = 0.0
    pages = 0
    fields = [(label_column, pa.int32())]
    if id_column:
        fields.insert(0, (id_column, schema.field(id_column).type))
    out_schema = pa.schema(fields)
    ids = (
        pf.iter_batches(batch_size=batch_rows, columns=[id_column], use_threads=False)
        if id_column
        else None
    )
    out_fs, out_path = fsspec.core.url_to_fs(str(output_path))
    sink = out_path if _is_local(out_fs) else out_fs.open(out_path, "wb")
    with pq.ParquetWriter(sink, out_schema) as writer:
        for page in _pages(pf, columns, batch_rows):
            scaled = (page - mean) / std
            labels = model.predict(scaled)
            inertia += float(np.square(scaled - model.cluster_centers_[labels]).sum())
            sizes += np.bincount(labels, minlength=n_clusters)
            arrays = {label_column: pa.array(labels.astype(np.int32))}
            if ids is not None:
                arrays = {id_column: next(ids).column(0), **arrays}
            writer.write_table(pa.table(arrays, schema=out_schema))
            pages += 1
            peak = max(peak, pa.total_allocated_bytes())
    if not isinstance(sink, str):
        sink.close()
    streamed = StreamedKMeans(columns, mean, std, np.asarray(model.cluster_centers_))
    return StreamingResult(
        n_rows=n_rows,
        columns=columns,
        cluster_centers=model.cluster_centers_ * std + mean,
        cluster_sizes=sizes.tolist(),
        inertia_per_row=inertia / n_rows,
        pages=pages,
        output_path=str(output_path),
        peak_arrow_bytes=int(peak - base),
        model=streamed,
        column_means=total / n_rows,
    )
