"""Each series' smooth daily shape: a few Fourier harmonics of the time of day, fitted per
series by robust regression, with its own curve for weekends.

A migration plan ranks the windows of each VM's day, so what it needs from a forecast is the
shape of that day, not the next hour's level. The 7-day profile (each slot's mean over a week)
estimates the shape from 7 noisy values per slot and is pulled up wherever a burst fell; here
the whole history of ``HARMONIC_DAYS`` days estimates ``2 * HARMONIC_ORDER + 1`` numbers per
day type, and Tukey's bisquare weights (iteratively reweighted least squares, the scale the
median absolute residual) give bursts and outages no say. Weekends get a deviation from the
weekday curve (level and shape), so an office VM's quieter weekend neither drags its weekday
forecast down nor is forgotten on Saturday; where the history holds no weekend, the deviation
is zero (a small ridge penalty on it only).

What it does not see: a level shift within the history moves the fitted level part-way (the
robust weights side with the longer stretch), and anything that is not periodic in the day.
Measured by the plans it induces in ``benchmarks/README_migration.md``.
"""

from __future__ import annotations

import numpy as np

from zhuge.ml.forecast.baselines import nanmedian, seasonal_mean

__all__ = ["HARMONIC_DAYS", "HARMONIC_ORDER", "harmonic_profile"]

HARMONIC_ORDER = 3  # harmonics of the day: periods of 24, 12 and 8 hours
HARMONIC_DAYS = 14  # days of history fitted on
ROBUST_ITERATIONS = 3  # bisquare reweightings after the least-squares start
BISQUARE_C = 4.685  # Tukey's constant: 95 % efficiency under Gaussian noise
WEEKEND_RIDGE = 1e-3  # keeps the weekend deviation at 0 when no weekend was observed
MIN_DAYS = 2  # fewer observed days than this: the 7-day profile instead
CHUNK_CELLS = 1_000_000  # rows x steps solved at once: the design is 8 x terms bytes a cell


def _design(slot: np.ndarray, weekend: np.ndarray, season: int, order: int) -> np.ndarray:
    """(rows, steps, 2 * (2 * order + 1)): the daily harmonics, then the same times weekend."""
    angle = 2 * np.pi * slot / season
    terms = [np.ones_like(angle)]
    for k in range(1, order + 1):
        terms += [np.cos(k * angle), np.sin(k * angle)]
    base = np.stack(terms, axis=-1)
    return np.concatenate([base, base * weekend[..., None]], axis=-1)


def _fit_rows(
    values: np.ndarray, steps_since_monday: np.ndarray, horizon: int, season: int, order: int
) -> np.ndarray:
    """Rows whose fit is not to be trusted (too few days observed) come back NaN."""
    t = values.shape[1]
    steps = steps_since_monday[:, None] + np.arange(t + horizon)[None, :]
    design = _design(steps % season, ((steps // season) % 7 >= 5).astype(float), season, order)
    x, y = design[:, :t], values
    observed = np.isfinite(y)
    y = np.where(observed, y, 0.0)
    weight = observed.astype(float)
    terms = design.shape[-1]
    on_weekend = np.arange(terms) >= terms // 2
    # each row's own penalty, relative to its own data: rows never sway one another
    penalty = (
        WEEKEND_RIDGE * np.maximum(observed.sum(axis=1), 1)[:, None, None] * np.diag(on_weekend)
    )
    for iteration in range(ROBUST_ITERATIONS + 1):
        # (+ a token ridge on every term: a row with no weight left is solvable, then replaced)
        gram = np.einsum("ntp,nt,ntq->npq", x, weight, x) + penalty + 1e-9 * np.eye(terms)
        moment = np.einsum("ntp,nt,nt->np", x, weight, y)
        coef = np.linalg.solve(gram, moment[..., None])[..., 0]
        if iteration == ROBUST_ITERATIONS:
            break
        residual = np.where(observed, y - np.einsum("ntq,nq->nt", x, coef), np.nan)
        scale = 1.4826 * nanmedian(np.abs(residual), axis=1)[:, None]
        scale = np.where(np.isfinite(scale) & (scale > 1e-9), scale, np.inf)
        u = np.nan_to_num(residual / (BISQUARE_C * scale), nan=1.0)
        weight = np.where(observed & (np.abs(u) < 1), (1 - u**2) ** 2, 0.0)
    forecast = np.einsum("ntq,nq->nt", design[:, t:], coef)
    forecast[observed.sum(axis=1) < MIN_DAYS * season] = np.nan
    return forecast


def harmonic_profile(
    values: np.ndarray,
    steps_since_monday: np.ndarray,
    horizon: int,
    season: int,
    *,
    order: int = HARMONIC_ORDER,
) -> np.ndarray:
    """(n, horizon): each row's robust harmonic daily curve (weekday or weekend, as each
    forecast step falls) over the ``horizon`` steps after its last column.

    ``values``: (n, T) right-aligned, NaN where unobserved; ``steps_since_monday``: (n,) grid
    steps from a Monday 00:00 to each row's column 0 (:meth:`Fleet.steps_since_monday`).
    Rows with fewer than ``MIN_DAYS`` days observed in the window get the 7-day profile."""
    values = np.asarray(values, dtype=np.float64)
    n, t = values.shape
    if n == 0:
        return np.zeros((0, horizon))
    used = min(t, HARMONIC_DAYS * season)
    recent = values[:, t - used :]
    start = np.asarray(steps_since_monday, dtype=np.int64) + (t - used)
    rows = max(1, CHUNK_CELLS // (used + horizon))
    forecast = np.concatenate(
        [
            _fit_rows(recent[i : i + rows], start[i : i + rows], horizon, season, order)
            for i in range(0, n, rows)
        ]
    )
    bad = ~np.isfinite(forecast).all(axis=1)
    if bad.any():
        forecast[bad] = seasonal_mean(values[bad], horizon, season)
    return forecast
