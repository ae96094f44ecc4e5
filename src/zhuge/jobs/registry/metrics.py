"""Gate metrics beyond the point errors: ``decision_regret``, the migration decision a
forecast leads to, judged on what then happened (the decision backtest's regret,
:mod:`zhuge.migration.decision`, per VM).

A load forecast exists to pick each VM's migration window. For one VM on its own (no host,
cluster or bandwidth limit shared with others), the plan made from a forecast migrates it in
the window of lowest forecast load: downtime grows with load (:mod:`zhuge.migration.model`),
so that is also the window of least forecast downtime. The **regret** is the actual load in
the window the forecast chose minus the actual load in the quietest window (the perfect
forecast's choice), in load points: 0 at best. A model that ranks the quiet windows right
scores 0 whatever its bias; one with a small error everywhere but a wrong quietest window
does not. The per-VM regret keeps the gate's paired test on series; the coupling through
hosts, clusters and bandwidth that ``zhuge backtest --decision migration`` plans with is left
out, since the gate has no VM table.

Windows are :data:`WINDOW` long (the planner's default), at least one grid slot: a window's
load is the mean of its slots. Registered when the registry's job kinds load.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from zhuge.ml import gate

__all__ = ["WINDOW", "decision_regret"]

WINDOW = pd.Timedelta("30min")  # the migration window (PlanConstraints' default)
DAY = pd.Timedelta("1D")


def decision_regret(
    actual: np.ndarray, forecast: np.ndarray, history: np.ndarray, season: int
) -> np.ndarray:
    """Per series: the actual load in the window ``forecast`` is lowest in, minus the lowest
    actual window load (``(n, h)`` arrays on a grid of ``season`` slots a day). NaN for a
    series whose window is not fully observed or forecast."""
    actual = np.asarray(actual, dtype=np.float64)
    forecast = np.asarray(forecast, dtype=np.float64)
    slots = max(1, round(season * (WINDOW / DAY)))
    n, h = actual.shape
    windows = h // slots
    out = np.full(n, np.nan)
    if windows == 0:
        return out
    cut = windows * slots
    real = actual[:, :cut].reshape(n, windows, slots).mean(axis=2)
    planned = forecast[:, :cut].reshape(n, windows, slots).mean(axis=2)
    seen = np.isfinite(real).all(axis=1) & np.isfinite(planned).all(axis=1)
    rows = np.flatnonzero(seen)
    chosen = np.argmin(planned[rows], axis=1)  # ties: the earliest, as the planner breaks them
    out[rows] = real[rows, chosen] - real[rows].min(axis=1)
    return out


gate.register_metric("decision_regret", decision_regret)
