"""The two least-squares fits: the fleet's three parameters from several starts, then one joint
fit with a coefficient per VM under a prior (see the package docstring, steps 3-4)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray
from scipy.optimize import least_squares

from zhuge.migration.calibration.likelihood import _Objective
from zhuge.migration.calibration.uncertainty import IDENTIFIED_FLOOR
from zhuge.migration.model import MigrationModel

VM_COEFF_SPREAD = 0.5  # prior sd of log(VM coefficient / fleet coefficient): a factor 1.65
ROBUST_SCALE = 2.0  # soft-L1 loss: quadratic within 2 noise sd, linear beyond
# x link rate: starting points of the base rate (the objective has local minima, see calibrate)
BASE_STARTS = (0.0005, 0.002, 0.005, 0.01, 0.02, 0.04)


def _fleet_bounds(model: MigrationModel, h: pd.DataFrame) -> tuple[NDArray, NDArray, NDArray]:
    """Lower and upper bounds and typical sizes of (base, coefficient, overhead)."""
    bandwidth = model.bandwidth_mbps
    # no guest in the history dirties more than 10 x the link
    most_coeff = 10 * bandwidth / max(float(h["memory_gb"].max()), 1e-9)
    lower = np.zeros(3)
    upper = np.array([bandwidth, most_coeff, np.inf])
    scale = np.array(
        [
            IDENTIFIED_FLOOR["base_dirty_mbps"] * bandwidth,
            max(model.dirty_rate_coeff, IDENTIFIED_FLOOR["dirty_rate_coeff"]),
            max(model.resume_overhead_ms, IDENTIFIED_FLOOR["resume_overhead_ms"]),
        ]
    )
    return lower, upper, scale


def _fleet_model(model: MigrationModel, theta: NDArray[np.float64]) -> MigrationModel:
    return model.evolve(
        base_dirty_mbps=float(theta[0]),
        dirty_rate_coeff=float(theta[1]),
        resume_overhead_ms=float(theta[2]),
    )


def _fit_fleet_from(
    model: MigrationModel, objective: _Objective, starts: list[NDArray[np.float64]]
) -> list[Any]:
    """Fits from each start and from each base rate in ``BASE_STARTS``, best (cheapest) first."""
    bandwidth = model.bandwidth_mbps
    grid = [np.array([share * bandwidth, *starts[0][1:]]) for share in BASE_STARTS]
    fits = [_fit_fleet(model, objective, x0) for x0 in [*starts, *grid]]
    return sorted(fits, key=lambda fit: fit.cost)


def _fit_fleet(model: MigrationModel, objective: _Objective, x0: NDArray[np.float64]) -> Any:
    lower, upper, scale = _fleet_bounds(model, objective.h)
    x0 = np.clip(x0, lower + 1e-6 * scale, np.minimum(upper * (1 - 1e-6), 1e12))
    return least_squares(
        lambda theta: objective(_fleet_model(model, theta)),
        x0,
        bounds=(lower, upper),
        x_scale=scale,
        loss="soft_l1",
        f_scale=ROBUST_SCALE,
    )


@dataclass
class _PerVmFit:
    fit: Any  # scipy's OptimizeResult
    own: pd.Index  # the VMs with their own coefficient, in the order of theta[3:]
    slot: NDArray[np.intp]  # per history row: its VM's place in ``own``, -1 for none

    def coefficients(self, theta: NDArray[np.float64]) -> NDArray[np.float64]:
        """Per history row: its VM's coefficient, NaN where the VM uses the fleet's."""
        own = theta[1] * np.exp(theta[3:])
        return np.where(self.slot >= 0, own[np.maximum(self.slot, 0)], np.nan)


def _fit_per_vm(
    model: MigrationModel,
    objective: _Objective,
    x0: NDArray[np.float64],
    min_migrations: int,
) -> _PerVmFit | None:
    """One joint fit: base, fleet coefficient, overhead and ``log(c_vm / c_fleet)`` per VM with
    enough history, under a Gaussian prior of sd ``VM_COEFF_SPREAD`` (VMs with less keep the
    fleet coefficient). Joint, because a fleet-wide fit of a heterogeneous fleet biases the
    base rate, which would then bias every per-VM coefficient."""
    h = objective.h
    counts = h["vm_id"].value_counts()
    own = counts.index[counts >= min_migrations].sort_values()
    if len(own) == 0:
        return None
    slot = pd.Index(own).get_indexer(h["vm_id"])
    per_vm = _PerVmFit(None, own, slot)

    def residuals(theta: NDArray[np.float64]) -> NDArray[np.float64]:
        fitted = _fleet_model(model, theta)
        prior = theta[3:] / VM_COEFF_SPREAD
        return np.concatenate([objective(fitted, per_vm.coefficients(theta)), prior])

    rows = objective.rows()
    n_data, k = len(rows), len(own)
    sparsity = np.zeros((n_data + k, 3 + k), dtype=bool)
    sparsity[:n_data, :3] = True
    mine = slot[rows] >= 0
    sparsity[np.flatnonzero(mine), 3 + slot[rows][mine]] = True
    sparsity[n_data + np.arange(k), 3 + np.arange(k)] = True

    lower, upper, scale = _fleet_bounds(model, h)
    lower = np.concatenate([lower, np.full(k, -np.inf)])
    upper = np.concatenate([upper, np.full(k, np.inf)])
    scale = np.concatenate([scale, np.full(k, VM_COEFF_SPREAD)])
    start = np.concatenate([x0, np.zeros(k)])
    start = np.clip(start, lower + 1e-6 * scale, np.minimum(upper * (1 - 1e-6), 1e12))
    per_vm.fit = least_squares(
        residuals,
        start,
        bounds=(lower, upper),
        x_scale=scale,
        jac_sparsity=sparsity,
        loss="soft_l1",
        f_scale=ROBUST_SCALE,
    )
    return per_vm
