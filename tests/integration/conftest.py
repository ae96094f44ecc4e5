"""Fixtures shared by the integration tests."""

from __future__ import annotations

import pytest

from tests.conftest import free_port


@pytest.fixture
def env(tmp_path) -> dict[str, str]:
    """Environment of a CLI command that runs its job on an embedded platform in ``tmp_path``
    (nothing answers at ZHUGE_URL), with quick retries and a wide terminal. Its data roots
    are ``tmp_path``, where the tests write their input files."""
    return {
        "ZHUGE_EMBEDDED": "1",
        "ZHUGE_HOME": str(tmp_path / "home"),
        "ZHUGE_DATA_ROOTS": str(tmp_path),
        "ZHUGE_RETRY_BASE_SECONDS": "0.05",
        "ZHUGE_URL": f"http://127.0.0.1:{free_port()}",
        "COLUMNS": "160",
    }
