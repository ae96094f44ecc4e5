"""Fit the dirty-rate model to migrations that really happened.

History: one row per past migration, ``vm_id, start, memory_gb, observed_load, downtime_ms,
total_s``, all over links of the model's ``bandwidth_gbps``. Fitted: ``base_dirty_mbps``,
``dirty_rate_coeff`` and ``resume_overhead_ms`` for the fleet, and a ``dirty_rate_coeff`` per VM
with at least ``min_migrations`` rows (a column to merge into the VM table).

**What the data say.** Pre-copy sends about ``M / (1 - r)`` in all, ``r = D / B``, so ``total_s``
measures the dirty rate of each migration; ``downtime_ms`` is the resume overhead plus a
stop-and-copy that jumps with the last round boundary (a sawtooth, see
``zhuge.migration.model``), so it says little about ``D`` and much about the overhead. A
migration that did not converge (``D >= B``: the guest was paused and all of ``M`` sent again)
has ``total = 2 M / B`` whatever ``D`` was: it says only that ``D`` was high.

**Why the old fit was wrong** (base rate ≈ 105 MB/s for a truth of 20, coefficient ≈ 16 for 25,
even on noise-free data). The model's total is not monotone in the dirty rate: it climbs as
``r -> 1`` and drops to ``2 M / B`` past it. Read through ``r ≈ 1 - M / (B total)``, a
non-converged migration looks like ``r = 0.5``, so the big busy guests dragged the linear start to
a low coefficient and a high base; the least-squares fit could not cross ``r = 1`` from there
and stayed in that local minimum. The log residual of the sawtooth downtime against its mean
added a further bias (``E log V != log E V``).

**The method.**

1. Rows whose stop-and-copy carried at least half the memory (``downtime ≳ M / 2B``) are
   *non-converged*: they enter only as a one-sided bound, ``r >= 0.5^(1/max_rounds)``
   (what sending ``M r^k >= M / 2`` at the round limit implies).
2. Start: ``r ≈ 1 - M / (B total)`` on the other rows, OLS of ``D = r B`` on
   ``[1, load/100 * memory_gb]``.
3. ``scipy.optimize.least_squares`` on the model itself, each residual in units of its own
   noise: log ratio of ``total_s`` over the relative noise ``sigma`` (estimated from the data
   by the MAD of a first fit, then refitted); downtime as a plain difference (unbiased against
   the expected sawtooth) over its sawtooth spread plus ``sigma``. Past ``r = 1`` the fit follows
   the round-limited branch (``total = M (1 + r + ... + r^max_rounds) / B``), which keeps the
   objective continuous and increasing in ``D``. Soft-L1 loss beyond 2 sigma (outliers),
   explicit parameter scales, base bounded to ``[0, B]``.
4. Per VM: one joint fit of base, overhead, the fleet coefficient and ``log(c_vm / c_fleet)``
   per VM with a Gaussian prior of sd ``VM_COEFF_SPREAD``: a VM whose own history cannot pin its
   coefficient (a 2 GB guest barely dirties a 10 Gbit/s link) stays near the fleet's, and the
   base is not biased by a heterogeneous fleet.
5. Uncertainty: covariance ``s^2 (J^T J)^-1`` from the Jacobian at the solution (through the
   SVD of the column-scaled Jacobian, see ``_covariance``); each fleet parameter reports its
   standard error, 95 % interval and ``identified`` (interval within ±``IDENTIFIED_REL_CI`` of
   the value, or of a floor for values near zero). Parameters the history cannot identify are
   flagged and listed in ``metrics["warnings"]``; the point estimate is kept (it fits the
   history as well as any other value in its interval), so use it for guests like those in the
   history, not to extrapolate. A variance that is not positive and finite gives an infinite
   standard error and ``identified`` false, never a made-up precision.

   The interval also carries a ``MODEL_REL_ERROR`` (5 %) floor: the expected downtime only
   approximates the history's sawtooth, which biases the fit by a few percent (overhead about
   -1.5 ms) where the Jacobian cannot see it. The one-round downtimes make the objective jump
   where a guest starts needing a second round, so the fleet fit starts from several base
   rates; rival minima that fit as well widen the interval.

**What it can and cannot identify** (measured in ``tests/unit/migration/
test_calibration_recovery.py``, 3 % noise, loads over 0-100 %, guests of 2-64 GB). The
coefficient needs busy, big guests: within 7 % at 100 migrations, 1.5 % at 1000. The base rate
is a small share of a fast link (20 MB/s is 1.6 % of 10 Gbit/s); it shows in the durations of
idle guests and, more sharply, in the downtime of small guests that need one round
(``r M / B``): within ~30 % at 100 migrations, 8 % at 1000. The overhead needs converged
migrations whose last rounds end at many points of the sawtooth, or one-round guests. A history
whose ``load x memory`` barely varies cannot tell base from coefficient (only their sum at that
point): both are flagged, with their correlation; one whose last rounds all end at the same point
flags the overhead. Not caught: a history of small guests only (2-4 GB), where the one-round
jumps dominate and the intervals come out too narrow (the study's truth fell outside them).

Fit quality is reported as MAPE and R² of both targets. Without history, the documented
defaults of ``MigrationModel`` are returned, and the report says so.

The package, one noun a module: ``history`` (the table, checked; a synthetic one),
``likelihood`` (the model's prediction of each migration, the residuals), ``fitting`` (the
fleet fit and the joint per-VM fit), ``uncertainty`` (covariance, intervals, ``identified``);
``calibrate`` here runs them in that order.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from zhuge.errors import DataError
from zhuge.migration.calibration.fitting import _fit_fleet_from, _fit_per_vm, _fleet_model
from zhuge.migration.calibration.history import (
    HISTORY_COLUMNS,
    _history,
    fit_metrics,
    synthetic_history,
)
from zhuge.migration.calibration.likelihood import (
    _linear_rate,
    _load_memory,
    _not_converged,
    _objective,
    _predict,
)
from zhuge.migration.calibration.uncertainty import (
    FLEET_PARAMETERS,
    _covariance,
    _parameter_report,
    _per_vm_report,
    _sawtooth_sampled,
)
from zhuge.migration.model import MigrationModel

__all__ = [
    "FLEET_PARAMETERS",
    "HISTORY_COLUMNS",
    "Calibration",
    "calibrate",
    "fit_metrics",
    "synthetic_history",
]

log = logging.getLogger(__name__)

INITIAL_NOISE = 0.03  # relative noise assumed for the first fit, before it is estimated


@dataclass(frozen=True)
class Calibration:
    model: MigrationModel  # fleet-wide fitted parameters (or the defaults)
    per_vm: pd.DataFrame  # vm_id, dirty_rate_coeff, migrations, std_error, identified
    metrics: dict[str, Any] = field(default_factory=dict)
    source: str = "defaults"  # "fit" or "defaults"

    @property
    def warnings(self) -> list[str]:
        """What the history could not identify (empty: every fleet parameter was)."""
        return list(self.metrics.get("warnings", []))


def calibrate(
    history: pd.DataFrame | None,
    model: MigrationModel | None = None,
    *,
    min_migrations: int = 3,
) -> Calibration:
    """Fit ``base_dirty_mbps``, ``dirty_rate_coeff``, ``resume_overhead_ms`` (fleet) and a
    ``dirty_rate_coeff`` per VM with at least ``min_migrations`` past migrations.

    ``metrics["parameters"]`` holds each fleet parameter's standard error, 95 % interval and
    whether the history identifies it; ``metrics["warnings"]`` (also ``Calibration.warnings``)
    says what it could not identify."""
    model = model or MigrationModel()
    empty = pd.DataFrame(
        {"vm_id": [], "dirty_rate_coeff": [], "migrations": [], "std_error": [], "identified": []}
    )
    if history is None or len(history) == 0:
        return Calibration(
            model, empty, {"migrations": 0, "note": "no history: documented defaults"}
        )
    h = _history(history)
    not_converged = _not_converged(model, h)
    converged = int((~not_converged).sum())
    if converged < 3:
        raise DataError(
            f"history has {converged} converged migration(s) (of {len(h)}); at least 3 are "
            "needed to fit 3 parameters"
        )

    ok = ~not_converged
    design = np.column_stack([np.ones(converged), _load_memory(h)[ok]])
    start, *_ = np.linalg.lstsq(design, _linear_rate(model, h)[ok], rcond=None)
    x0 = np.array([start[0], start[1], model.resume_overhead_ms])
    # A first fit with an assumed noise, then again with the noise (and sawtooth) it measured.
    # The one-round downtimes make the objective jump where a guest starts needing a second
    # round, so it has local minima: start from several base rates, keep the best, and keep
    # the others that fit as well (within the 95 % likelihood-ratio bound) as rivals.
    fit = _fit_fleet_from(model, _objective(model, h, not_converged, INITIAL_NOISE), [x0])[0]
    fitted = _fleet_model(model, fit.x)
    noise = _objective(fitted, h, not_converged, INITIAL_NOISE).total_noise(fitted, None)
    objective = _objective(fitted, h, not_converged, noise)
    fit, *others = _fit_fleet_from(model, objective, [fit.x, x0])
    fitted = _fleet_model(model, fit.x)
    dof = max(len(objective.rows()) - 3, 1)
    rivals = [o.x for o in others if o.cost - fit.cost <= 1.92 * 2 * fit.cost / dof]

    per_vm_fit = _fit_per_vm(model, objective, fit.x, min_migrations)
    if per_vm_fit is None:
        coeff, per_vm, final = None, empty, fit
    else:
        final = per_vm_fit.fit
        fitted = _fleet_model(model, final.x)
        coeff = per_vm_fit.coefficients(final.x)
    cov = _covariance(final)
    if per_vm_fit is not None:
        per_vm = _per_vm_report(per_vm_fit, h, cov, fitted)
    parameters, correlation, warnings = _parameter_report(
        fitted, cov, rivals, _sawtooth_sampled(fitted, h, None, not_converged)
    )
    for warning in warnings:
        log.warning("migration calibration: %s", warning)

    fleet_est = _predict(fitted, h)
    vm_est = _predict(fitted, h, coeff)
    metrics = {
        "migrations": len(h),
        "not_converged": int(not_converged.sum()),
        "vms_with_own_coeff": len(per_vm),
        "vms_identified": int(per_vm["identified"].sum()) if len(per_vm) else 0,
        "total_s": fit_metrics(h["total_s"], vm_est.total_s),
        "downtime_ms": fit_metrics(h["downtime_ms"], vm_est.downtime_ms),
        "fleet_only": {
            "total_s": fit_metrics(h["total_s"], fleet_est.total_s),
            "downtime_ms": fit_metrics(h["downtime_ms"], fleet_est.downtime_ms),
        },
        "converged": bool(final.success),
        "noise": {"total_s_relative_sd": noise},
        "parameters": parameters,
        "correlation_base_coeff": correlation,
        "identified": all(p["identified"] for p in parameters.values()),
        "warnings": warnings,
    }
    return Calibration(fitted, per_vm, metrics, source="fit")
