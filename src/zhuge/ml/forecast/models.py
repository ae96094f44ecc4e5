"""The models a :class:`~zhuge.ml.forecast.Forecaster` can run, behind one small contract.

A model fits on a :class:`Fleet` and forecasts ``(n_series, horizon)`` from the end of any
fleet on the same grid (the fleet it was fitted on, a later one, or new series). Baselines and
statsforecast models learn nothing fleet-wide, so their ``fit`` is a no-op and the per-series
work happens at forecast time.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from zhuge.errors import InvalidRequest
from zhuge.ml.forecast._fleet import Fleet
from zhuge.ml.forecast.baselines import BASELINES
from zhuge.ml.forecast.gbm import GBMOptions, GlobalGBM
from zhuge.ml.forecast.harmonic import harmonic_profile
from zhuge.ml.forecast.stats import STATS_MODELS, statsforecast_predict

__all__ = ["MODEL_NAMES", "FleetModel", "make_model"]

MODEL_NAMES = ("gbm", *BASELINES, "harmonic", *STATS_MODELS, "lstm")


class FleetModel(Protocol):
    name: str

    def fit(self, fleet: Fleet, horizon: int) -> FleetModel: ...

    def predict(self, fleet: Fleet, horizon: int) -> np.ndarray: ...


@dataclass
class BaselineModel:
    name: str

    def fit(self, fleet: Fleet, horizon: int) -> BaselineModel:
        return self

    def predict(self, fleet: Fleet, horizon: int) -> np.ndarray:
        return BASELINES[self.name](fleet.values, horizon, fleet.season)


@dataclass
class HarmonicModel:
    """Each series' robust harmonic daily curve (:mod:`.harmonic`); learns nothing fleet-wide."""

    name: str = "harmonic"

    def fit(self, fleet: Fleet, horizon: int) -> HarmonicModel:
        return self

    def predict(self, fleet: Fleet, horizon: int) -> np.ndarray:
        return harmonic_profile(fleet.values, fleet.steps_since_monday(), horizon, fleet.season)


@dataclass
class StatsModel:
    name: str
    n_jobs: int = 1

    def fit(self, fleet: Fleet, horizon: int) -> StatsModel:
        return self

    def predict(self, fleet: Fleet, horizon: int) -> np.ndarray:
        return statsforecast_predict(
            fleet.values, horizon, fleet.season, model=self.name, n_jobs=self.n_jobs
        )


@dataclass
class GBMModel:
    options: GBMOptions = field(default_factory=GBMOptions)
    name: str = "gbm"
    model_: GlobalGBM | None = None

    def fit(self, fleet: Fleet, horizon: int) -> GBMModel:
        self.model_ = GlobalGBM(self.options).fit(
            fleet.values,
            fleet.steps_since_monday(),
            season=fleet.season,
            freq_ns=fleet.freq.value,
            horizon=horizon,
        )
        return self

    def predict(self, fleet: Fleet, horizon: int) -> np.ndarray:
        return self.model_.predict(fleet.values, fleet.steps_since_monday(), horizon)


def make_model(
    name: str,
    *,
    gbm_options: GBMOptions | None = None,
    lstm_options: dict[str, Any] | None = None,
    n_jobs: int = 1,
) -> FleetModel:
    if name in BASELINES:
        return BaselineModel(name)
    if name == "harmonic":
        return HarmonicModel()
    if name in STATS_MODELS:
        return StatsModel(name, n_jobs=n_jobs)
    if name == "gbm":
        return GBMModel(gbm_options or GBMOptions())
    if name == "lstm":
        from zhuge.ml.forecast.torch_lstm import LSTMModel

        return LSTMModel(**(lstm_options or {}))
    raise InvalidRequest(f"unknown forecast model {name!r}; known: auto, {', '.join(MODEL_NAMES)}")
