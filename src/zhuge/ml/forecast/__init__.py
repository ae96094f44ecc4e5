"""Fleet forecasting: baselines, statsforecast models, a global LightGBM, an optional LSTM,
automatic selection by backtest, conformal intervals, load bands, and saveable forecasters.

Pure: imports nothing from the platform layers (jobs, api, cli).
"""

from zhuge.ml.forecast._fleet import Fleet, daily_season, to_fleet, to_long
from zhuge.ml.forecast.auto import Selection
from zhuge.ml.forecast.backtest import BacktestResult, backtest, backtest_fleet
from zhuge.ml.forecast.baselines import (
    BASELINES,
    last_value,
    seasonal_median,
    seasonal_naive,
    window_median,
)
from zhuge.ml.forecast.buckets import DEFAULT_EDGES, assign_buckets, bucket_labels
from zhuge.ml.forecast.forecaster import Forecaster, quantile_column
from zhuge.ml.forecast.gbm import GBMOptions, GlobalGBM
from zhuge.ml.forecast.metrics import (
    coverage_matrix,
    mae_matrix,
    mase_matrix,
    mase_scale,
    score_frame,
    smape_matrix,
    summarize,
)
from zhuge.ml.forecast.models import MODEL_NAMES
from zhuge.ml.forecast.persistence import ARTIFACT_KIND, load, save
from zhuge.ml.forecast.stats import STATS_MODELS, statsforecast_predict
from zhuge.ml.forecast.synthetic import synthetic_fleet

__all__ = [
    "ARTIFACT_KIND",
    "BASELINES",
    "DEFAULT_EDGES",
    "MODEL_NAMES",
    "STATS_MODELS",
    "BacktestResult",
    "Fleet",
    "Forecaster",
    "GBMOptions",
    "GlobalGBM",
    "Selection",
    "assign_buckets",
    "backtest",
    "backtest_fleet",
    "bucket_labels",
    "coverage_matrix",
    "daily_season",
    "last_value",
    "load",
    "mae_matrix",
    "mase_matrix",
    "mase_scale",
    "quantile_column",
    "save",
    "score_frame",
    "seasonal_median",
    "seasonal_naive",
    "smape_matrix",
    "statsforecast_predict",
    "summarize",
    "synthetic_fleet",
    "to_fleet",
    "to_long",
    "window_median",
]
