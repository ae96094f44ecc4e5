"""Clustering a Parquet file larger than memory: MiniBatchKMeans over pages of rows.

Pass 1 streams pages (``pyarrow.parquet.ParquetFile.iter_batches``) to learn per-column mean
and standard deviation; pass 2 (``epochs`` times) feeds standardised pages to
``MiniBatchKMeans.partial_fit``; pass 3 assigns labels page by page and appends them to a
Parquet output, so labels are in input row order. Memory is bounded by one page, whatever the
file's size.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from sklearn.cluster import MiniBatchKMeans

from zhuge.ml.cluster._validation import ClusterInputError, check_k

__all__ = ["StreamingResult", "stream_minibatch_kmeans"]


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
) -> StreamingResult:
    """Fit MiniBatchKMeans on ``input_path`` page by page; write labels to ``output_path``."""
    pf = pq.ParquetFile(str(input_path))
    schema = pf.schema_arrow
    numeric = [
        f.name for f in schema if pa.types.is_integer(f.type) or pa.types.is_floating(f.type)
    ]
    if columns is None:
        columns = numeric
    unknown = [c for c in columns if c not in schema.names]
    if unknown:
        raise ClusterInputError(f"unknown column name(s) {unknown}; the file has {schema.names}")
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
    out_schema = pa.schema([(label_column, pa.int32())])
    with pq.ParquetWriter(str(output_path), out_schema) as writer:
        for page in _pages(pf, columns, batch_rows):
            scaled = (page - mean) / std
            labels = model.predict(scaled)
            inertia += float(np.square(scaled - model.cluster_centers_[labels]).sum())
            sizes += np.bincount(labels, minlength=n_clusters)
            writer.write_table(
                pa.table({label_column: pa.array(labels.astype(np.int32))}, schema=out_schema)
            )
            pages += 1
            peak = max(peak, pa.total_allocated_bytes())
    return StreamingResult(
        n_rows=n_rows,
        columns=columns,
        cluster_centers=model.cluster_centers_ * std + mean,
        cluster_sizes=sizes.tolist(),
        inertia_per_row=inertia / n_rows,
        pages=pages,
        output_path=str(output_path),
        peak_arrow_bytes=int(peak - base),
    )
