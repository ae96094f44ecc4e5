"""A synthetic fleet with daily load cycles, for tests, benchmarks and demos.

Each VM's CPU load follows a daily cosine with its own phase (VMs serve users in different
time zones, batch jobs run at different hours), plus noise. ``actual`` is what happened,
``forecast`` is it seen through a forecaster's error: same shape, different noise.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

__all__ = ["SyntheticFleet", "synthetic_fleet"]


@dataclass(frozen=True)
class SyntheticFleet:
    vms: pd.DataFrame  # vm_id, host_id, cluster_id, memory_gb
    forecast: pd.DataFrame  # series_id, timestamp, yhat
    actual: pd.DataFrame  # series_id, timestamp, yhat (the load that really happened)


def synthetic_fleet(
    n_vms: int,
    *,
    seed: int = 0,
    start: str = "2024-01-01",
    hours: int = 48,
    step: str = "1h",
    vms_per_host: int = 20,
    hosts_per_cluster: int = 50,
    forecast_noise: float = 3.0,  # CPU % standard deviation of the forecast error
) -> SyntheticFleet:
    rng = np.random.default_rng(seed)
    stamps = pd.date_range(
        start, periods=int(pd.Timedelta(f"{hours}h") / pd.Timedelta(step)), freq=step
    )
    hour = (stamps - stamps[0]).total_seconds().to_numpy() / 3600.0
    vm_ids = np.array([f"vm{i:06d}" for i in range(n_vms)])
    host = np.arange(n_vms) // vms_per_host
    vms = pd.DataFrame(
        {
            "vm_id": vm_ids,
            "host_id": np.char.add("h", host.astype(str)),
            "cluster_id": np.char.add("c", (host // hosts_per_cluster).astype(str)),
            "memory_gb": rng.choice(
                [4.0, 8.0, 16.0, 32.0, 64.0], size=n_vms, p=[0.2, 0.3, 0.3, 0.15, 0.05]
            ),
        }
    )
    phase = rng.uniform(0, 24, size=n_vms)[:, None]
    low = rng.uniform(5, 20, size=n_vms)[:, None]
    swing = rng.uniform(30, 70, size=n_vms)[:, None]
    actual = low + swing * 0.5 * (1 + np.cos(2 * np.pi * (hour[None, :] - phase) / 24.0))
    actual = np.clip(actual + rng.normal(0, 2.0, size=actual.shape), 0, 100)
    forecast = np.clip(actual + rng.normal(0, forecast_noise, size=actual.shape), 0, 100)
    series = pd.Categorical(np.repeat(vm_ids, len(stamps)), categories=vm_ids)
    timestamps = np.tile(stamps.to_numpy(), n_vms)

    def long(values: np.ndarray) -> pd.DataFrame:
        return pd.DataFrame({"series_id": series, "timestamp": timestamps, "yhat": values.ravel()})

    return SyntheticFleet(vms=vms, forecast=long(forecast), actual=long(actual))
