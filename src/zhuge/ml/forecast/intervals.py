"""Conformal forecast intervals: held-out errors -> offsets in units of each series' own spread.

The quantile columns of a forecast are ``yhat + spread_i * offset[level, step]``, where
``spread_i`` is a function of series ``i``'s history only (so a saved model can forecast any
later history, or new series, without per-series state) and ``offset`` is learned from the
held-out errors of the rolling-origin backtest. Three choices, each measured (issue 16,
``benchmarks/README_migration.md``):

* **spread**: the *median* absolute seasonal difference over the last ``SPREAD_DAYS`` days,
  not the MASE scale (the *mean* of it). A bursty VM's mean difference is inflated by its
  bursts while most of its hours are as calm as a quiet VM's; in MASE units its intervals came
  out too wide and the quiet VMs' too narrow (87 % against 71 % coverage on the fleet of
  ``tests/unit/forecast/test_intervals.py``; on NAB the burstier half was the narrow one, 65 %
  against 78 %). The median puts both on one footing. Where it is zero (a flat or stuck series)
  the MASE scale, with its guards, is used instead.
* **pooled over steps, with a spread per step**: one window holds ``n_series * horizon``
  errors; pooling the steps (each divided by its step's median absolute error relative to all
  steps, then multiplied back) keeps the growth of errors with the horizon but does not estimate
  a 10 % tail from 14 errors per step on a fleet of 7 series.
* **per window, then the median over windows**: each held-out window gets its own
  finite-sample conformal quantile (the ``ceil((n + 1) q)``-th smallest error for an upper
  level, ``floor((n + 1) q)``-th for a lower one), and the offset is the median of those over
  the windows. A window whose model had not yet seen a weekday pattern (a Monday forecast
  from one week of history) has errors several times the others'; pooled, such a window made
  every interval wide for the next day, which the final model, trained on all of the history,
  forecasts far better. The median keeps one unrepresentative window from setting the width.

The result is a pure function of the history: the windows all lie before the forecast origin.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from zhuge.ml.forecast.metrics import SCALE_CHUNK_ROWS, mase_scale

__all__ = ["SPREAD_DAYS", "conformal_offsets", "conformal_quantile", "interval_spread"]

SPREAD_DAYS = 14  # days of history the spread looks back on (what a fitted model keeps)


def interval_spread(history: np.ndarray, season: int) -> np.ndarray:
    """(n,) median absolute seasonal difference of each row over its last ``SPREAD_DAYS``
    days; the MASE scale (always > 0) where that median is zero or undefined."""
    history = np.asarray(history, dtype=np.float64)
    if history.shape[0] > SCALE_CHUNK_ROWS:  # bounded temporaries on big fleets
        return np.concatenate(
            [
                interval_spread(history[i : i + SCALE_CHUNK_ROWS], season)
                for i in range(0, history.shape[0], SCALE_CHUNK_ROWS)
            ]
        )
    recent = history[:, -(SPREAD_DAYS + 1) * season :]
    spread = np.full(history.shape[0], np.nan)
    if recent.shape[1] > season:
        diff = np.abs(recent[:, season:] - recent[:, :-season])
        seen = np.isfinite(diff).any(axis=1)
        if seen.any():
            spread[seen] = np.nanmedian(diff[seen], axis=1)
    fallback = mase_scale(history, season)
    return np.where(np.isfinite(spread) & (spread > 0), spread, fallback)


def conformal_quantile(errors: np.ndarray, level: float) -> float:
    """Finite-sample conformal quantile of ``errors`` (NaN ignored; 0.0 when there are none).

    An upper level ``q >= 0.5`` takes the ``ceil((n + 1) q)``-th smallest error (the largest
    when that rank passes ``n``), a lower one the ``floor((n + 1) q)``-th (the smallest when it
    is below 1): at least a share ``q`` of a new exchangeable error lies below an upper offset,
    at most ``q`` below a lower one.
    """
    x = np.sort(errors[np.isfinite(errors)])
    n = x.size
    if n == 0:
        return 0.0
    rounded = np.ceil if level >= 0.5 else np.floor
    rank = int(rounded((n + 1) * level))
    return float(x[min(max(rank, 1), n) - 1])


def conformal_offsets(scaled_errors: np.ndarray, levels: Sequence[float]) -> np.ndarray:
    """``(len(levels), horizon)`` offsets from held-out errors ``(windows, n_series, horizon)``
    already divided by each series' spread (see the module docstring for the rule)."""
    errors = np.asarray(scaled_errors, dtype=np.float64)
    horizon = errors.shape[-1]
    by_step = np.moveaxis(errors, -1, 0).reshape(horizon, -1)
    step_abs = np.array([_nanmedian(np.abs(row)) for row in by_step])
    overall = _nanmedian(np.abs(errors))
    step_factor = step_abs / overall if overall > 0 else np.ones(horizon)
    step_factor = np.where(np.isfinite(step_factor) & (step_factor > 0), step_factor, 1.0)
    per_window = [
        [conformal_quantile(window / step_factor, q) for q in levels]
        for window in errors
        if np.isfinite(window).any()
    ]
    if not per_window:
        return np.zeros((len(levels), horizon))
    pooled = np.median(np.asarray(per_window), axis=0)  # (levels,)
    return pooled[:, None] * step_factor[None, :]


def _nanmedian(a: np.ndarray) -> float:
    a = a[np.isfinite(a)]
    return float(np.median(a)) if a.size else float("nan")
