"""The embedded platform keeps other local users out: its Dask cluster listens on loopback
only and speaks TLS with a certificate of its own (whoever reaches a Dask scheduler runs code
as its user), and its home, database and token are its owner's only."""

from __future__ import annotations

import stat
from urllib.parse import urlparse

import pytest
from distributed import Client

from zhuge.config import Settings
from zhuge.platform import Platform

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def platform(tmp_path_factory):
    settings = Settings(home=tmp_path_factory.mktemp("secure") / "home", workers=1)
    with Platform(settings) as p:
        yield p


def _mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_home_database_and_token_are_the_owners_only(platform):
    home = platform.settings.home
    assert _mode(home) == 0o700
    for name in ("zhuge.db", "token"):
        assert _mode(home / name) == 0o600, name
    for extra in ("zhuge.db-wal", "zhuge.db-shm"):
        if (home / extra).exists():
            assert _mode(home / extra) == 0o600, extra


def test_dask_listens_on_loopback_only_and_over_tls(platform):
    cluster = platform.executor.cluster
    scheduler = urlparse(cluster.scheduler_address)
    assert (scheduler.scheme, scheduler.hostname) == ("tls", "127.0.0.1")
    assert urlparse(cluster.dashboard_link).hostname == "127.0.0.1"
    for worker in platform.executor.workers():
        assert urlparse(worker.address).scheme == "tls", worker.address
        assert urlparse(worker.address).hostname == "127.0.0.1", worker.address


@pytest.mark.parametrize("scheme", ["tcp", "tls"])
def test_a_client_without_the_clusters_certificate_cannot_connect(platform, scheme):
    address = platform.executor.cluster.scheduler_address.replace("tls://", f"{scheme}://")
    # A refusal arrives at once (the handshake fails); the generous timeout only bounds a
    # hang, and a timeout does not count as a refusal.
    with pytest.raises(Exception) as refused:
        Client(address, timeout="60s", set_as_default=False)
    assert "timed out" not in str(refused.value).lower()
