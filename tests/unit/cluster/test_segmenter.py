"""Segmenter: scikit-learn contract, bad input, save/load with hash verification."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pandas as pd
import pytest
from sklearn.base import BaseEstimator
from sklearn.datasets import make_blobs
from sklearn.utils.estimator_checks import check_estimator

from zhuge.errors import DataError, ModelNotFound
from zhuge.ml.cluster import Segmenter
from zhuge.ml.preprocess import Preprocessor

# The checks of scikit-learn's check_estimator that may be skipped here, each with its reason.
# Any other skip fails the test (a silent skip would hide a contract check that never ran).
ALLOWED_SKIPS = {
    # enables array API dispatch and compares results on NumPy input; it needs
    # SCIPY_ARRAY_API=1 set before scipy is first imported, which a test cannot do in-process
    "check_array_api_input": "SCIPY_ARRAY_API is not set",
}
# Checks known to fail, by name with the reason, passed to check_estimator: none.
EXPECTED_FAILED_CHECKS: dict[str, str] = {}


def assert_estimator_contract(estimator: BaseEstimator) -> None:
    """Every check of ``check_estimator`` passes, except the skips listed above."""
    results = check_estimator(
        estimator, expected_failed_checks=EXPECTED_FAILED_CHECKS, on_skip=None, on_fail=None
    )
    name = type(estimator).__name__
    failed = {r["check_name"]: repr(r["exception"]) for r in results if r["status"] == "failed"}
    assert not failed, f"{name} fails {failed}"
    skipped = {r["check_name"]: str(r["exception"]) for r in results if r["status"] == "skipped"}
    unexpected = {check: why for check, why in skipped.items() if check not in ALLOWED_SKIPS}
    assert not unexpected, f"{name}: checks skipped without a listed reason: {unexpected}"
    for check, why in skipped.items():
        assert ALLOWED_SKIPS[check] in why, f"{name}: {check} skipped for another reason: {why}"
    passed = [r for r in results if r["status"] == "passed"]
    assert len(passed) >= 40, f"{name}: only {len(passed)} checks ran"


def test_check_estimator_passes() -> None:
    # One candidate (fixed init) keeps the ~40 checks quick; the search has its own tests.
    seg = Segmenter(algorithm="kmeans", n_clusters=3, preprocess=None, params={"init": "k-means++"})
    assert_estimator_contract(seg)


@pytest.fixture(scope="module")
def blobs() -> tuple[np.ndarray, np.ndarray]:
    return make_blobs(n_samples=300, centers=4, n_features=3, random_state=1)


def test_auto_finds_blobs_and_explains(blobs) -> None:
    X, _ = blobs
    seg = Segmenter().fit(pd.DataFrame(X, columns=["a", "b", "c"]))
    assert seg.n_clusters_ == 4
    # four separated blobs: the separation index decides, and the reason says so
    assert seg.search_.decided_by == "dunn_owa"
    assert "separate their clusters cleanly" in seg.search_.reason
    assert len(seg.search_.candidates) > 10
    algorithms = {r.candidate.algorithm for r in seg.search_.candidates}
    assert algorithms >= {"genie", "hdbscan", "ward", "average", "kmeans", "gmm", "dbscan"}


@pytest.mark.parametrize(
    ("table", "message"),
    [
        (pd.DataFrame({"customer": [f"c{i}" for i in range(30)]}), "no numeric columns"),
        (pd.DataFrame({"a": [np.nan] * 5, "b": [np.nan] * 5}), "missing"),
        (pd.DataFrame({"a": [1.0], "b": [2.0]}), "single row"),
    ],
)
def test_bad_tables_raise_data_error(table, message) -> None:
    with pytest.raises(DataError, match=message):
        Segmenter().fit(table)


def test_k_larger_than_rows() -> None:
    with pytest.raises(DataError, match="larger than the number of rows"):
        Segmenter(algorithm="kmeans", n_clusters=10, preprocess=None).fit(np.eye(5))


def test_unknown_column_in_spec() -> None:
    table = pd.DataFrame({"a": range(10), "b": range(10)})
    with pytest.raises(DataError, match=r"unknown column name\(s\) \['nope'\]"):
        Segmenter(preprocess={"numeric": ["a", "nope"]}).fit(table)


def test_single_row_without_preprocessing_is_data_error() -> None:
    with pytest.raises(DataError, match="1 sample"):
        Segmenter(algorithm="kmeans", n_clusters=1, preprocess=None).fit(np.ones((1, 3)))


@pytest.mark.parametrize("algorithm", ["spectral", "genie", "ward", "average", "hdbscan"])
def test_algorithms_without_predict_label_new_rows_by_the_nearest_fitted_row(
    blobs, algorithm
) -> None:
    X, _ = blobs
    k = {"n_clusters": 4} if algorithm != "hdbscan" else {}
    seg = Segmenter(algorithm=algorithm, preprocess=None, **k).fit(X)
    assert seg.can_predict
    # rows slightly moved from fitted ones take those rows' labels
    moved = X[:40] + 0.01
    fitted = seg.labels_[:40]
    predicted = seg.predict(moved)
    keep = fitted >= 0
    assert (predicted[keep] == fitted[keep]).all()


def test_density_prediction_calls_far_away_rows_noise(blobs) -> None:
    X, _ = blobs
    seg = Segmenter(algorithm="hdbscan", preprocess=None).fit(X)
    far = X.max(axis=0) + 100.0
    assert seg.predict(np.vstack([far, -far])).tolist() == [-1, -1]


def test_predict_needs_only_the_columns_the_model_uses(blobs) -> None:
    """An identifier-like column preprocessing dropped (email) is not needed to predict; a
    used column missing is named, with the columns the model needs."""
    X, _ = blobs
    table = pd.DataFrame(X, columns=["a", "b", "c"])
    table["email"] = [f"user{i}@example.com" for i in range(len(table))]
    seg = Segmenter(algorithm="kmeans", n_clusters=4).fit(table)
    assert seg.required_columns == ["a", "b", "c"]
    assert (seg.predict(table[["a", "b", "c"]]) == seg.labels_).all()
    with pytest.raises(DataError) as err:
        seg.predict(table[["a", "c"]])
    assert "needs the columns ['a', 'b', 'c']" in str(err.value)
    assert "lacks ['b']" in str(err.value)


def test_save_load_round_trip_and_tamper_detection(tmp_path, blobs) -> None:
    X, _ = blobs
    frame = pd.DataFrame(X, columns=["a", "b", "c"])
    seg = Segmenter(algorithm="kmeans", n_clusters=4).fit(frame)
    url = f"file://{tmp_path}/seg"
    manifest = seg.save(url)
    assert manifest["metadata"]["n_clusters"] == 4
    loaded = Segmenter.load(url)
    np.testing.assert_array_equal(loaded.predict(frame), seg.predict(frame))

    payload = tmp_path / "seg" / "segmenter.joblib"
    data = bytearray(payload.read_bytes())
    data[len(data) // 2] ^= 0xFF
    payload.write_bytes(bytes(data))
    with pytest.raises(ModelNotFound, match="does not match its manifest hash"):
        Segmenter.load(url)


def test_check_estimator_with_auto_preprocessing_and_the_preprocessor_itself() -> None:
    seg = Segmenter(algorithm="kmeans", n_clusters=3, params={"init": "k-means++"})
    assert_estimator_contract(seg)
    assert_estimator_contract(Preprocessor())


def test_search_through_a_pool_map_fn_matches_the_serial_search(blobs) -> None:
    # across processes (Dask workers) this is tests/integration/cluster/test_tune_dask.py
    X = blobs[0][:120]
    fixed = {"algorithm": ["kmeans", "gmm"], "n_clusters": 4, "preprocess": None}
    serial = Segmenter(**fixed).fit(X)
    with ThreadPoolExecutor(max_workers=2) as pool:
        parallel = Segmenter(**fixed, map_fn=pool.map).fit(X)
    np.testing.assert_array_equal(parallel.labels_, serial.labels_)
    assert [r.scores for r in parallel.search_.candidates] == [
        r.scores for r in serial.search_.candidates
    ]
    assert {r.process for r in serial.search_.candidates} == {os.getpid()}


def test_save_leaves_out_the_map_fn(tmp_path, blobs) -> None:
    X, _ = blobs
    seg = Segmenter(
        algorithm="kmeans", n_clusters=4, preprocess=None, map_fn=lambda f, xs: map(f, xs)
    )
    seg.fit(X)  # a lambda cannot be pickled: saving works only because map_fn is not stored
    seg.save(f"file://{tmp_path}/seg")
    loaded = Segmenter.load(f"file://{tmp_path}/seg")
    assert loaded.map_fn is None and seg.map_fn is not None
    np.testing.assert_array_equal(loaded.predict(X), seg.labels_)
