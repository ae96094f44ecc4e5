"""How well a history pins each parameter: the covariance at the solution, each fleet
parameter's standard error, interval and ``identified``, and each VM coefficient's (see the
package docstring, step 5). Every square root and division here is guarded: a variance that is
not positive and finite means "not identified", never a made-up precision."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from zhuge.migration.calibration.likelihood import _predict
from zhuge.migration.model import MB_PER_GB, MigrationModel

if TYPE_CHECKING:
    from zhuge.migration.calibration.fitting import _PerVmFit

FLEET_PARAMETERS = ("base_dirty_mbps", "dirty_rate_coeff", "resume_overhead_ms")
IDENTIFIED_REL_CI = 0.5  # identified: 95 % interval within ±50 % of the value
# below these a parameter is "about zero": its interval is judged against the floor instead
IDENTIFIED_FLOOR = {
    "base_dirty_mbps": 0.005,  # x link rate in MB/s: moves a duration by 0.5 %
    "dirty_rate_coeff": 1.0,  # MB/s per GB at full CPU
    "resume_overhead_ms": 5.0,  # ms
}
# The expected downtime is an approximation (the history's sawtooth is not exactly averaged):
# in the recovery study (tests/unit/migration/test_calibration_recovery.py) it biases the
# fitted parameters by up to ~5 %, which the Jacobian cannot see; added to every standard error.
MODEL_REL_ERROR = 0.05
SAWTOOTH_BINS = 10  # the overhead needs the history's last rounds spread over the sawtooth...
SAWTOOTH_BINS_HIT = 7  # ...in at least 7 of 10 phase bins, or 10 exact one-round downtimes
# Singular values of the (column-scaled) Jacobian under this share of the largest are treated
# as this share: least_squares' finite-difference Jacobian is accurate to about sqrt(eps)
# (1.5e-8) relative, so a direction it sees less than that is not seen at all.
COVARIANCE_RCOND = 1e-8


def _covariance(fit: Any) -> NDArray[np.float64]:
    """``s^2 (J^T J)^-1`` at the solution, ``s^2`` from the (robust) cost per degree of freedom.

    From the SVD of the Jacobian with its columns scaled to unit norm, never by inverting
    ``J^T J``: the parameters' sizes differ by orders of magnitude (MB/s of the link against a
    log ratio), which squared in ``J^T J`` can pass ``1/eps``, and its inverse then comes out
    with negative variances on some BLAS kernels. Built as ``F F^T``, the matrix is symmetric
    and positive semi-definite whatever the rounding. A direction the Jacobian barely sees
    (singular value under ``COVARIANCE_RCOND`` of the largest) gets the variance of that floor:
    huge, so the parameters along it come out unidentified, correlated as that direction says.
    A parameter the residuals do not depend on at all gets an infinite variance."""
    jac = fit.jac.toarray() if hasattr(fit.jac, "toarray") else np.asarray(fit.jac, dtype=float)
    n_rows, n_params = jac.shape
    scale_squared = 2 * float(fit.cost) / max(n_rows - n_params, 1)
    norms = np.linalg.norm(jac, axis=0)
    seen = np.isfinite(jac).all(axis=0) & (norms > 0)
    cov = np.zeros((n_params, n_params))
    unseen = np.flatnonzero(~seen)
    cov[unseen, unseen] = np.inf
    if seen.any():
        _, singular, vt = np.linalg.svd(jac[:, seen] / norms[seen], full_matrices=False)
        singular = np.maximum(singular, COVARIANCE_RCOND * singular[0])
        factor = vt.T / singular / norms[seen, None]
        cov[np.ix_(seen, seen)] = scale_squared * (factor @ factor.T)
    return cov


def _standard_deviations(variance: NDArray[np.float64]) -> NDArray[np.float64]:
    """Square roots of the variances that are positive and finite; infinite for the others.

    A covariance the fit computed is positive definite; a zero, negative or non-finite
    variance only comes from a broken one (rounding, a parameter the data do not see), and
    claiming infinite precision from it would be worse than saying nothing: such a parameter
    reports an infinite standard error and is not identified."""
    variance = np.asarray(variance, dtype=float)
    usable = np.isfinite(variance) & (variance > 0)
    sd = np.full(variance.shape, np.inf)
    sd[usable] = np.sqrt(variance[usable])
    return sd


def _correlation(cov: NDArray[np.float64], i: int, j: int) -> float:
    """Correlation of parameters ``i`` and ``j``, in [-1, 1]; 0.0 (nothing to say) where
    either variance is not positive and finite."""
    sd_i, sd_j = _standard_deviations(np.array([cov[i, i], cov[j, j]]))
    covariance = 0.5 * (float(cov[i, j]) + float(cov[j, i]))  # symmetrised
    denominator = sd_i * sd_j
    if not (np.isfinite(denominator) and denominator > 0 and np.isfinite(covariance)):
        return 0.0
    return float(np.clip(covariance / denominator, -1.0, 1.0))


def _sawtooth_sampled(
    model: MigrationModel,
    h: pd.DataFrame,
    coeff: NDArray[np.float64] | None,
    not_converged: NDArray[np.bool_],
) -> bool:
    """Do the history's downtimes average over the sawtooth, as the expected downtime assumes?
    Yes when the position of the last round boundary (the fractional part of the rounds
    needed) is spread over most of its range, or enough guests needed one round only (their
    downtime is exact)."""
    est = _predict(model, h, coeff)
    r = np.clip(est.dirty_rate_mbps / model.bandwidth_mbps, 1e-12, 1 - 1e-9)
    needed = np.log(h["memory_gb"].to_numpy() * MB_PER_GB / model.stop_threshold_mb) / -np.log(r)
    converged = est.converged & ~not_converged
    one_round = converged & (needed <= 1)
    phase = (np.ceil(needed) - needed)[converged & ~one_round]
    bins = np.unique(np.minimum((phase * SAWTOOTH_BINS).astype(int), SAWTOOTH_BINS - 1))
    return bool(len(bins) >= SAWTOOTH_BINS_HIT or one_round.sum() >= SAWTOOTH_BINS)


def _identified(name: str, value: float, half_width: float, model: MigrationModel) -> bool:
    """Is the 95 % interval (half width) within ±IDENTIFIED_REL_CI of the value (or floor)?"""
    floor = IDENTIFIED_FLOOR[name] * (model.bandwidth_mbps if name == "base_dirty_mbps" else 1)
    return bool(
        np.isfinite(half_width) and half_width <= IDENTIFIED_REL_CI * max(abs(value), floor)
    )


def _parameter_report(
    fitted: MigrationModel,
    cov: NDArray[np.float64],
    rivals: list[NDArray[np.float64]],
    sawtooth_sampled: bool,
) -> tuple[dict[str, Any], float, list[str]]:
    """Value, standard error, 95 % interval and ``identified`` of each fleet parameter; the
    base/coefficient correlation; and a warning per parameter the history does not identify.
    The interval is the Jacobian's, widened to take in the rivals: other local minima that
    fit the history as well."""
    report: dict[str, Any] = {}
    warnings: list[str] = []
    values = np.array([getattr(fitted, name) for name in FLEET_PARAMETERS])
    std = np.hypot(_standard_deviations(np.diag(cov)[:3]), MODEL_REL_ERROR * values)
    units = {
        "base_dirty_mbps": "MB/s",
        "dirty_rate_coeff": "MB/s per GB",
        "resume_overhead_ms": "ms",
    }
    for i, name in enumerate(FLEET_PARAMETERS):
        value = float(getattr(fitted, name))
        others = [float(rival[i]) for rival in rivals]
        low = min([value - 1.96 * std[i], *others])
        high = max([value + 1.96 * std[i], *others])
        half_width = max(value - low, high - value)
        identified = _identified(name, value, half_width, fitted)
        if name == "resume_overhead_ms" and not sawtooth_sampled:
            identified = False
            warnings.append(
                "the downtimes of this history sample too little of the stop-and-copy sawtooth "
                "(their last rounds all end at about the same point) to tell it from the "
                "resume overhead: add migrations at other loads or of other sizes"
            )
        report[name] = {
            "value": value,
            "std_error": float(std[i]),
            "ci95": [float(max(low, 0.0)), float(high)],
            "identified": identified,
        }
        if not identified:
            warnings.append(
                f"{name} is not identified by this history: {value:.3g}, 95 % interval "
                f"[{max(low, 0.0):.3g}, {high:.3g}] {units[name]}; use it for guests like "
                "those in the history only"
            )
    correlation = _correlation(cov, 0, 1)
    if abs(correlation) > 0.9 and not all(report[n]["identified"] for n in FLEET_PARAMETERS[:2]):
        warnings.append(
            f"base_dirty_mbps and dirty_rate_coeff are {correlation:+.2f} correlated: the "
            "history's load x memory varies too little to tell them apart; add migrations of "
            "idle and of busy big guests"
        )
    return report, correlation, warnings


def _per_vm_report(
    per_vm_fit: _PerVmFit, h: pd.DataFrame, cov: NDArray[np.float64], fitted: MigrationModel
) -> pd.DataFrame:
    """Each VM's coefficient, its standard error (delta method on ``c_fleet exp(u_vm)``) and
    whether its own history identifies it (else it stays near the fleet's, by the prior)."""
    theta = per_vm_fit.fit.x
    coeff = theta[1] * np.exp(theta[3:])
    k = len(coeff)
    # var(log c_vm) = var(c)/c^2 + var(u) + 2 cov(c, u)/c
    c = max(theta[1], 1e-12)
    terms = np.column_stack([np.full(k, cov[1, 1]), np.diag(cov)[3:], cov[1, 3 : 3 + k]])
    finite_terms = np.isfinite(terms).all(axis=1)
    terms = np.where(np.isfinite(terms), terms, 0.0)  # inf - inf would warn: masked below
    log_var = terms[:, 0] / c**2 + terms[:, 1] + 2 * terms[:, 2] / c
    log_sd = _standard_deviations(np.where(finite_terms, log_var, np.inf))
    known = np.isfinite(log_sd)
    std_error = np.full(k, np.inf)  # not coeff * inf: a zero coefficient would make that NaN
    std_error[known] = coeff[known] * log_sd[known]
    counts = h["vm_id"].value_counts()
    return pd.DataFrame(
        {
            "vm_id": per_vm_fit.own,
            "dirty_rate_coeff": coeff,
            "migrations": counts.loc[per_vm_fit.own].to_numpy(),
            "std_error": std_error,
            "identified": [
                _identified("dirty_rate_coeff", v, 1.96 * s, fitted)
                for v, s in zip(coeff, std_error, strict=True)
            ],
        }
    )
