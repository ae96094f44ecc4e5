"""Streaming MiniBatchKMeans over a Parquet file with bounded memory."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from zhuge.errors import DataError
from zhuge.ml.cluster.streaming import stream_minibatch_kmeans

ROWS, PAGE = 300_000, 50_000


@pytest.fixture(scope="module")
def blobs_file(tmp_path_factory):
    rng = np.random.default_rng(0)
    truth = rng.integers(0, 3, ROWS)
    centres = np.array([[0.0, 0.0, 0.0], [10.0, 10.0, 0.0], [0.0, 10.0, 10.0]])
    X = centres[truth] + rng.normal(size=(ROWS, 3))
    path = tmp_path_factory.mktemp("stream") / "in.parquet"
    table = pa.table(
        {"a": X[:, 0], "b": X[:, 1], "c": X[:, 2], "name": pa.array(np.arange(ROWS).astype(str))}
    )
    pq.write_table(table, path, row_group_size=PAGE)
    return path, truth


def _peak_numpy_bytes(path, out, page: int):
    tracemalloc.start()
    try:
        result = stream_minibatch_kmeans(path, out, n_clusters=3, batch_rows=page, epochs=1)
        return result, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_labels_in_input_order_with_bounded_memory(blobs_file, tmp_path) -> None:
    path, truth = blobs_file
    out = tmp_path / "labels.parquet"
    result, peak = _peak_numpy_bytes(path, out, PAGE)
    full_matrix = ROWS * 3 * 8
    assert peak < full_matrix, f"numpy peak {peak} bytes for a {full_matrix}-byte table"
    assert result.columns == ["a", "b", "c"] and result.pages == ROWS // PAGE
    labels = pq.read_table(out).column("cluster").to_numpy()
    assert len(labels) == ROWS
    # every true blob maps onto one cluster, row by row: labels are in input order
    for blob in range(3):
        assert len(np.unique(labels[truth == blob])) == 1
    assert sorted(result.cluster_sizes) == sorted(np.bincount(truth).tolist())
    # memory follows the page, not the file: a 5x smaller page needs far less
    _, small_peak = _peak_numpy_bytes(path, tmp_path / "small.parquet", PAGE // 5)
    assert small_peak < peak / 3 and small_peak < full_matrix / 5


def test_streaming_bad_input(blobs_file, tmp_path) -> None:
    path, _ = blobs_file
    with pytest.raises(DataError, match="unknown column"):
        stream_minibatch_kmeans(path, tmp_path / "o.parquet", n_clusters=3, columns=["zz"])
