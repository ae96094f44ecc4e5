"""Small hand-made fleets for the migration planner tests."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest


def make_forecast(
    loads: dict[str, list[float]], start: str = "2024-01-01", step: str = "1h"
) -> pd.DataFrame:
    """Long forecast frame from {vm_id: [load per step]}."""
    frames = [
        pd.DataFrame(
            {
                "series_id": vm,
                "timestamp": pd.date_range(start, periods=len(values), freq=step),
                "yhat": np.asarray(values, dtype=float),
            }
        )
        for vm, values in loads.items()
    ]
    return pd.concat(frames, ignore_index=True)


@pytest.fixture
def small_fleet() -> tuple[pd.DataFrame, pd.DataFrame]:
    """Three VMs on two hosts over 6 hours; each VM is quietest at a different hour."""
    forecast = make_forecast(
        {
            "a": [50, 40, 10, 60, 70, 80],
            "b": [50, 40, 10, 60, 70, 80],
            "c": [90, 90, 90, 90, 90, 5],
        }
    )
    vms = pd.DataFrame(
        {
            "vm_id": ["a", "b", "c"],
            "host_id": ["h1", "h1", "h2"],
            "cluster_id": ["c1", "c1", "c1"],
            "memory_gb": [16.0, 16.0, 8.0],
        }
    )
    return forecast, vms
