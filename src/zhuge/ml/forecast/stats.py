"""statsforecast models per series: AutoETS, AutoARIMA, MSTL (for comparison, small fleets).

Season lengths come from the grid: a day (24 at 1h, 288 at 5min) and, for MSTL, a week too
when every series holds at least two weeks. statsforecast needs gap-free series, so interior
gaps are linearly interpolated and leading/trailing NaN dropped before the call; a series it
cannot fit falls back to the seasonal naive forecast (statsforecast's ``fallback_model``).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from zhuge.errors import DataError

__all__ = ["STATS_MODELS", "statsforecast_predict"]

STATS_MODELS = ("autoets", "autoarima", "mstl")


def _model(name: str, season: int, min_length: int):
    from statsforecast.models import MSTL, AutoARIMA, AutoETS

    if name == "autoets":
        return AutoETS(season_length=season)
    if name == "autoarima":
        return AutoARIMA(season_length=season)
    if name == "mstl":
        seasons = [s for s in (season, 7 * season) if 2 * s <= min_length] or [season]
        return MSTL(season_length=seasons, trend_forecaster=AutoETS(model="ZZN"))
    raise DataError(f"unknown statsforecast model {name!r}; known: {', '.join(STATS_MODELS)}")


def statsforecast_predict(
    values: np.ndarray, horizon: int, season: int, *, model: str, n_jobs: int = 1
) -> np.ndarray:
    """(n, horizon) forecasts of one statsforecast model fitted to each row of ``values``."""
    from statsforecast import StatsForecast
    from statsforecast.models import SeasonalNaive

    from zhuge.ml.forecast.baselines import last_value

    _n, n_steps = values.shape
    filled = pd.DataFrame(values.T).interpolate(limit_area="inside").to_numpy().T
    observed = ~np.isnan(filled)
    first = np.where(observed.any(axis=1), observed.argmax(axis=1), n_steps)
    last = n_steps - 1 - observed[:, ::-1].argmax(axis=1)
    usable = np.flatnonzero((last - first + 1 >= 2) & observed.any(axis=1))
    out = last_value(values, horizon)
    if len(usable) == 0:
        return out
    uid, ds, y = [], [], []
    for row in usable:
        seg = filled[row, first[row] : last[row] + 1]
        uid.append(np.full(len(seg), row))
        ds.append(np.arange(len(seg)))
        y.append(seg)
    frame = pd.DataFrame({"unique_id": np.concatenate(uid), "ds": np.concatenate(ds)})
    frame["y"] = np.concatenate(y)
    min_length = int((last[usable] - first[usable] + 1).min())
    sf = StatsForecast(
        models=[_model(model, season, min_length)],
        freq=1,  # integer steps: each series keeps its own calendar outside this call
        n_jobs=n_jobs,
        fallback_model=SeasonalNaive(season_length=min(season, min_length)),
    )
    result = sf.forecast(h=horizon, df=frame)
    column = next(c for c in result.columns if c not in ("unique_id", "ds"))
    pred = result.sort_values(["unique_id", "ds"])[column].to_numpy().reshape(-1, horizon)
    ids = result.sort_values(["unique_id", "ds"])["unique_id"].to_numpy()[::horizon]
    out[ids] = pred
    return out
