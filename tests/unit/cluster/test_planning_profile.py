"""Resource planning and segment profiles/templates."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from zhuge.errors import DataError
from zhuge.ml.cluster import Segmenter
from zhuge.ml.cluster.planning import plan_clustering, plan_fit, require_feasible
from zhuge.ml.cluster.profile import load_profile_features, profile_clusters, rfm_features


def test_spectral_on_big_input_is_refused_with_reason() -> None:
    plan = plan_clustering(2_000_000, 16, "spectral")
    assert plan.action == "refuse" and plan.memory_bytes > 2_000_000**2
    with pytest.raises(DataError, match="spectral grows with rows squared"):
        require_feasible(plan)


def test_kmeans_switches_to_minibatch_when_over_time_and_small_runs() -> None:
    plan = plan_clustering(5_000_000, 32, "kmeans", time_limit_s=60, memory_limit_bytes=2**40)
    assert (plan.action, plan.algorithm) == ("switch", "minibatch_kmeans")
    assert "MiniBatchKMeans instead" in plan.note and plan.seconds < 60
    assert plan_clustering(10_000, 8, "spectral", memory_limit_bytes=2**34).action == "run"
    # under the limits KMeans stays KMeans, however many rows (the benchmark's 1M x 32)
    assert plan_clustering(1_000_000, 32, "kmeans", memory_limit_bytes=2**34).action == "run"


def test_table_larger_than_memory_is_refused_with_the_streaming_hint() -> None:
    plan = plan_clustering(100_000_000, 32, "kmeans", memory_limit_bytes=8 * 2**30)
    assert plan.action == "refuse" and plan.memory_bytes > 8 * 2**30
    assert "zhuge cluster --stream" in plan.note


def test_density_methods_refused_with_a_sample_size_that_fits() -> None:
    plan = plan_clustering(5_000_000, 64, "dbscan", memory_limit_bytes=2**34)
    assert plan.action == "refuse" and plan.sample_rows is not None
    assert f"--sample {plan.sample_rows}" in plan.note
    smaller = plan_clustering(plan.sample_rows, 64, "dbscan", memory_limit_bytes=2**34)
    assert smaller.action == "run"


def test_plan_fit_auto_drops_what_cannot_run_and_explicit_raises() -> None:
    fit = plan_fit(
        50_000, 8, ["kmeans", "spectral", "hdbscan"], explicit=False, memory_limit_bytes=2**34
    )
    assert fit.algorithms == ["kmeans", "hdbscan"]
    assert any(n.startswith("left out spectral") for n in fit.notes)
    with pytest.raises(DataError, match="refusing to run: spectral on 50000 rows"):
        plan_fit(50_000, 8, ["spectral"], explicit=True, memory_limit_bytes=2**34)
    with pytest.raises(DataError, match="unknown algorithm 'kmedoids'"):
        plan_fit(100, 2, ["kmedoids"])


def test_segmenter_plans_before_fitting() -> None:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(3_000, 4))
    # a memory limit below the table itself: refused before any fit, with the reason
    seg = Segmenter(algorithm="kmeans", n_clusters=3, preprocess=None, memory_limit_bytes=10_000)
    with pytest.raises(DataError, match="does not fit in memory: stream it"):
        seg.fit(X)
    assert not hasattr(seg, "result_")
    # a time limit KMeans would break: switched to MiniBatchKMeans, and the notes say so
    seg = Segmenter(algorithm="kmeans", n_clusters=3, preprocess=None, time_limit_s=1e-3)
    seg.fit(X)
    assert seg.result_.algorithm == "minibatch_kmeans"
    assert any("MiniBatchKMeans instead" in n for n in seg.notes_)
    assert seg.summary()["notes"] == seg.notes_


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
