"""Resource planning and segment profiles/templates."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from zhuge.errors import DataError
from zhuge.ml.cluster import Segmenter
from zhuge.ml.cluster.planning import plan_clustering, require_feasible
from zhuge.ml.cluster.profile import load_profile_features, profile_clusters, rfm_features


def test_spectral_on_big_input_is_refused_with_reason() -> None:
    plan = plan_clustering(2_000_000, 16, "spectral")
    assert plan.action == "refuse" and plan.memory_bytes > 2_000_000**2
    with pytest.raises(DataError, match="spectral grows with rows squared"):
        require_feasible(plan)


def test_kmeans_switches_to_minibatch_and_small_runs() -> None:
    assert plan_clustering(5_000_000, 32, "kmeans").algorithm == "minibatch_kmeans"
    assert plan_clustering(10_000, 8, "spectral").action == "run"


def test_rfm_and_profile() -> None:
    tx = pd.DataFrame(
        {
            "customer_id": ["a", "a", "b", "c", "c", "c"],
            "timestamp": pd.to_datetime(
                ["2024-01-01", "2024-01-10", "2024-01-05", "2024-01-09", "2024-01-10", "2024-01-10"]
            ),
            "amount": [10.0, 20.0, 5.0, 100.0, 50.0, 50.0],
        }
    )
    rfm = rfm_features(tx)
    assert rfm.loc["a"].tolist() == [0.0, 2, 30.0] and rfm.loc["b", "recency_days"] == 5.0
    prof = profile_clusters(rfm, np.array([0, 0, 1]))
    assert set(prof["cluster"]) == {0, 1} and prof.loc[prof["cluster"] == 1, "size"].iloc[0] == 1
    with pytest.raises(DataError, match="unknown column"):
        rfm_features(tx.rename(columns={"amount": "value"}))


def test_load_profile_groups_vms_by_daily_shape() -> None:
    ts = pd.date_range("2024-01-01", periods=24 * 7, freq="h")
    rows = []
    for vm in range(12):
        day_peak = vm % 2 == 0
        level = 10 * (vm + 1)  # different levels, two shapes
        load = level * (
            1 + np.where((ts.hour >= 9) & (ts.hour < 17), 1.0, 0.0)
            if day_peak
            else 1 + np.where(ts.hour < 6, 1.0, 0.0)
        )
        rows.append(pd.DataFrame({"series_id": f"vm{vm}", "timestamp": ts, "value": load}))
    features = load_profile_features(pd.concat(rows))
    assert features.shape == (12, 24)
    np.testing.assert_allclose(features.mean(axis=1), 1.0)
    seg = Segmenter(algorithm="kmeans", n_clusters=2, preprocess=None).fit(features)
    assert len(set(seg.labels_[::2])) == 1 and len(set(seg.labels_[1::2])) == 1
