"""Job kinds ``prepare``, ``train``, ``forecast`` and ``backtest``: fleet forecasting on the platform.

Every kind starts the same way (:func:`prepare_fleet`):

1. **stage**: the job streams the telemetry (CSV/Parquet at any fsspec URL, or a SQL query)
   as chunks of ``chunk_series`` whole series and writes each to ``staged/part-N.parquet``
   in its attempt folder (removed once cleaned). Memory holds one chunk. Input not grouped by ``series_id`` is
   hash-partitioned first (one more pass through temporary files). SQL results are read
   whole, so a query must fit in memory.
2. **clean**: the staged chunks are spread over the cluster (``ctx.map``, one part per chunk):
   each is cleaned on its sample grid and aggregated to the forecast grid
   (:mod:`zhuge.data.preparation`); every part writes ``prepared/part-N`` and its per-series
   cleaning report ``reports/part-N``. Host/cluster levels add the chunks' partial sums up
   in the job and aggregate the (8-60x fewer) host series in time.

Then ``train`` fits a :class:`~zhuge.ml.forecast.Forecaster` on a random sample of at most
``train_series`` prepared series (the global GBM learns from a sample anyway; per-series
models learn nothing fleet-wide) and saves it as a manifest-verified artifact with how its
input was prepared (``model/``); ``forecast`` trains the same way (or loads ``model_from``)
and predicts every chunk in parallel parts, writing ``forecast/part-N``, then one
``forecast.parquet`` (the result's ``output``, which ``zhuge forecast --out`` downloads);
``backtest`` scores rolling origins chunk by chunk, always next to the baselines. Bad input
raises ``DataError``/``InvalidRequest``: the job goes dead at once.
"""

from __future__ import annotations

from zhuge.jobs.forecast.checks import check_request
from zhuge.jobs.forecast.kinds import run_backtest, run_forecast, run_prepare, run_train
from zhuge.jobs.forecast.models import find_model
from zhuge.jobs.forecast.params import (
    CHUNK_SERIES,
    TRAIN_SERIES,
    BacktestParams,
    FleetInput,
    ForecastParams,
    ModelChoice,
    PrepareParams,
    TrainParams,
    horizon_steps,
    parse_horizon,
)
from zhuge.jobs.forecast.prepare import PreparedFleetParts, prepare_fleet

__all__ = [
    "CHUNK_SERIES",
    "TRAIN_SERIES",
    "BacktestParams",
    "FleetInput",
    "ForecastParams",
    "ModelChoice",
    "PrepareParams",
    "PreparedFleetParts",
    "TrainParams",
    "check_request",
    "find_model",
    "horizon_steps",
    "parse_horizon",
    "prepare_fleet",
    "run_backtest",
    "run_forecast",
    "run_prepare",
    "run_train",
]
