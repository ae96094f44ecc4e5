"""Providers against real Dask cluster managers: the ``dask-cluster`` provider built from an
import path and keyword arguments (Dask's own ``LocalCluster``, which has ``scale(n)`` like
dask-jobqueue's and dask-kubernetes' managers), and the ``local`` provider on a
``LocalCluster``: each grows to what it is asked, lists its own workers only, and retires the
one named. Waits are for the cluster's state, never for a time."""

from __future__ import annotations

import pytest
from distributed import LocalCluster

from tests.conftest import wait_for
from zhuge.errors import ConfigError
from zhuge.jobs.elastic.providers import (
    DaskClusterProvider,
    LocalProvider,
    ProviderConfig,
    make_provider,
)

pytestmark = [pytest.mark.slow]


def test_the_dask_cluster_provider_scales_a_cluster_manager_by_import_path():
    config = ProviderConfig.parse(
        "threads",
        {
            "type": "dask-cluster",
            "cluster": "distributed:LocalCluster",
            "options": {"n_workers": 0, "processes": False, "dashboard_address": ":0"},
        },
    )
    provider = make_provider(config, "cpu", {"CPU": 1.0})
    assert isinstance(provider, DaskClusterProvider)
    try:
        provider.scale_to(2)
        up = wait_for(provider.workers, until=lambda w: len(w) == 2, what="two workers")
        provider.retire(up[0])
        left = wait_for(provider.workers, until=lambda w: len(w) == 1, what="one retired")
        assert left == [up[1]]  # that one, not any
        assert provider.requested() == 1
    finally:
        provider.cluster.close()


def test_a_bad_import_path_is_said_in_words():
    provider = DaskClusterProvider("cpu", "no_such_module:Cluster")
    with pytest.raises(ConfigError, match="cannot import 'no_such_module:Cluster'"):
        provider.scale_to(1)


def test_the_local_provider_runs_its_pool_beside_the_adopted_workers():
    with LocalCluster(
        n_workers=1, processes=False, threads_per_worker=1, dashboard_address=":0"
    ) as cluster:
        adopted = LocalProvider(cluster, "local", None, adopt=True)
        burst = LocalProvider(cluster, "burst", {"CPU": 2.0, "burst": 1.0})
        first = wait_for(adopted.workers, until=lambda w: len(w) == 1, what="the first worker")
        burst.scale_to(2)
        mine = wait_for(burst.workers, until=lambda w: len(w) == 2, what="two burst workers")
        assert adopted.workers() == first and not set(mine) & set(first)
        info = cluster.scheduler_info["workers"]
        assert sorted(info[a]["name"] for a in mine) == ["burst-0", "burst-1"]
        assert all(info[a]["resources"] == {"CPU": 2.0, "burst": 1.0} for a in mine)
        assert all(info[a]["nthreads"] == 2 for a in mine)
        burst.retire(mine[0])
        wait_for(burst.workers, until=lambda w: w == [mine[1]], what="burst-0 retired")
        assert burst.requested() == 1 and adopted.workers() == first
        burst.scale_to(2)  # the freed name is taken again
        again = wait_for(burst.workers, until=lambda w: len(w) == 2, what="back to two")
        assert sorted(cluster.scheduler_info["workers"][a]["name"] for a in again) == [
            "burst-0",
            "burst-1",
        ]


def test_the_local_provider_needs_the_embedded_cluster():
    with pytest.raises(ConfigError, match="this server has none"):
        make_provider(ProviderConfig("local", "local"), "burst", {"CPU": 1.0})
