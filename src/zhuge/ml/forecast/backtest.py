"""Rolling-origin backtest of forecasters on a fleet, always beside the baselines.

Origins are the last ``windows`` horizons (``step`` apart, ``horizon`` by default): for each,
every model is fitted on the history before the origin and scored on the ``horizon`` steps
after it. ``model="auto"`` runs its own selection inside each window's history, so its score
is honest (nothing after the origin is seen). Results: one row per (model, window, series) and
an overall table per model.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from zhuge.errors import DataError
from zhuge.ml.forecast._fleet import Fleet, to_fleet
from zhuge.ml.forecast.auto import history_lengths
from zhuge.ml.forecast.baselines import BASELINES
from zhuge.ml.forecast.forecaster import Forecaster, quantile_column
from zhuge.ml.forecast.metrics import (
    bucket_accuracy_matrix,
    coverage_matrix,
    mae_matrix,
    mase_scale,
    smape_matrix,
    summarize,
)

__all__ = ["BacktestResult", "WindowHook", "backtest", "backtest_fleet"]

# Called once per rolling origin with (window, history, actual, {model: yhat}) after every
# model has forecast it: how the migration decision backtest scores plans beside the points.
WindowHook = Callable[[int, Fleet, np.ndarray, dict[str, np.ndarray]], None]


@dataclass
class BacktestResult:
    """``per_series``: model, window, series_id, mase, smape, mae, coverage, bucket_accuracy.
    ``overall``: per model, means over series and windows (+ median MASE, fit seconds)."""

    per_series: pd.DataFrame
    overall: pd.DataFrame
    selections: dict[str, list[dict[str, Any]]]  # model -> selection_ of each window


def backtest(
    frame: pd.DataFrame,
    *,
    freq: str,
    horizon: int,
    windows: int = 3,
    models: Sequence[str] = ("auto",),
    step: int | None = None,
    quantiles: Sequence[float] = (0.1, 0.9),
    buckets: Sequence[float] | None = None,
    **forecaster_params: Any,
) -> BacktestResult:
    """Backtest ``models`` (and every baseline) on a long frame ``series_id, timestamp, value``.

    ``buckets`` (edges) adds the share of steps whose forecast load band is right.
    ``forecaster_params`` go to every :class:`Forecaster` (``gbm_params``, ``selection`` ...).
    """
    fleet = to_fleet(frame, freq=freq)
    return backtest_fleet(
        fleet,
        horizon=horizon,
        windows=windows,
        models=models,
        step=step,
        quantiles=quantiles,
        buckets=buckets,
        **forecaster_params,
    )


def backtest_fleet(
    fleet: Fleet,
    *,
    horizon: int,
    windows: int = 3,
    models: Sequence[str] = ("auto",),
    step: int | None = None,
    quantiles: Sequence[float] = (0.1, 0.9),
    buckets: Sequence[float] | None = None,
    on_window: WindowHook | None = None,
    fitted: Mapping[str, Forecaster] | None = None,
    **forecaster_params: Any,
) -> BacktestResult:
    """:func:`backtest` on a fleet matrix; ``on_window`` sees each origin's forecasts.

    ``fitted``: name -> a forecaster fitted already (a saved model, frozen): it is not fitted
    again, only asked to forecast each window from the history before it, and scored beside
    the others (its ``horizon`` must be ``horizon``)."""
    lengths = history_lengths(fleet.n_steps, horizon, windows, step)
    if min(lengths) < 1:
        raise DataError(
            f"{fleet.n_steps} steps cannot hold {windows} backtest windows of {horizon} steps"
        )
    frozen = dict(fitted or {})
    names = list(dict.fromkeys([*frozen, *models, *BASELINES]))
    rows: list[pd.DataFrame] = []
    seconds: dict[str, float] = dict.fromkeys(names, 0.0)
    selections: dict[str, list[dict[str, Any]]] = {n: [] for n in names}
    levels = sorted(quantiles)
    for w, t in enumerate(lengths):
        history = fleet.head(t)
        actual = fleet.values[:, t : t + horizon]
        scale = mase_scale(history.values, history.season)
        forecasts: dict[str, np.ndarray] = {}
        for name in names:
            started = time.process_time()
            if name in frozen:
                forecaster = frozen[name]
            else:
                forecaster = Forecaster(
                    model=name,
                    freq=fleet.freq,
                    horizon=horizon,
                    quantiles=tuple(levels),
                    target="bucket" if buckets is not None else "mean",
                    buckets=tuple(buckets) if buckets is not None else (0, 25, 50, 75, 100),
                    **forecaster_params,
                )
                forecaster._validate()
                forecaster._fit_fleet(history)
            columns = forecaster._predict_fleet(history)
            seconds[name] += time.process_time() - started
            selections[name].append(getattr(forecaster, "selection_", {}))
            yhat = columns["yhat"]
            forecasts[name] = yhat
            table = pd.DataFrame(
                {
                    "model": name,
                    "window": w,
                    "series_id": fleet.series_ids,
                    "mase": mae_matrix(actual, yhat) / scale,
                    "smape": smape_matrix(actual, yhat),
                    "mae": mae_matrix(actual, yhat),
                }
            )
            if len(levels) >= 2 and quantile_column(levels[0]) in columns:
                lower = columns[quantile_column(levels[0])]
                upper = columns[quantile_column(levels[-1])]
                table["coverage"] = coverage_matrix(actual, lower, upper)
            if buckets is not None:
                table["bucket_accuracy"] = bucket_accuracy_matrix(actual, yhat, buckets)
            rows.append(table)
        if on_window is not None:
            on_window(w, history, actual, forecasts)
    per_series = pd.concat(rows, ignore_index=True)
    overall = summarize(per_series, by="model")
    overall["cpu_seconds"] = overall["model"].map(seconds)
    overall["cpu_ms_per_series_window"] = (
        1000 * overall["cpu_seconds"] / (fleet.n_series * len(lengths))
    )
    return BacktestResult(
        per_series, overall.sort_values("mase").reset_index(drop=True), selections
    )
