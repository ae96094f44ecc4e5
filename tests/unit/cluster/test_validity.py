"""The indices ``auto`` trusts (DBCV, DuNN-OWA) and its search bounds, on small fixed data."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.datasets import make_blobs

from zhuge.errors import DataError
from zhuge.jobs.cluster.params import ClusterParams
from zhuge.ml.cluster.battery import battery
from zhuge.ml.cluster.selection import k_max_for, knee_eps
from zhuge.ml.cluster.validity import dbcv, dunn_owa


@pytest.fixture(scope="module")
def rings() -> tuple[np.ndarray, np.ndarray]:
    s = next(s for s in battery(("rings",)) if s.name == "rings_2")
    return s.X, s.y


def test_dbcv_prefers_the_true_rings_to_a_straight_cut(rings) -> None:
    X, y = rings
    cut = (X[:, 0] > 0).astype(int)  # what a convex method does to two nested rings
    assert dbcv(X, y) > 0.3 > dbcv(X, cut)


def test_dbcv_counts_noise_rows_as_zero(rings) -> None:
    X, y = rings
    noisy = y.copy()
    noisy[::4] = -1  # a quarter of the rows called noise
    assert dbcv(X, noisy) < dbcv(X, y)


def test_dunn_owa_is_infinite_only_when_no_near_neighbour_crosses(rings) -> None:
    X, y = rings
    assert dunn_owa(X, y) == math.inf
    assert math.isfinite(dunn_owa(X, (X[:, 0] > 0).astype(int)))
    assert math.isnan(dunn_owa(X, np.zeros(len(X), int)))  # one cluster: undefined


def test_k_max_reaches_40_clusters_on_800_rows_and_is_bounded() -> None:
    assert k_max_for(800) == 40
    assert k_max_for(100) == 14
    assert k_max_for(10**6) == 50
    assert k_max_for(8) == 7  # never more clusters than rows - 1


def test_knee_eps_lies_between_within_and_between_blob_distances() -> None:
    X, _ = make_blobs(600, centers=[[0, 0], [20, 0]], cluster_std=1.0, random_state=0)
    eps = knee_eps(X, 5)
    assert 0.1 < eps < 5.0


@pytest.mark.parametrize("name", ["genie", "ward", "average", "minibatch-kmeans"])
def test_new_algorithm_names_are_accepted(name) -> None:
    assert ClusterParams(input="t.csv", algorithm=name).algorithm == name.replace("-", "_")


def test_unknown_algorithm_names_the_choices() -> None:
    with pytest.raises((DataError, ValueError), match="genie"):
        ClusterParams(input="t.csv", algorithm="optics")
