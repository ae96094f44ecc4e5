"""Baseline forecasts for a whole fleet at once: numpy on the ``(n_series, n_steps)`` matrix.

Every function takes ``values`` (right-aligned, NaN where unobserved), the ``horizon`` in steps
and the daily ``season`` in steps, and returns ``(n_series, horizon)``. NaN is tolerated: each
falls back to the last observed value where its own rule has no data (a series shorter than a
season, a gap at that phase), and a series with no observation at all forecasts NaN.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

__all__ = [
    "BASELINES",
    "last_observed",
    "last_value",
    "nanmedian",
    "seasonal_mean",
    "seasonal_median",
    "seasonal_naive",
    "window_median",
]

WINDOW_MEDIAN_SEASONS = 1  # window_median looks back one season (a day)
SEASONAL_MEDIAN_SEASONS = 7  # seasonal_median: same time of day over the last week


def last_observed(values: np.ndarray) -> np.ndarray:
    """(n,) the last non-NaN value of each row (NaN for an empty row)."""
    observed = ~np.isnan(values)
    last = values.shape[1] - 1 - observed[:, ::-1].argmax(axis=1)
    out = values[np.arange(values.shape[0]), last]
    return np.where(observed.any(axis=1), out, np.nan)


def last_value(values: np.ndarray, horizon: int, season: int = 1) -> np.ndarray:
    """Repeat each series' last observed value."""
    return np.repeat(last_observed(values)[:, None], horizon, axis=1)


def _fill_rows(a: np.ndarray, fallback: np.ndarray) -> np.ndarray:
    return np.where(np.isnan(a), fallback[:, None], a)


def _season_block(values: np.ndarray, season: int, k: int) -> np.ndarray:
    """(n, k, season): the last ``k`` whole seasons, most recent first, NaN-padded."""
    n, t = values.shape
    need = k * season
    if t < need:
        values = np.concatenate([np.full((n, need - t), np.nan), values], axis=1)
    block = values[:, -need:].reshape(n, k, season)
    return block[:, ::-1, :]


def _profile_to_horizon(profile: np.ndarray, horizon: int) -> np.ndarray:
    season = profile.shape[1]
    return profile[:, np.arange(horizon) % season]


def seasonal_naive(values: np.ndarray, horizon: int, season: int) -> np.ndarray:
    """Repeat the last season; a missing phase takes the same phase of an earlier season."""
    block = _season_block(values, season, SEASONAL_MEDIAN_SEASONS)
    # first non-NaN along the "seasons back" axis
    observed = ~np.isnan(block)
    first = observed.argmax(axis=1)  # (n, season)
    profile = np.take_along_axis(block, first[:, None, :], axis=1)[:, 0, :]
    last = last_observed(values)
    profile = _fill_rows(profile, last)
    # less than a season of data is no season: the last value, not a partial profile
    observed_rows = ~np.isnan(values)
    first_obs = np.where(observed_rows.any(axis=1), observed_rows.argmax(axis=1), values.shape[1])
    short = values.shape[1] - first_obs < season
    profile[short] = last[short, None]
    return _profile_to_horizon(profile, horizon)


def nanmedian(a: np.ndarray, axis: int) -> np.ndarray:
    """``np.nanmedian`` without the all-NaN warning (NaN is the answer there)."""
    # sort puts NaN last; take the middle of the observed part
    s = np.sort(a, axis=axis)
    count = (~np.isnan(s)).sum(axis=axis, keepdims=True)
    lo = np.maximum((count - 1) // 2, 0)
    hi = np.maximum(count // 2, 0)
    lo_v = np.take_along_axis(s, lo, axis=axis)
    hi_v = np.take_along_axis(s, np.minimum(hi, s.shape[axis] - 1), axis=axis)
    med = np.squeeze((lo_v + hi_v) / 2.0, axis=axis)
    return np.where(np.squeeze(count, axis=axis) > 0, med, np.nan)


def window_median(values: np.ndarray, horizon: int, season: int) -> np.ndarray:
    """Median of the last ``season`` steps (one day), repeated."""
    window = values[:, -max(1, season * WINDOW_MEDIAN_SEASONS) :]
    med = nanmedian(window, axis=1)
    med = np.where(np.isnan(med), last_observed(values), med)
    return np.repeat(med[:, None], horizon, axis=1)


def seasonal_median(values: np.ndarray, horizon: int, season: int) -> np.ndarray:
    """Per time of day, the median over the last week of days (robust daily profile)."""
    block = _season_block(values, season, SEASONAL_MEDIAN_SEASONS)
    profile = _fill_rows(nanmedian(block, axis=1), last_observed(values))
    return _profile_to_horizon(profile, horizon)


def seasonal_mean(values: np.ndarray, horizon: int, season: int) -> np.ndarray:
    """Per time of day, the mean over the last week of days (the 7-day profile a planner
    would draw by hand; a decision baseline, not an ``auto`` candidate)."""
    block = _season_block(values, season, SEASONAL_MEDIAN_SEASONS)
    with np.errstate(invalid="ignore"):
        counts = (~np.isnan(block)).sum(axis=1)
        profile = np.where(counts > 0, np.nansum(block, axis=1) / np.maximum(counts, 1), np.nan)
    return _profile_to_horizon(_fill_rows(profile, last_observed(values)), horizon)


BASELINES: dict[str, Callable[[np.ndarray, int, int], np.ndarray]] = {
    "last_value": last_value,
    "seasonal_naive": seasonal_naive,
    "window_median": window_median,
    "seasonal_median": seasonal_median,
}
