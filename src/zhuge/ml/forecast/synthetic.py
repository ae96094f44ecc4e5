"""A synthetic VM fleet with known structure, for tests and benchmarks.

Each VM's CPU % = level x (daily profile with its own phase, amplitude and a second harmonic)
x (weekend dip for "office" VMs) + AR(1) noise + occasional spikes, clipped to [0, 100]. A
share of VMs is nearly idle (flat, low), and some have a level shift part-way through.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = ["synthetic_fleet"]


def synthetic_fleet(
    *,
    vms: int = 100,
    days: int = 14,
    freq: str = "1h",
    seed: int = 0,
    start: str = "2024-01-01",
) -> pd.DataFrame:
    """Long frame ``series_id, timestamp, value`` (``series_id`` like ``vm-00042``)."""
    rng = np.random.default_rng(seed)
    step = pd.Timedelta(freq)
    per_day = int(pd.Timedelta(days=1) / step)
    n_steps = days * per_day
    t = np.arange(n_steps)
    hour = (t % per_day) * 24.0 / per_day  # (T,)
    dow = (t // per_day) % 7  # 2024-01-01 is a Monday

    level = rng.lognormal(np.log(20), 0.6, vms).clip(1, 80)[:, None]
    amp = rng.uniform(0.1, 0.8, vms)[:, None]
    phase = rng.uniform(0, 24, vms)[:, None]
    harm = rng.uniform(0, 0.4, vms)[:, None]
    office = rng.random(vms)[:, None] < 0.4
    ang = 2 * np.pi * (hour[None, :] - phase) / 24.0
    daily = 1 + amp * (np.sin(ang) + harm * np.sin(2 * ang + 1.0))
    weekly = np.where(office & (dow[None, :] >= 5), 0.5, 1.0)

    noise_sd = rng.uniform(0.03, 0.2, vms)[:, None] * level
    shocks = rng.standard_normal((vms, n_steps)) * noise_sd
    rho = rng.uniform(0.3, 0.8, vms)[:, None]
    ar = np.empty_like(shocks)
    ar[:, 0] = shocks[:, 0]
    for j in range(1, n_steps):
        ar[:, j] = rho[:, 0] * ar[:, j - 1] + shocks[:, j]
    load = level * daily * weekly + ar
    spikes = rng.random((vms, n_steps)) < 0.003
    load = np.where(spikes, load + rng.uniform(10, 50, (vms, n_steps)), load)
    shift_at = rng.integers(n_steps // 3, n_steps, vms)
    shifted = rng.random(vms) < 0.1
    factor = np.where(shifted, rng.uniform(0.5, 1.6, vms), 1.0)[:, None]
    load = np.where(t[None, :] >= shift_at[:, None], load * factor, load)
    idle = rng.random(vms) < 0.1
    load[idle] = rng.uniform(0.05, 1.0, idle.sum())[:, None] + 0.02 * rng.standard_normal(
        (idle.sum(), n_steps)
    )
    load = load.clip(0, 100)

    ids = np.array([f"vm-{i:05d}" for i in range(vms)])
    stamps = pd.date_range(start, periods=n_steps, freq=step).to_numpy()
    return pd.DataFrame(
        {
            "series_id": np.repeat(ids, n_steps),
            "timestamp": np.tile(stamps, vms),
            "value": load.reshape(-1),
        }
    )
