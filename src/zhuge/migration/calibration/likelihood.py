"""What the model predicts for each past migration, and the residuals of a history in units of
their noise: the objective both fits minimise (see the package docstring, steps 1-3)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from zhuge.migration.model import MB_PER_GB, MigrationModel

NOT_CONVERGED_SHARE = 0.5  # a stop-and-copy of at least this share of memory: did not converge
# floor on the estimated relative noise (a perfect history is not infinitely precise)
MIN_NOISE = 0.002


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
