"""Fit the dirty-rate model to migrations that really happened.

History: one row per past migration, ``vm_id, start, memory_gb, observed_load, downtime_ms,
total_s``, all over links of the model's ``bandwidth_gbps``.

The duration is where the dirty rate shows: pre-copy sends about ``M / (1 - r)`` in total, so
``total_s`` pins down ``r = D / B`` well, while the exact downtime jumps with the last round
boundary (see ``zhuge.migration.model``). So:

1. a linearised start: ``r ≈ 1 - M / (B * total)``, ``D = r B``, ordinary least squares of
   ``D`` on ``[1, load/100 * memory_gb]`` → ``base_dirty_mbps, dirty_rate_coeff``;
2. ``scipy.optimize.least_squares`` on the model itself, log residuals of ``total_s`` and of
   ``downtime_ms`` (the latter against the model's expected downtime; it also fits
   ``resume_overhead_ms``), bounded at 0;
3. per VM with at least ``min_migrations`` rows, its own ``dirty_rate_coeff`` (the fleet's base
   and overhead held fixed): a column to merge into the VM table.

Fit quality is reported as MAPE and R² of both targets. Without history, the documented
defaults of ``MigrationModel`` are returned, and the report says so.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray
from scipy.optimize import least_squares

from zhuge.errors import DataError
from zhuge.migration.model import MB_PER_GB, MigrationModel

__all__ = ["HISTORY_COLUMNS", "Calibration", "calibrate", "fit_metrics", "synthetic_history"]

HISTORY_COLUMNS = ("vm_id", "memory_gb", "observed_load", "downtime_ms", "total_s")
DOWNTIME_WEIGHT = 0.3  # the exact downtime is a sawtooth around the expected: trust it less


@dataclass(frozen=True)
class Calibration:
    model: MigrationModel  # fleet-wide fitted parameters (or the defaults)
    per_vm: pd.DataFrame  # vm_id, dirty_rate_coeff, migrations: merge into the VM table
    metrics: dict[str, Any] = field(default_factory=dict)
    source: str = "defaults"  # "fit" or "defaults"


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


def _predict(model: MigrationModel, h: pd.DataFrame, coeff: NDArray[np.float64] | None = None):
    return model.predict(h["memory_gb"].to_numpy(), h["observed_load"].to_numpy(), coeff)


def _load_memory(h: pd.DataFrame) -> NDArray[np.float64]:
    return h["observed_load"].to_numpy() / 100 * h["memory_gb"].to_numpy()


def _linear_rate(model: MigrationModel, h: pd.DataFrame) -> NDArray[np.float64]:
    """Dirty rate read off the duration: total ≈ M / (B (1 - r)), so D = B (1 - M / (B total))."""
    bandwidth = model.bandwidth_mbps
    copy_s = np.maximum(h["total_s"].to_numpy() - model.resume_overhead_ms / 1000, 1e-9)
    r = np.clip(1 - h["memory_gb"].to_numpy() * MB_PER_GB / (bandwidth * copy_s), 0, 0.99)
    return r * bandwidth


def _residuals(model: MigrationModel, h: pd.DataFrame, coeff: NDArray[np.float64] | None = None):
    est = _predict(model, h, coeff)
    total = np.log(est.total_s / h["total_s"].to_numpy())
    downtime = np.log(est.downtime_ms / h["downtime_ms"].to_numpy())
    return np.concatenate([total, DOWNTIME_WEIGHT * downtime])


def calibrate(
    history: pd.DataFrame | None,
    model: MigrationModel | None = None,
    *,
    min_migrations: int = 3,
) -> Calibration:
    """Fit ``base_dirty_mbps``, ``dirty_rate_coeff``, ``resume_overhead_ms`` (fleet) and a
    ``dirty_rate_coeff`` per VM with at least ``min_migrations`` past migrations."""
    model = model or MigrationModel()
    empty = pd.DataFrame({"vm_id": [], "dirty_rate_coeff": [], "migrations": []})
    if history is None or len(history) == 0:
        return Calibration(
            model, empty, {"migrations": 0, "note": "no history: documented defaults"}
        )
    h = _history(history)
    if len(h) < 3:
        raise DataError(
            f"history has {len(h)} migration(s); at least 3 are needed to fit 3 parameters"
        )

    design = np.column_stack([np.ones(len(h)), _load_memory(h)])
    start, *_ = np.linalg.lstsq(design, _linear_rate(model, h), rcond=None)
    x0 = np.array([max(start[0], 0.1), max(start[1], 0.1), max(model.resume_overhead_ms, 1.0)])

    def fleet(theta: NDArray[np.float64]) -> NDArray[np.float64]:
        candidate = model.evolve(
            base_dirty_mbps=theta[0], dirty_rate_coeff=theta[1], resume_overhead_ms=theta[2]
        )
        return _residuals(candidate, h)

    fit = least_squares(fleet, x0, bounds=(0.0, np.inf), x_scale="jac")
    fitted = model.evolve(
        base_dirty_mbps=float(fit.x[0]),
        dirty_rate_coeff=float(fit.x[1]),
        resume_overhead_ms=float(fit.x[2]),
    )

    fitted, per_vm, coeff = _fit_per_vm(fitted, h, min_migrations)
    if per_vm.empty:
        per_vm = empty

    fleet_est = _predict(fitted, h)
    vm_est = _predict(fitted, h, coeff)
    metrics = {
        "migrations": len(h),
        "vms_with_own_coeff": len(per_vm),
        "total_s": fit_metrics(h["total_s"], vm_est.total_s),
        "downtime_ms": fit_metrics(h["downtime_ms"], vm_est.downtime_ms),
        "fleet_only": {
            "total_s": fit_metrics(h["total_s"], fleet_est.total_s),
            "downtime_ms": fit_metrics(h["downtime_ms"], fleet_est.downtime_ms),
        },
        "converged": bool(fit.success),
    }
    return Calibration(fitted, per_vm, metrics, source="fit")


def _fit_per_vm(
    fleet: MigrationModel, h: pd.DataFrame, min_migrations: int
) -> tuple[MigrationModel, pd.DataFrame, NDArray[np.float64]]:
    """One joint fit: base, overhead and a coefficient per VM with enough history (VMs with
    less keep the fleet coefficient). Joint, because a fleet-wide fit of a heterogeneous fleet
    biases the base rate, which would then bias every per-VM coefficient."""
    counts = h["vm_id"].value_counts()
    own = counts.index[counts >= min_migrations].sort_values()
    if len(own) == 0:
        return fleet, pd.DataFrame(), np.full(len(h), np.nan)
    slot = pd.Index(own).get_indexer(h["vm_id"])  # -1: fleet coefficient
    n = len(h)

    def unpack(theta: NDArray[np.float64]) -> tuple[MigrationModel, NDArray[np.float64]]:
        model = fleet.evolve(base_dirty_mbps=theta[0], resume_overhead_ms=theta[1])
        return model, np.where(slot >= 0, theta[2:][slot], np.nan)

    def residuals(theta: NDArray[np.float64]) -> NDArray[np.float64]:
        model, coeff = unpack(theta)
        return _residuals(model, h, coeff)

    sparsity = np.zeros((2 * n, 2 + len(own)), dtype=bool)
    sparsity[:, :2] = True
    rows = np.flatnonzero(slot >= 0)
    sparsity[rows, 2 + slot[rows]] = True
    sparsity[n + rows, 2 + slot[rows]] = True
    # start each VM from its linearised estimate (median over its migrations)
    linear = pd.Series((_linear_rate(fleet, h) - fleet.base_dirty_mbps) / _load_memory(h)).replace(
        [np.inf, -np.inf], np.nan
    )
    start = (
        linear.groupby(h["vm_id"].to_numpy()).median().reindex(own).fillna(fleet.dirty_rate_coeff)
    )
    x0 = np.concatenate(
        [[fleet.base_dirty_mbps, fleet.resume_overhead_ms], np.maximum(start.to_numpy(), 0.0)]
    )
    fit = least_squares(residuals, x0, bounds=(0.0, np.inf), jac_sparsity=sparsity, x_scale="jac")
    model, coeff = unpack(fit.x)
    per_vm = pd.DataFrame(
        {"vm_id": own, "dirty_rate_coeff": fit.x[2:], "migrations": counts.loc[own].to_numpy()}
    )
    return model, per_vm, coeff


def synthetic_history(
    n: int,
    model: MigrationModel,
    *,
    n_vms: int = 50,
    vm_coeff: NDArray[np.float64] | None = None,
    noise: float = 0.03,  # multiplicative (log-normal sigma) on both observed targets
    seed: int = 0,
) -> pd.DataFrame:
    """Past migrations as the exact pre-copy rounds of ``model`` would have run them, plus noise."""
    rng = np.random.default_rng(seed)
    vm = rng.integers(0, n_vms, n)
    memory_of_vm = rng.choice([2.0, 4.0, 8.0, 16.0, 32.0, 64.0], n_vms)
    memory = memory_of_vm[vm]
    load = rng.uniform(0, 100, n)
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
