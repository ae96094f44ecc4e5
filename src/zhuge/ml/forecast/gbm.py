"""A global LightGBM model for a whole fleet: one model, every series, every horizon step.

Strategy: **direct multi-horizon**. A training row is (series, forecast origin ``o``, step
ahead ``k``); its features are known at ``o`` and the target is the value at ``t = o + k``.
The step ``k`` and the target's time of day / day of week are features, so one model predicts
a whole day profile in a single vectorised ``predict`` call (no recursion, no error feedback,
no per-step Python loop), which is what keeps it well under 10 ms CPU per series.

Series-level normalisation lets one model fit loads of any size: at each origin, ``level`` is
the mean of the last day and ``scale`` the standard deviation of the last week (floored), and
every value feature and the target are ``(x - level) / scale``. Features:

* ``lag_j``: the last ``n_lags`` values before the origin;
* ``day_j``: the value at the target's time of day, ``j`` days back (most recent observed
  day first: ``t - P*ceil(k/P)``, then one more day each), and their mean and median;
* ``week_j``: the same time of week, ``j`` weeks back; ``week_adjusted``: ``week_0`` relative
  to last week's level at the origin (a weekly-naive forecast moved to this week's level);
* ``day_max / day_min / day_std``: of the last day; ``week_mean``: of the last week;
* calendar of the target (hour of day, day of week), the step ``k``, and the series' raw
  ``level`` and ``cv`` (scale / level) so saturation and noise regimes are learnable.

Training uses a sample of series (``max_train_series``) and random origins in each, and a
random subset of horizon steps per origin; prediction runs in chunks of series (bounded memory).
Missing values are NaN throughout (LightGBM routes them natively).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np

from zhuge.ml.forecast.baselines import nanmedian

__all__ = ["GBMOptions", "GlobalGBM"]

_DAY_NS = 86_400 * 10**9
_HOUR_NS = 3_600 * 10**9
SCALE_FLOOR_REL = 1e-3  # scale is at least this share of |level| ...
SCALE_FLOOR_ABS = 1e-6  # ... and at least this, so flat series do not divide by zero


@dataclass(frozen=True)
class GBMOptions:
    """Hyperparameters of :class:`GlobalGBM` (plain data: saved as JSON)."""

    n_lags: int = 6
    n_days: int = 7
    n_weeks: int = 2
    num_boost_round: int = 300
    learning_rate: float = 0.05
    num_leaves: int = 31
    min_data_in_leaf: int = 100
    objective: str = "l1"  # MASE is an absolute-error metric; l1 scored better than l2/huber
    max_train_series: int = 2000
    origins_per_series: int = 8
    max_steps_per_origin: int = 48
    chunk_series: int = 5000
    n_jobs: int = 0  # LightGBM threads; 0 = its default (all cores)
    random_state: int = 0

    @classmethod
    def from_dict(cls, raw: dict[str, Any] | None) -> GBMOptions:
        return replace(cls(), **(raw or {}))


def _gather(values: np.ndarray, rows: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """values[rows, idx] broadcast over idx's trailing axes; NaN where idx < 0."""
    r = rows.reshape(rows.shape + (1,) * (idx.ndim - 1))
    out = values[r, np.maximum(idx, 0)]
    return np.where(idx >= 0, out, np.nan)


def _window_stats(values: np.ndarray, rows: np.ndarray, origins: np.ndarray, width: int):
    """Mean, std, max, min of values[row, o-width+1 .. o] per pair, ignoring NaN."""
    idx = origins[:, None] - np.arange(width)[None, :]
    window = _gather(values, rows, idx)
    count = (~np.isnan(window)).sum(axis=1)
    filled = np.where(np.isnan(window), 0.0, window)
    safe = np.maximum(count, 1)
    mean = filled.sum(axis=1) / safe
    var = np.where(np.isnan(window), 0.0, (window - mean[:, None]) ** 2).sum(axis=1) / safe
    big = np.where(np.isnan(window), -np.inf, window).max(axis=1)
    small = np.where(np.isnan(window), np.inf, window).min(axis=1)
    empty = count == 0
    return (
        np.where(empty, np.nan, mean),
        np.where(empty, np.nan, np.sqrt(var)),
        np.where(empty, np.nan, big),
        np.where(empty, np.nan, small),
    )


class _FeatureBuilder:
    """Builds the design matrix for (series row, origin) pairs x horizon steps."""

    def __init__(self, options: GBMOptions, season: int, freq_ns: int) -> None:
        self.o = options
        self.season = season
        self.week = 7 * season
        self.freq_ns = freq_ns

    @property
    def names(self) -> list[str]:
        o = self.o
        return [
            *(f"lag_{j}" for j in range(o.n_lags)),
            *(f"day_{j}" for j in range(o.n_days)),
            "day_mean",
            "day_median",
            *(f"week_{j}" for j in range(o.n_weeks)),
            "week_adjusted",
            "day_max",
            "day_min",
            "day_std",
            "week_mean",
            "hour",
            "dow",
            "step",
            "level",
            "cv",
        ]

    def normalisation(self, values, rows, origins):
        level, _, _, _ = _window_stats(values, rows, origins, self.season)
        _, std, _, _ = _window_stats(values, rows, origins, self.week)
        scale = np.maximum(
            np.nan_to_num(std), np.maximum(np.abs(np.nan_to_num(level)) * SCALE_FLOOR_REL, 0)
        )
        return level, np.maximum(scale, SCALE_FLOOR_ABS)

    def build(
        self,
        values: np.ndarray,
        steps0: np.ndarray,
        rows: np.ndarray,
        origins: np.ndarray,
        steps: np.ndarray,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Return X (pairs*len(steps), F) float32, target index t (pairs, S), level, scale."""
        o, p, w = self.o, self.season, self.week
        n_pairs, n_k = len(rows), len(steps)
        level, scale = self.normalisation(values, rows, origins)
        lvl = level[:, None]
        scl = scale[:, None]

        def z(x: np.ndarray) -> np.ndarray:
            extra = (1,) * (x.ndim - 2)
            return (x - lvl.reshape(lvl.shape + extra)) / scl.reshape(scl.shape + extra)

        cols: list[np.ndarray] = []  # each (n_pairs, n_k)

        def per_pair(x: np.ndarray) -> None:
            cols.append(np.broadcast_to(x[:, None], (n_pairs, n_k)))

        lags = z(_gather(values, rows, origins[:, None] - np.arange(o.n_lags)[None, :]))
        for j in range(o.n_lags):
            per_pair(lags[:, j])
        t = origins[:, None] + steps[None, :]  # (pairs, k)
        back_days = -(-steps // p)  # ceil(k / P): the latest day with that time observed
        day_idx = (t - p * back_days[None, :])[:, :, None] - p * np.arange(o.n_days)
        days = z(_gather(values, rows, day_idx))  # (pairs, k, D)
        for j in range(o.n_days):
            cols.append(days[:, :, j])
        cols.append(_row_nanmean(days))
        cols.append(_row_nanmedian(days))
        back_weeks = -(-steps // w)
        week_idx = (t - w * back_weeks[None, :])[:, :, None] - w * np.arange(o.n_weeks)
        weeks = z(_gather(values, rows, week_idx))
        for j in range(o.n_weeks):
            cols.append(weeks[:, :, j])
        # the weekly-naive forecast with last week's level moved to this week's: the value at
        # the target's time of week minus the mean of the day before the origin, last week
        # (carries a weekend dip or Monday ramp that day-level features cannot see)
        prev_week_level, _, _, _ = _window_stats(values, rows, origins - w, p)
        cols.append(weeks[:, :, 0] - ((prev_week_level - level) / scale)[:, None])
        _, day_std, day_max, day_min = _window_stats(values, rows, origins, p)
        week_mean, _, _, _ = _window_stats(values, rows, origins, w)
        per_pair((day_max - level) / scale)
        per_pair((day_min - level) / scale)
        per_pair(day_std / scale)
        per_pair((week_mean - level) / scale)
        abs_steps = steps0[rows][:, None] + t  # grid steps since a Monday 00:00
        ns = abs_steps * self.freq_ns
        cols.append((ns % _DAY_NS) / _HOUR_NS)
        cols.append(((ns // _DAY_NS) % 7).astype(np.float64))
        cols.append(np.broadcast_to(steps[None, :].astype(np.float64), (n_pairs, n_k)))
        per_pair(level)
        per_pair(scale / np.maximum(np.abs(level), SCALE_FLOOR_ABS))
        X = np.empty((n_pairs * n_k, len(cols)), dtype=np.float32)
        for c, col in enumerate(cols):
            X[:, c] = np.asarray(col, dtype=np.float32).reshape(-1)
        return X, t, level, scale


def _row_nanmean(a: np.ndarray) -> np.ndarray:
    count = (~np.isnan(a)).sum(axis=-1)
    total = np.where(np.isnan(a), 0.0, a).sum(axis=-1)
    return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def _row_nanmedian(a: np.ndarray) -> np.ndarray:
    return nanmedian(a, axis=-1)


class GlobalGBM:
    """One LightGBM regressor across all series (see the module docstring)."""

    def __init__(self, options: GBMOptions | None = None) -> None:
        self.options = options or GBMOptions()
        self.booster_: Any = None
        self.season_: int | None = None
        self.freq_ns_: int | None = None
        self.train_rows_: int = 0

    def _builder(self) -> _FeatureBuilder:
        return _FeatureBuilder(self.options, self.season_, self.freq_ns_)

    def fit(
        self,
        values: np.ndarray,
        steps0: np.ndarray,
        *,
        season: int,
        freq_ns: int,
        horizon: int,
    ) -> GlobalGBM:
        """Train on ``values`` (n, T) whose column 0 is ``steps0`` grid steps past a Monday."""
        import lightgbm as lgb

        from zhuge.errors import DataError

        opt = self.options
        self.season_, self.freq_ns_ = int(season), int(freq_ns)
        rng = np.random.default_rng(opt.random_state)
        _n, n_steps = values.shape
        observed = ~np.isnan(values)
        first = np.where(observed.any(axis=1), observed.argmax(axis=1), n_steps)
        lo = first + season - 1  # at least a day of history before an origin
        hi = n_steps - 1 - horizon  # the whole horizon inside the history
        eligible = np.flatnonzero(lo <= hi)
        if len(eligible) == 0:
            raise DataError(
                f"no series has a day of history plus {horizon} steps to learn from "
                f"({n_steps} steps at most)"
            )
        if len(eligible) > opt.max_train_series:
            eligible = np.sort(rng.choice(eligible, opt.max_train_series, replace=False))
        rows = np.repeat(eligible, opt.origins_per_series)
        span = hi - lo[rows] + 1
        origins = lo[rows] + (rng.random(len(rows)) * span).astype(np.int64)
        n_k = min(horizon, opt.max_steps_per_origin)
        builder = self._builder()
        parts_x, parts_y = [], []
        # origins share one random subset of steps per block; blocks vary it
        for block in np.array_split(np.arange(len(rows)), max(1, len(rows) // 2000)):
            steps = np.sort(rng.choice(np.arange(1, horizon + 1), n_k, replace=False))
            X, t, level, scale = builder.build(values, steps0, rows[block], origins[block], steps)
            y = (values[rows[block][:, None], t] - level[:, None]) / scale[:, None]
            y = y.reshape(-1)
            keep = ~np.isnan(y)
            parts_x.append(X[keep])
            parts_y.append(y[keep].astype(np.float32))
        X = np.concatenate(parts_x)
        y = np.concatenate(parts_y)
        self.train_rows_ = len(y)
        params = {
            "objective": opt.objective,
            "learning_rate": opt.learning_rate,
            "num_leaves": opt.num_leaves,
            "min_data_in_leaf": opt.min_data_in_leaf,
            "feature_fraction": 0.9,
            "bagging_fraction": 0.8,
            "bagging_freq": 1,
            "lambda_l2": 1.0,
            "num_threads": opt.n_jobs,
            "seed": opt.random_state,
            "deterministic": True,
            "verbose": -1,
        }
        data = lgb.Dataset(X, y, feature_name=builder.names, free_raw_data=True)
        self.booster_ = lgb.train(params, data, num_boost_round=opt.num_boost_round)
        return self

    def predict(self, values: np.ndarray, steps0: np.ndarray, horizon: int) -> np.ndarray:
        """(n, horizon) forecasts from the end of each row of ``values``."""
        builder = self._builder()
        n, n_steps = values.shape
        # features look back at most n_days days / n_weeks weeks (+ the horizon)
        keep = min(
            n_steps,
            (max(self.options.n_days, 7 * self.options.n_weeks) + 1) * self.season_ + horizon,
        )
        cut = n_steps - keep
        values = values[:, cut:]
        steps0 = steps0 + cut
        out = np.empty((n, horizon))
        steps = np.arange(1, horizon + 1)
        origin = keep - 1
        # chunk_series is tuned for hourly data; finer grids mean wider windows per series
        chunk = max(64, self.options.chunk_series * 24 // max(self.season_, horizon, 24))
        for start in range(0, n, chunk):
            rows = np.arange(start, min(n, start + chunk))
            X, _, level, scale = builder.build(
                values, steps0, rows, np.full(len(rows), origin), steps
            )
            z = self.booster_.predict(X, num_threads=self.options.n_jobs)
            out[rows] = level[:, None] + scale[:, None] * z.reshape(len(rows), horizon)
        return out

    # -- persistence: LightGBM's own text format + plain JSON --------------------------

    def to_state(self) -> tuple[dict[str, Any], str]:
        meta = {
            "options": asdict(self.options),
            "season": self.season_,
            "freq_ns": self.freq_ns_,
            "train_rows": self.train_rows_,
        }
        return meta, self.booster_.model_to_string()

    @classmethod
    def from_state(cls, meta: dict[str, Any], model_text: str) -> GlobalGBM:
        import lightgbm as lgb

        model = cls(GBMOptions.from_dict(meta["options"]))
        model.season_, model.freq_ns_ = meta["season"], meta["freq_ns"]
        model.train_rows_ = meta.get("train_rows", 0)
        model.booster_ = lgb.Booster(model_str=model_text)
        return model
