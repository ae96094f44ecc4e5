"""Past migrations: the history table a calibration reads, checked, and a synthetic one made
from known parameters (the recovery study's ground truth)."""

from __future__ import annotations

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from zhuge.errors import DataError
from zhuge.migration.model import MigrationModel

HISTORY_COLUMNS = ("vm_id", "memory_gb", "observed_load", "downtime_ms", "total_s")


def fit_metrics(observed: NDArray[np.float64], predicted: NDArray[np.float64]) -> dict[str, float]:
    """MAPE (%) and R² of a prediction."""
    observed = np.asarray(observed, dtype=float)
    predicted = np.asarray(predicted, dtype=float)
    mape = float(np.mean(np.abs(predicted - observed) / np.maximum(np.abs(observed), 1e-12)) * 100)
    spread = float(np.sum((observed - observed.mean()) ** 2))
    r2 = 1.0 - float(np.sum((observed - predicted) ** 2)) / spread if spread > 0 else float("nan")
    return {"mape_pct": mape, "r2": r2}


def _history(history: pd.DataFrame) -> pd.DataFrame:
    if not isinstance(history, pd.DataFrame):
        raise DataError(f"history must be a pandas DataFrame, got {type(history).__name__}")
    missing = [c for c in HISTORY_COLUMNS if c not in history.columns]
    if missing:
        raise DataError(f"history lacks column(s) {missing}; it has {list(history.columns)}")
    out = history.reset_index(drop=True).copy()
    for column in HISTORY_COLUMNS[1:]:
        try:
            out[column] = pd.to_numeric(out[column]).astype(float)
        except (ValueError, TypeError) as exc:
            raise DataError(f"history.{column} must be numeric: {exc}") from exc
        bad = ~np.isfinite(out[column]) | (out[column] < 0)
        if column != "observed_load":
            bad |= out[column] <= 0
        if bad.any():
            raise DataError(
                f"history.{column} is missing, negative or zero in {int(bad.sum())} row(s)"
            )
    return out


def synthetic_history(
    n: int,
    model: MigrationModel,
    *,
    n_vms: int = 50,
    vm_coeff: NDArray[np.float64] | None = None,
    noise: float = 0.03,  # multiplicative (log-normal sigma) on both observed targets
    seed: int = 0,
    memory_sizes_gb: tuple[float, ...] = (2.0, 4.0, 8.0, 16.0, 32.0, 64.0),
    load_range: tuple[float, float] = (0.0, 100.0),  # % CPU, uniform
) -> pd.DataFrame:
    """Past migrations as the exact pre-copy rounds of ``model`` would have run them, plus noise.
    Each VM's memory is drawn from ``memory_sizes_gb``, each migration's load from
    ``load_range`` (narrow them to make a history that cannot identify the model)."""
    rng = np.random.default_rng(seed)
    vm = rng.integers(0, n_vms, n)
    memory_of_vm = rng.choice(np.asarray(memory_sizes_gb, dtype=float), n_vms)
    memory = memory_of_vm[vm]
    load = rng.uniform(*load_range, n)
    coeff = None if vm_coeff is None else np.asarray(vm_coeff, dtype=float)[vm]
    est = model.predict(memory, load, coeff, expected=False)
    return pd.DataFrame(
        {
            "vm_id": [f"vm{i}" for i in vm],
            "start": pd.Timestamp("2024-01-01")
            + pd.to_timedelta(rng.uniform(0, 30 * 86400, n), unit="s"),
            "memory_gb": memory,
            "observed_load": load,
            "downtime_ms": est.downtime_ms * rng.lognormal(0, noise, n),
            "total_s": est.total_s * rng.lognormal(0, noise, n),
        }
    )
