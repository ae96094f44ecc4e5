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
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray
from scipy.optimize import least_squares

from zhuge.errors import DataError
from zhuge.migration.model import MB_PER_GB, MigrationModel

__all__ = ["HISTORY_COLUMNS", "Calibration", "calibrate", "fit_metrics", "synthetic_history"]

log = logging.getLogger(__name__)

HISTORY_COLUMNS = ("vm_id", "memory_gb", "observed_load", "downtime_ms", "total_s")
FLEET_PARAMETERS = ("base_dirty_mbps", "dirty_rate_coeff", "resume_overhead_ms")
IDENTIFIED_REL_CI = 0.5  # identified: 95 % interval within ±50 % of the value
# below these a parameter is "about zero": its interval is judged against the floor instead
IDENTIFIED_FLOOR = {
    "base_dirty_mbps": 0.005,  # x link rate in MB/s: moves a duration by 0.5 %
    "dirty_rate_coeff": 1.0,  # MB/s per GB at full CPU
    "resume_overhead_ms": 5.0,  # ms
}
VM_COEFF_SPREAD = 0.5  # prior sd of log(VM coefficient / fleet coefficient): a factor 1.65
ROBUST_SCALE = 2.0  # soft-L1 loss: quadratic within 2 noise sd, linear beyond
INITIAL_NOISE = 0.03  # relative noise assumed for the first fit, before it is estimated
MIN_NOISE = (
    0.002  # floor on the estimated relative noise (a perfect history is not infinitely precise)
)
NOT_CONVERGED_SHARE = 0.5  # a stop-and-copy of at least this share of memory: did not converge
# The expected downtime is an approximation (the history's sawtooth is not exactly averaged):
# in the recovery study (tests/unit/migration/test_calibration_recovery.py) it biases the
# fitted parameters by up to ~5 %, which the Jacobian cannot see; added to every standard error.
MODEL_REL_ERROR = 0.05
SAWTOOTH_BINS = 10  # the overhead needs the history's last rounds spread over the sawtooth...
SAWTOOTH_BINS_HIT = 7  # ...in at least 7 of 10 phase bins, or 10 exact one-round downtimes
# x link rate: starting points of the base rate (the objective has local minima, see calibrate)
BASE_STARTS = (0.0005, 0.002, 0.005, 0.01, 0.02, 0.04)
# Singular values of the (column-scaled) Jacobian under this share of the largest are treated
# as this share: least_squares' finite-difference Jacobian is accurate to about sqrt(eps)
# (1.5e-8) relative, so a direction it sees less than that is not seen at all.
COVARIANCE_RCOND = 1e-8


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


def _not_converged(model: MigrationModel, h: pd.DataFrame) -> NDArray[np.bool_]:
    """Migrations whose stop-and-copy sent at least half the memory (read off the downtime)."""
    stop_copy_mb = h["downtime_ms"].to_numpy() / 1000 * model.bandwidth_mbps
    return stop_copy_mb >= NOT_CONVERGED_SHARE * h["memory_gb"].to_numpy() * MB_PER_GB


def _linear_rate(model: MigrationModel, h: pd.DataFrame) -> NDArray[np.float64]:
    """Dirty rate read off the duration: total ≈ M / (B (1 - r)), so D = B (1 - M / (B total)).
    Only meaningful for converged migrations."""
    bandwidth = model.bandwidth_mbps
    copy_s = np.maximum(h["total_s"].to_numpy() - model.resume_overhead_ms / 1000, 1e-9)
    r = np.clip(1 - h["memory_gb"].to_numpy() * MB_PER_GB / (bandwidth * copy_s), 0, 0.99)
    return r * bandwidth


def _precopy(
    model: MigrationModel,
    memory_gb: NDArray[np.float64],
    load_pct: NDArray[np.float64],
    coeff: NDArray[np.float64] | None,
) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
    """Downtime (ms), duration (s) and ``r = D / B`` as the fit sees them.

    ``model.predict`` (expected downtime), with two changes that make it a likelihood rather
    than a planning estimate: a guest that needs one round gets its exact stop-and-copy
    ``r M`` (there is no sawtooth to average over), and past ``r = 1`` the round-limited branch
    is followed on (``M (1 + r + ... + r^K)``) instead of dropping to ``2 M``, so the
    objective stays continuous and increasing in the dirty rate.
    """
    est = model.predict(memory_gb, load_pct, coeff)
    bandwidth = model.bandwidth_mbps
    overhead_ms = model.resume_overhead_ms
    memory_mb = memory_gb * MB_PER_GB
    r = est.dirty_rate_mbps / bandwidth
    one_round = (r < 1) & (r * memory_mb <= model.stop_threshold_mb)
    downtime = np.where(one_round, r * memory_mb / bandwidth * 1000 + overhead_ms, est.downtime_ms)
    total = np.where(one_round, (1 + r) * memory_mb / bandwidth + overhead_ms / 1000, est.total_s)
    over = r >= 1
    if over.any():
        rounds = int(model.max_rounds)
        q = np.clip(np.where(over, r, 2.0), 1 + 1e-9, 10.0)  # 10 x the link: far enough
        sent = memory_mb * (q ** (rounds + 1) - 1) / (q - 1)
        total = np.where(over, sent / bandwidth + overhead_ms / 1000, total)
        downtime = np.where(over, memory_mb * q**rounds / bandwidth * 1000 + overhead_ms, downtime)
    return downtime, total, r


def _downtime_spread_ms(
    model: MigrationModel, h: pd.DataFrame, coeff: NDArray[np.float64] | None, noise: float
) -> NDArray[np.float64]:
    """Standard deviation of each observed downtime around the expected one: the sawtooth
    (``log V_k`` uniform over one factor ``r``, as in the model) plus measurement noise."""
    est = _predict(model, h, coeff)
    r = np.clip(est.dirty_rate_mbps / model.bandwidth_mbps, 1e-12, 1 - 1e-9)
    threshold = model.stop_threshold_mb
    log_inv_r = -np.log(r)
    variance = threshold**2 * ((1 - r**2) / (2 * log_inv_r) - ((1 - r) / log_inv_r) ** 2)
    # one-round guests too: their exact downtime jumps into the sawtooth band as soon as
    # they need a second round, and a tight weight there would make the fit chase that jump
    sawtooth_ms = np.where(est.converged, np.sqrt(np.maximum(variance, 0)), 0)
    sawtooth_ms /= model.bandwidth_mbps
    sawtooth_ms *= 1000
    return np.sqrt(sawtooth_ms**2 + (noise * h["downtime_ms"].to_numpy()) ** 2)


@dataclass
class _Objective:
    """Residuals of a history in units of their noise (see the module docstring)."""

    h: pd.DataFrame
    not_converged: NDArray[np.bool_]
    noise: float  # relative sd of an observed duration (and of the measured part of a downtime)
    downtime_sd_ms: NDArray[np.float64]

    def __call__(
        self, model: MigrationModel, coeff: NDArray[np.float64] | None = None
    ) -> NDArray[np.float64]:
        h, ok = self.h, ~self.not_converged
        downtime, total, r = _precopy(
            model, h["memory_gb"].to_numpy(), h["observed_load"].to_numpy(), coeff
        )
        # a stop-and-copy of M r^K >= M/2 at the round limit K means r >= 0.5^(1/K)
        least_r = NOT_CONVERGED_SHARE ** (1 / model.max_rounds)
        return np.concatenate(
            [
                np.log(total[ok] / h["total_s"].to_numpy()[ok]) / self.noise,
                (downtime[ok] - h["downtime_ms"].to_numpy()[ok]) / self.downtime_sd_ms[ok],
                np.maximum(np.log(least_r / np.maximum(r[~ok], 1e-12)), 0) / self.noise,
            ]
        )

    def rows(self) -> NDArray[np.intp]:
        """The history row of each residual (for the Jacobian's sparsity)."""
        ok = np.flatnonzero(~self.not_converged)
        return np.concatenate([ok, ok, np.flatnonzero(self.not_converged)])

    def total_noise(self, model: MigrationModel, coeff: NDArray[np.float64] | None) -> float:
        """Relative noise of the durations: robust sd (MAD) of their log residuals."""
        ok = ~self.not_converged
        _, total, _ = _precopy(
            model, self.h["memory_gb"].to_numpy(), self.h["observed_load"].to_numpy(), coeff
        )
        residual = np.log(total[ok] / self.h["total_s"].to_numpy()[ok])
        mad = np.median(np.abs(residual - np.median(residual)))
        return max(1.4826 * float(mad), MIN_NOISE)


def _objective(
    model: MigrationModel,
    h: pd.DataFrame,
    not_converged: NDArray[np.bool_],
    noise: float,
    coeff: NDArray[np.float64] | None = None,
) -> _Objective:
    return _Objective(h, not_converged, noise, _downtime_spread_ms(model, h, coeff, noise))


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
