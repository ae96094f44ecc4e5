"""Streaming MiniBatchKMeans over a Parquet file with bounded memory, measured where the
memory is: numpy's buffers (tracemalloc) and Arrow's (its memory pool), against a bound that
the same file read whole breaks."""

from __future__ import annotations

import tracemalloc
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from zhuge.errors import DataError
from zhuge.ml.cluster.streaming import StreamingResult, stream_minibatch_kmeans

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


@dataclass
class Peaks:
    numpy: int = 0  # largest traced Python allocation (numpy's buffers are traced)
    arrow: int = 0  # largest Arrow allocation (pages, decoded columns): tracemalloc misses them

    @property
    def at_most(self) -> int:
        """Bound on the true joint peak from above (the two peaks may not coincide)."""
        return self.numpy + self.arrow

    @property
    def at_least(self) -> int:
        """Bound on the true joint peak from below."""
        return max(self.numpy, self.arrow)


# A proxy pool must outlive every buffer it allocated: keep them for the session.
_POOLS: list[pa.MemoryPool] = []


@contextmanager
def measured() -> Iterator[Peaks]:
    """Peak memory of the block: numpy through tracemalloc, Arrow through a proxy of the
    default pool installed for the block (the Parquet reader takes the default pool)."""
    peaks = Peaks()
    pool = pa.proxy_memory_pool(pa.default_memory_pool())
    _POOLS.append(pool)
    previous = pa.default_memory_pool()
    pa.set_memory_pool(pool)
    tracing = tracemalloc.is_tracing()  # started by someone else (python -X tracemalloc)
    if tracing:
        tracemalloc.reset_peak()
    else:
        tracemalloc.start()
    try:
        yield peaks
        peaks.numpy = tracemalloc.get_traced_memory()[1]
        peaks.arrow = pool.max_memory()
    finally:
        if not tracing:
            tracemalloc.stop()
        pa.set_memory_pool(previous)


def _cluster(path, out, page: int) -> tuple[StreamingResult, Peaks]:
    with measured() as peaks:
        result = stream_minibatch_kmeans(path, out, n_clusters=3, batch_rows=page, epochs=1)
    return result, peaks


def test_labels_in_input_order_with_bounded_memory(blobs_file, tmp_path) -> None:
    path, truth = blobs_file
    out = tmp_path / "labels.parquet"
    result, peaks = _cluster(path, out, PAGE)
    assert result.columns == ["a", "b", "c"] and result.pages == ROWS // PAGE
    labels = pq.read_table(out).column("cluster").to_numpy()
    assert len(labels) == ROWS
    # every true blob maps onto one cluster, row by row: labels are in input order
    for blob in range(3):
        assert len(np.unique(labels[truth == blob])) == 1
    assert sorted(result.cluster_sizes) == sorted(np.bincount(truth).tolist())

    # The bound: twice the table as float64. Measured (pyarrow 26, numpy 2.4): pages of 50,000
    # rows peak at 5.5 MB numpy + 4.3 MB Arrow; the same run reading the file as one page at
    # 31 MB numpy and 13 MB Arrow.
    bound = 2 * ROWS * 3 * 8
    assert peaks.at_most < bound, f"streamed: {peaks} for a bound of {bound} bytes"
    # ...which a run that does not stream breaks: the bound can fail
    _, whole_file = _cluster(path, tmp_path / "whole.parquet", ROWS)
    assert whole_file.at_least > bound, f"one page of the whole file: {whole_file}"
    # and the meter sees Arrow's buffers: reading the three columns whole takes the table
    with measured() as plain_read:
        pq.read_table(path, columns=["a", "b", "c"])
    assert plain_read.arrow >= ROWS * 3 * 8

    # memory follows the page, not the file: a 5x smaller page needs far less
    _, small = _cluster(path, tmp_path / "small.parquet", PAGE // 5)
    assert small.at_most < peaks.at_most / 2, (small, peaks)


def test_streaming_bad_input(blobs_file, tmp_path) -> None:
    path, _ = blobs_file
    with pytest.raises(DataError, match="unknown column"):
        stream_minibatch_kmeans(path, tmp_path / "o.parquet", n_clusters=3, columns=["zz"])
