"""Forecast accuracy: MASE, sMAPE, MAE, interval coverage, bucket accuracy.

Two layers: ``*_matrix`` functions score many series at once on aligned arrays
``(n_series, horizon)`` (what backtests use), and :func:`score_frame` / :func:`summarize`
do the same for long frames (``groupby`` over ``series_id``).

MASE divides each series' forecast MAE by the in-sample MAE of the seasonal naive forecast
(lag = ``season``). Guards, in order, when that scale is zero or undefined (flat series,
history shorter than a season): the lag-1 naive MAE, then ``ZERO_SCALE_FLOOR`` relative to
the series' mean level, then an absolute floor — so a flat series forecast exactly scores 0
and never ``inf``/``NaN``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from zhuge.ml.forecast.buckets import assign_buckets

__all__ = [
    "bucket_accuracy_matrix",
    "coverage_matrix",
    "mae_matrix",
    "mase_matrix",
    "mase_scale",
    "score_frame",
    "smape_matrix",
    "summarize",
]

ZERO_SCALE_FLOOR = 1e-3  # relative to |mean level|, when both naive scales are 0
ABSOLUTE_SCALE_FLOOR = 1e-8


def _nanmean_rows(a: np.ndarray) -> np.ndarray:
    """Row means ignoring NaN, NaN (without a warning) for an all-NaN row."""
    valid = ~np.isnan(a)
    count = valid.sum(axis=1)
    total = np.where(valid, a, 0.0).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / np.maximum(count, 1), np.nan)


SCALE_CHUNK_ROWS = 8192  # bounded temporaries on big fleets


def mase_scale(history: np.ndarray, season: int) -> np.ndarray:
    """(n,) in-sample seasonal-naive MAE of each row of ``history`` (n, T), guarded > 0."""
    history = np.asarray(history, dtype=np.float64)
    if history.shape[0] > SCALE_CHUNK_ROWS:
        return np.concatenate(
            [
                _mase_scale(history[i : i + SCALE_CHUNK_ROWS], season)
                for i in range(0, history.shape[0], SCALE_CHUNK_ROWS)
            ]
        )
    return _mase_scale(history, season)


def _mase_scale(history: np.ndarray, season: int) -> np.ndarray:
    scale = np.full(history.shape[0], np.nan)
    if season < history.shape[1]:
        scale = _nanmean_rows(np.abs(history[:, season:] - history[:, :-season]))
    if history.shape[1] > 1:
        lag1 = _nanmean_rows(np.abs(np.diff(history, axis=1)))
        scale = np.where(np.isnan(scale) | (scale <= 0), lag1, scale)
    level = np.abs(_nanmean_rows(history))
    floor = np.maximum(np.nan_to_num(level) * ZERO_SCALE_FLOOR, ABSOLUTE_SCALE_FLOOR)
    scale = np.where(np.isnan(scale) | (scale <= 0), floor, scale)
    return scale


def mae_matrix(actual: np.ndarray, forecast: np.ndarray) -> np.ndarray:
    """(n,) mean absolute error per row, ignoring NaN actuals."""
    return _nanmean_rows(np.abs(np.asarray(actual) - np.asarray(forecast)))


def mase_matrix(
    actual: np.ndarray, forecast: np.ndarray, history: np.ndarray, season: int
) -> np.ndarray:
    """(n,) MASE per row: forecast MAE / in-sample seasonal-naive MAE of ``history``."""
    return mae_matrix(actual, forecast) / mase_scale(history, season)


def smape_matrix(actual: np.ndarray, forecast: np.ndarray) -> np.ndarray:
    """(n,) symmetric MAPE in percent (0..200); a step where both are 0 counts as 0 error."""
    actual = np.asarray(actual, dtype=np.float64)
    forecast = np.asarray(forecast, dtype=np.float64)
    denom = np.abs(actual) + np.abs(forecast)
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = np.where(denom > 0, 2.0 * np.abs(actual - forecast) / denom, 0.0)
    ratio = np.where(np.isnan(actual), np.nan, ratio)
    return 100.0 * _nanmean_rows(ratio)


def coverage_matrix(actual: np.ndarray, lower: np.ndarray, upper: np.ndarray) -> np.ndarray:
    """(n,) share of steps whose actual lies within ``[lower, upper]``."""
    actual = np.asarray(actual, dtype=np.float64)
    inside = ((actual >= lower) & (actual <= upper)).astype(np.float64)
    return _nanmean_rows(np.where(np.isnan(actual), np.nan, inside))


def bucket_accuracy_matrix(actual: np.ndarray, forecast: np.ndarray, edges) -> np.ndarray:
    """(n,) share of steps whose forecast falls in the same load band as the actual."""
    actual = np.asarray(actual, dtype=np.float64)
    same = (assign_buckets(actual, edges) == assign_buckets(forecast, edges)).astype(float)
    return _nanmean_rows(np.where(np.isnan(actual), np.nan, same))


def score_frame(
    actual: pd.DataFrame,
    forecast: pd.DataFrame,
    history: pd.DataFrame,
    *,
    season: int,
    lower: str | None = None,
    upper: str | None = None,
) -> pd.DataFrame:
    """Per-series metrics from long frames.

    ``actual`` and ``history`` have ``series_id, timestamp, value``; ``forecast`` has
    ``series_id, timestamp, yhat`` (and the ``lower``/``upper`` columns when coverage is
    wanted). History must be on a regular grid (it gives the MASE scale). Returns one row per
    series: ``series_id, mae, mase, smape`` (+ ``coverage``).
    """
    joined = actual.merge(forecast, on=["series_id", "timestamp"], how="inner")
    err = (joined["value"] - joined["yhat"]).abs()
    denom = joined["value"].abs() + joined["yhat"].abs()
    with np.errstate(invalid="ignore", divide="ignore"):
        sm = np.where(denom > 0, 200.0 * err / denom, 0.0)
    parts = pd.DataFrame({"series_id": joined["series_id"], "mae": err, "smape": sm})
    if lower is not None and upper is not None:
        parts["coverage"] = (
            (joined["value"] >= joined[lower]) & (joined["value"] <= joined[upper])
        ).astype(float)
    table = parts.groupby("series_id", sort=True).mean()
    scales = {}
    for sid, grp in history.sort_values("timestamp").groupby("series_id", sort=True):
        scales[sid] = mase_scale(grp["value"].to_numpy(np.float64)[None, :], season)[0]
    table["mase"] = table["mae"] / pd.Series(scales).reindex(table.index)
    cols = ["mae", "mase", "smape"] + (["coverage"] if "coverage" in table else [])
    return table[cols].reset_index()


def summarize(per_series: pd.DataFrame, *, by: str | list[str] = "model") -> pd.DataFrame:
    """Overall table: mean of each metric over series (MASE also as median), by ``by``."""
    metrics = [
        c
        for c in ("mase", "smape", "mae", "coverage", "bucket_accuracy")
        if c in per_series and per_series[c].notna().any()
    ]
    grouped = per_series.groupby(by, sort=False)
    table = grouped[metrics].mean()
    table["mase_median"] = grouped["mase"].median() if "mase" in metrics else np.nan
    table["n_series"] = per_series.groupby(by, sort=False)["series_id"].nunique()
    return table.reset_index()
