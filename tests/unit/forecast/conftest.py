"""Small fleets and fast model settings for the forecast tests."""

from __future__ import annotations

import pandas as pd
import pytest

from zhuge.ml.forecast import synthetic_fleet

FAST_GBM = {"num_boost_round": 40, "min_data_in_leaf": 20, "n_jobs": 1}


@pytest.fixture(scope="session")
def small_fleet() -> pd.DataFrame:
    """60 VMs, 21 days hourly, with known daily/weekly structure."""
    return synthetic_fleet(vms=60, days=21, freq="1h", seed=3)
