"""``Forecaster``: forecast every series of a fleet, with model selection, intervals and bands.

Contract (scikit-learn style): keyword-only ``__init__`` that stores parameters only; ``fit``
validates, learns and returns ``self``; learned state ends in ``_``. The numeric work lives in
the matrix-level modules beside it (``baselines``, ``gbm``, ``stats``, ``auto``).

What ``fit`` does:

1. pivots the long frame to a right-aligned matrix (:mod:`._fleet`);
2. series shorter than ``2 * season`` (two days) get a baseline (seasonal naive with a day of
   data, else last value) and a note in ``notes_``;
3. ``model="auto"`` backtests ``candidates`` (default: the global GBM and every baseline, plus
   AutoETS on small fleets) on
   the last ``backtest_windows`` horizons and keeps the best (globally or per series);
   ``selection_`` records the scores and the reason. A named model is backtested only when
   intervals are asked for (to calibrate them);
4. quantile columns are conformal (:mod:`.intervals`): the chosen model's held-out errors on
   up to ``calibration_windows`` horizons (the selection's windows and older ones), divided
   by each series' spread (median absolute seasonal difference), give offsets per level and
   step (finite-sample quantile per window, median over windows), added back at each series'
   spread;
5. the chosen model(s) are refitted on the whole history.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator
from sklearn.utils.validation import check_is_fitted

from zhuge.errors import DataError, InvalidRequest
from zhuge.ml.forecast._fleet import Fleet, daily_season, to_fleet, to_long
from zhuge.ml.forecast.auto import Selection, WindowForecasts, backtest_models, select
from zhuge.ml.forecast.baselines import BASELINES
from zhuge.ml.forecast.buckets import DEFAULT_EDGES, assign_buckets, bucket_labels
from zhuge.ml.forecast.gbm import GBMOptions
from zhuge.ml.forecast.intervals import conformal_offsets, interval_spread
from zhuge.ml.forecast.models import MODEL_NAMES, FleetModel, make_model

__all__ = ["Forecaster", "quantile_column"]

# what auto chooses among by MASE (the default), and by the decision (``--select-by decision``:
# the plans each candidate's forecasts induce). The harmonic daily curve is a candidate by the
# decision only: chosen by MASE it lost 1.5 % of MASE on the 1,000-VM benchmark (one backtest
# window of three where it beat the GBM on the selection's days, not on the next);
# benchmarks/README_migration.md says what it does for the plans.
MASE_CANDIDATES = ("gbm", *BASELINES)
AUTO_CANDIDATES = (*MASE_CANDIDATES, "harmonic")
DECISION_ONLY_CANDIDATES = tuple(c for c in AUTO_CANDIDATES if c not in MASE_CANDIDATES)
# small fleets also try AutoETS: a global model has little to learn from a handful of series
# (it won on NAB's 10 CPU series), and at ~0.25 s CPU per series and fit it stays affordable
# there. ETS seasonality is for short seasons only (a day of at most 24 steps).
SMALL_FLEET_SERIES = 40
SMALL_FLEET_EXTRA = ("autoets",)
MIN_SEASONS_FOR_MODEL = 2  # series shorter than two days get a baseline
CHOSEN = "chosen"  # held-out forecasts of each series' own model, for the intervals


def quantile_column(q: float) -> str:
    """``0.1 -> "yhat_q10"``, ``0.975 -> "yhat_q97.5"``."""
    return f"yhat_q{q * 100:g}"


class Forecaster(BaseEstimator):
    """Forecast a fleet of series ``horizon`` steps ahead.

    Parameters (keyword-only):
        model: ``"auto"``, ``"gbm"``, a baseline (``seasonal_naive``, ``last_value``,
            ``window_median``, ``seasonal_median``), ``"harmonic"`` (each series' robust
            daily curve, :mod:`.harmonic`), ``"autoets"``, ``"autoarima"``,
            ``"mstl"`` or ``"lstm"`` (needs ``zhuge[torch]``).
        freq: grid step of the input (``"5min"``, ``"1h"``).
        horizon: steps to forecast.
        quantiles: levels of the interval columns (``yhat_q10`` ...); empty for none.
        target: ``"mean"`` (point forecast) or ``"bucket"`` (also the load band of each step,
            edges ``buckets``; selection then minimises the share of wrong bands).
        selection: ``"global"`` (one model for the fleet) or ``"per_series"``.
        candidates: models ``auto`` chooses among (default: gbm and the baselines, plus
            AutoETS for fleets of at most ``SMALL_FLEET_SERIES`` series on an hourly or
            coarser grid).
        backtest_windows: held-out horizons the selection is scored on.
        calibration_windows: held-out horizons the intervals are calibrated on (at most; as
            many as the history leaves room for, and never fewer than ``backtest_windows``).
        gbm_params: :class:`~zhuge.ml.forecast.gbm.GBMOptions` fields, e.g. ``{"num_boost_round": 50}``.
        lstm_params: keyword arguments of the LSTM model.
        max_history: keep at most this many recent steps per series (memory bound).
        n_jobs: threads for LightGBM / processes for statsforecast.
        random_state: seed for the GBM's sampling and boosting and the LSTM's training
            (``lstm_params['random_state']`` wins for the LSTM).

    Learned: ``model_`` (global choice), ``selection_`` (dict: strategy, chosen, scores,
    reason, windows, counts), ``series_model_`` (series_id -> model), ``notes_``,
    ``residual_quantiles_`` (levels x horizon, in units of :func:`.intervals.interval_spread`),
    ``calibration_windows_`` (how many windows they came from; not saved), ``models_``, ``history_``,
    ``season_``.
    """

    def __init__(
        self,
        *,
        model: str = "auto",
        freq: str = "1h",
        horizon: int = 24,
        quantiles: Sequence[float] = (0.1, 0.9),
        target: str = "mean",
        buckets: Sequence[float] = DEFAULT_EDGES,
        selection: str = "global",
        candidates: Sequence[str] | None = None,
        backtest_windows: int = 2,
        calibration_windows: int = 5,
        gbm_params: dict[str, Any] | None = None,
        lstm_params: dict[str, Any] | None = None,
        max_history: int | None = None,
        n_jobs: int = 1,
        random_state: int = 0,
    ) -> None:
        self.model = model
        self.freq = freq
        self.horizon = horizon
        self.quantiles = quantiles
        self.target = target
        self.buckets = buckets
        self.selection = selection
        self.candidates = candidates
        self.backtest_windows = backtest_windows
        self.calibration_windows = calibration_windows
        self.gbm_params = gbm_params
        self.lstm_params = lstm_params
        self.max_history = max_history
        self.n_jobs = n_jobs
        self.random_state = random_state

    # -- validation ----------------------------------------------------------------------

    def _validate(self) -> None:
        if self.model != "auto" and self.model not in MODEL_NAMES:
            raise InvalidRequest(
                f"unknown model {self.model!r}; choose auto or one of {', '.join(MODEL_NAMES)}"
            )
        if int(self.horizon) < 1:
            raise InvalidRequest(f"horizon must be at least 1 step, not {self.horizon}")
        if self.target not in ("mean", "bucket"):
            raise InvalidRequest(f"target must be 'mean' or 'bucket', not {self.target!r}")
        if self.selection not in ("global", "per_series"):
            raise InvalidRequest(
                f"selection must be 'global' or 'per_series', not {self.selection!r}"
            )
        if any(not 0 < q < 1 for q in self.quantiles):
            raise InvalidRequest(f"quantiles must lie strictly between 0 and 1: {self.quantiles}")
        edges = list(self.buckets)
        if len(edges) < 2 or edges != sorted(edges):
            raise InvalidRequest(f"buckets must be at least 2 increasing edges: {edges}")
        daily_season(self.freq)

    def _gbm_options(self) -> GBMOptions:
        options = GBMOptions.from_dict(self.gbm_params)
        overrides = {"random_state": self.random_state}
        if "n_jobs" not in (self.gbm_params or {}):
            overrides["n_jobs"] = self.n_jobs
        return GBMOptions.from_dict({**asdict(options), **overrides})

    def _factory(self, name: str):
        return lambda: make_model(
            name,
            gbm_options=self._gbm_options(),
            lstm_options={"random_state": self.random_state, **(self.lstm_params or {})},
            n_jobs=self.n_jobs,
        )

    # -- fitting -------------------------------------------------------------------------

    def fit(self, frame: pd.DataFrame, y: Any = None) -> Forecaster:
        """Learn from a long frame ``series_id, timestamp, value`` on the ``freq`` grid."""
        self._validate()
        fleet = to_fleet(frame, freq=self.freq, max_steps=self.max_history)
        return self._fit_fleet(fleet)

    def _fit_fleet(self, fleet: Fleet) -> Forecaster:
        h = int(self.horizon)
        season = fleet.season
        self.season_ = season
        self.n_series_ = fleet.n_series
        self.notes_: list[str] = []
        if np.isnan(fleet.values).all():
            raise DataError("every series is empty (no numeric value to learn from)")
        self.nonnegative_ = bool(np.nanmin(fleet.values) >= 0)
        long_rows = np.flatnonzero(fleet.lengths() >= MIN_SEASONS_FOR_MODEL * season)
        n_short = fleet.n_series - len(long_rows)
        if n_short:
            self.notes_.append(
                f"{n_short} series shorter than {MIN_SEASONS_FOR_MODEL} days "
                f"({MIN_SEASONS_FOR_MODEL * season} steps) use a baseline: seasonal_naive "
                "with a day of data, else last_value"
            )
        long_fleet = fleet if n_short == 0 else fleet.take(long_rows)
        # backtest windows that leave two days + a horizon of history to train on
        room = (fleet.n_steps - MIN_SEASONS_FOR_MODEL * season - h) // h
        windows = int(max(0, min(self.backtest_windows, room)))
        wants_intervals = len(self.quantiles) > 0
        metric = "mase" if self.target == "mean" else "bucket_error"
        series_model = np.full(fleet.n_series, "", dtype=object)
        wf: WindowForecasts | None = None
        if len(long_rows) == 0:
            chosen = "seasonal_naive"
            self.selection_ = {
                "strategy": "none",
                "chosen": chosen,
                "scores": {},
                "windows": 0,
                "counts": {},
                "reason": "every series is too short for a model",
            }
        elif self.model == "auto" and windows == 0:
            chosen = "seasonal_naive"
            self.notes_.append(
                f"history of {fleet.n_steps} steps leaves no backtest window; "
                "auto falls back to seasonal_naive"
            )
            self.selection_ = {
                "strategy": "none",
                "chosen": chosen,
                "scores": {},
                "windows": 0,
                "counts": {},
                "reason": "history too short to backtest",
            }
        elif self.model == "auto":
            names = list(self.candidates or MASE_CANDIDATES)
            if self.candidates is None and len(long_rows) <= SMALL_FLEET_SERIES and season <= 24:
                names += SMALL_FLEET_EXTRA
                self.notes_.append(
                    f"small fleet ({len(long_rows)} series <= {SMALL_FLEET_SERIES}): "
                    f"auto also tries {', '.join(SMALL_FLEET_EXTRA)}"
                )
            wf = backtest_models(
                long_fleet, {n: self._factory(n) for n in names}, horizon=h, windows=windows
            )
            sel: Selection = select(wf, strategy=self.selection, metric=metric, edges=self.buckets)
            chosen = sel.chosen
            self.selection_ = sel.to_dict()
            if sel.per_series is not None:
                series_model[long_rows] = sel.per_series
        else:
            chosen = self.model
            self.selection_ = {
                "strategy": "fixed",
                "chosen": chosen,
                "scores": {},
                "windows": 0,
                "counts": {},
                "reason": "model named by the caller",
            }
        series_model[long_rows] = np.where(
            series_model[long_rows] == "", chosen, series_model[long_rows]
        )
        self.model_ = chosen
        held = None
        if wants_intervals and len(long_rows):
            held = self._held_out(long_fleet, series_model[long_rows], wf, room)
        if self.selection_["strategy"] == "fixed" and held is not None:
            self.selection_["scores"] = {chosen: float(np.nanmean(held.mase(CHOSEN)))}
        self.residual_quantiles_ = self._calibrate(fleet, long_fleet, held)
        in_use = sorted({str(m) for m in series_model[long_rows]} | {chosen})
        self.models_: dict[str, FleetModel] = {}
        for name in in_use:
            self.models_[name] = self._factory(name)().fit(
                long_fleet if len(long_rows) else fleet, h
            )
        series_model[series_model == ""] = None
        self.series_model_ = pd.Series(series_model, index=fleet.series_ids, name="model")
        keep = min(fleet.n_steps, 15 * season + h)  # what features and scales look back on
        self.history_ = fleet.tail(keep)
        return self

    def _held_out(
        self, long_fleet: Fleet, models: np.ndarray, wf: WindowForecasts | None, room: int
    ) -> WindowForecasts | None:
        """Held-out forecasts of each series' own model on up to ``calibration_windows``
        horizons, oldest first, under the name ``CHOSEN``: the selection's windows, plus older
        ones backtested for the models in use. None when the history leaves no window."""
        h = int(self.horizon)
        have = len(wf.history_steps) if wf is not None else 0
        want = int(max(0, min(max(int(self.calibration_windows), have), room)))
        if want == 0:
            return None
        names = sorted({str(m) for m in models})
        parts = []
        if want > have:
            older = long_fleet.head(long_fleet.n_steps - have * h)
            factories = {name: self._factory(name) for name in names}
            parts.append(backtest_models(older, factories, horizon=h, windows=want - have))
        if wf is not None:
            parts.append(wf)
        forecasts = []
        for part in parts:
            forecast = np.full_like(part.actual, np.nan)
            for name in names:
                mask = models == name
                forecast[:, mask] = part.forecasts[name][:, mask]
            forecasts.append(forecast)
        return WindowForecasts(
            [t for part in parts for t in part.history_steps],
            np.concatenate([part.actual for part in parts]),
            np.concatenate([part.scale for part in parts]),
            {CHOSEN: np.concatenate(forecasts)},
        )

    def _calibrate(
        self, fleet: Fleet, long_fleet: Fleet, held: WindowForecasts | None
    ) -> np.ndarray:
        """(len(quantiles), horizon) conformal offsets in units of each series' spread
        (:func:`.intervals.interval_spread`); the rule is :func:`.intervals.conformal_offsets`."""
        levels = sorted(float(q) for q in self.quantiles)
        h = int(self.horizon)
        self.calibration_windows_ = 0
        if not levels:
            return np.zeros((0, h))
        if held is not None:
            self.calibration_windows_ = len(held.history_steps)
            spread = np.stack(
                [
                    interval_spread(long_fleet.values[:, :t], fleet.season)
                    for t in held.history_steps
                ]
            )
            errors = (held.actual - held.forecasts[CHOSEN]) / spread[:, :, None]
            return conformal_offsets(errors, levels)
        # no held-out window: in-sample seasonal-naive errors, the same for every step
        p = fleet.season
        v = fleet.values
        errors = ((v[:, p:] - v[:, :-p]) / interval_spread(v, p)[:, None]).reshape(1, -1, 1)
        return np.repeat(conformal_offsets(errors, levels), h, axis=1)

    # -- forecasting ---------------------------------------------------------------------

    def predict(self, frame: pd.DataFrame | None = None) -> pd.DataFrame:
        """Forecast from the end of the fitted history, or of ``frame`` when given.

        Returns ``series_id, timestamp, yhat`` (+ ``yhat_q10`` ..., + ``bucket`` for the
        bucket target) + ``model`` (what forecast that series).
        """
        check_is_fitted(self, "models_")
        if frame is None:
            fleet = self.history_
        else:
            fleet = to_fleet(frame, freq=self.freq, max_steps=self.history_.n_steps)
        columns = self._predict_fleet(fleet)
        out = to_long(fleet.series_ids, fleet.first_forecast_time(), fleet.freq, columns)
        if self.target == "bucket":
            labels = bucket_labels(list(self.buckets))
            index = out.pop("bucket_index").to_numpy()
            out["bucket"] = pd.Categorical.from_codes(index, categories=labels)  # -1: NaN
        return out

    def _assign_models(self, fleet: Fleet) -> np.ndarray:
        names = self.series_model_.reindex(fleet.series_ids).to_numpy(dtype=object)
        names = np.where(pd.isna(names), self.model_, names)
        lengths = fleet.lengths()
        short = lengths < MIN_SEASONS_FOR_MODEL * fleet.season
        fallback = np.where(lengths >= fleet.season, "seasonal_naive", "last_value")
        return np.where(short, fallback, names).astype(object)

    def _predict_fleet(self, fleet: Fleet) -> dict[str, np.ndarray]:
        h = int(self.horizon)
        names = self._assign_models(fleet)
        yhat = np.full((fleet.n_series, h), np.nan)
        for name in np.unique(names):
            rows = np.flatnonzero(names == name)
            model = self.models_.get(name) or make_model(name)
            yhat[rows] = model.predict(fleet.take(rows), h)
        columns: dict[str, np.ndarray] = {"yhat": yhat}
        if len(self.residual_quantiles_):
            scale = interval_spread(fleet.values, fleet.season)[:, None]
            for q, offset in zip(sorted(self.quantiles), self.residual_quantiles_, strict=True):
                columns[quantile_column(q)] = yhat + scale * offset[None, :]
        if self.nonnegative_:
            columns = {k: np.maximum(v, 0.0) for k, v in columns.items()}
        if self.target == "bucket":
            columns["bucket_index"] = assign_buckets(columns["yhat"], list(self.buckets))
        columns["model"] = names
        return columns
