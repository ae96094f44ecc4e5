"""Fixtures shared by every test layer."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _shared_data_dir() -> Path:
    raw = os.environ.get("ZHUGE_TEST_DATA")
    return Path(raw).resolve() if raw else (REPO.parent / "shared" / "data").resolve()


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data`` (or ``$ZHUGE_TEST_DATA``): real NAB and datacenter-trace series.

    Skips with a message only where the folder is absent; ``.ci/run`` sets the path and fails
    the build if any test skipped for this reason.
    """
    path = _shared_data_dir()
    if not (path / "nab").is_dir():
        pytest.skip(f"real data not found at {path} (set ZHUGE_TEST_DATA)")
    return path
