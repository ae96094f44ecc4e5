"""Model selection by an internal rolling-origin backtest: what ``model="auto"`` runs.

The last ``windows`` horizons of the history are held out in turn (origins ``T - w*h``); each
candidate is fitted on what precedes an origin and scored by MASE on the horizon after it.
``strategy="global"`` keeps the candidate with the lowest mean MASE over all series and
windows; ``"per_series"`` keeps, for each series, its own best candidate. Either way the
scores and the reason are recorded (:class:`Selection`), and the held-out errors of the winner
are what the conformal intervals are calibrated on.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from zhuge.ml.forecast._fleet import Fleet
from zhuge.ml.forecast.buckets import assign_buckets
from zhuge.ml.forecast.metrics import mase_scale
from zhuge.ml.forecast.models import FleetModel

__all__ = ["Selection", "WindowForecasts", "backtest_models", "history_lengths", "select"]


@dataclass
class WindowForecasts:
    """Held-out forecasts of several models on the same rolling origins."""

    history_steps: list[int]  # history length (columns) before each origin, oldest first
    actual: np.ndarray  # (W, n, h)
    scale: np.ndarray  # (W, n): MASE scale of each window's history
    forecasts: dict[str, np.ndarray] = field(default_factory=dict)  # name -> (W, n, h)

    def mase(self, name: str) -> np.ndarray:
        """(W, n) MASE of one model per window and series."""
        err = np.abs(self.actual - self.forecasts[name])
        valid = ~np.isnan(err)
        mae = np.where(valid, err, 0).sum(axis=2) / np.maximum(valid.sum(axis=2), 1)
        return np.where(valid.any(axis=2), mae / self.scale, np.nan)

    def bucket_error(self, name: str, edges) -> np.ndarray:
        """(W, n) share of steps whose forecast falls in another load band than the actual."""
        wrong = assign_buckets(self.actual, edges) != assign_buckets(self.forecasts[name], edges)
        valid = ~np.isnan(self.actual)
        share = np.where(valid, wrong, 0).sum(axis=2) / np.maximum(valid.sum(axis=2), 1)
        return np.where(valid.any(axis=2), share, np.nan)

    def score(self, name: str, metric: str, edges=None) -> np.ndarray:
        return self.mase(name) if metric == "mase" else self.bucket_error(name, edges)

    def residuals(self, name: str) -> np.ndarray:
        """(W, n, h) scaled errors ``(actual - forecast) / scale``."""
        return (self.actual - self.forecasts[name]) / self.scale[:, :, None]


def history_lengths(n_steps: int, horizon: int, windows: int, step: int | None = None) -> list:
    step = step or horizon
    return [n_steps - horizon - step * w for w in range(windows - 1, -1, -1)]


def backtest_models(
    fleet: Fleet,
    models: dict[str, Callable[[], FleetModel]],
    *,
    horizon: int,
    windows: int,
    step: int | None = None,
    forecast: Callable[[FleetModel, Fleet, int], np.ndarray] | None = None,
) -> WindowForecasts:
    """Fit each model on each window's history and forecast its horizon."""
    lengths = history_lengths(fleet.n_steps, horizon, windows, step)
    actual = np.stack([fleet.values[:, t : t + horizon] for t in lengths])
    scale = np.stack([mase_scale(fleet.values[:, :t], fleet.season) for t in lengths])
    result = WindowForecasts(lengths, actual, scale)
    for name, factory in models.items():
        preds = []
        for t in lengths:
            history = fleet.head(t)
            model = factory().fit(history, horizon)
            preds.append(
                model.predict(history, horizon)
                if forecast is None
                else forecast(model, history, horizon)
            )
        result.forecasts[name] = np.stack(preds)
    return result


@dataclass
class Selection:
    """What ``auto`` chose and why (JSON-able through :meth:`to_dict`)."""

    strategy: str
    chosen: str  # the global winner (per_series: the most frequent choice)
    scores: dict[str, float]  # candidate -> mean MASE over series and windows
    reason: str
    windows: int
    per_series: np.ndarray | None = None  # (n,) chosen candidate per series (per_series)
    counts: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "strategy": self.strategy,
            "chosen": self.chosen,
            "scores": self.scores,
            "reason": self.reason,
            "windows": self.windows,
            "counts": self.counts,
        }


def _mean(a: np.ndarray) -> float:
    a = a[~np.isnan(a)]
    return float(a.mean()) if a.size else float("inf")


def _nanmean_axis0(a: np.ndarray) -> np.ndarray:
    valid = ~np.isnan(a)
    total = np.where(valid, a, 0.0).sum(axis=0)
    return np.where(valid.any(axis=0), total / np.maximum(valid.sum(axis=0), 1), np.nan)


def select(wf: WindowForecasts, *, strategy: str, metric: str = "mase", edges=None) -> Selection:
    """Pick the winner among ``wf.forecasts`` (lower ``metric`` is better).

    ``metric`` is ``"mase"`` or ``"bucket_error"`` (1 - bucket accuracy, for the bucket target).
    """
    names = list(wf.forecasts)
    per_window = {name: wf.score(name, metric, edges) for name in names}  # (W, n)
    scores = {name: _mean(per_window[name]) for name in names}
    best = min(names, key=lambda n: (scores[n], names.index(n)))
    ranked = sorted(names, key=scores.get)
    runner_up = ranked[1] if len(ranked) > 1 else best
    if strategy == "global":
        reason = (
            f"{best} had the lowest mean {metric} ({scores[best]:.3f}) over "
            f"{len(wf.history_steps)} backtest window(s); next best {runner_up} "
            f"({scores[runner_up]:.3f})"
        )
        return Selection("global", best, scores, reason, len(wf.history_steps))
    # per series: mean over windows, NaN (no actuals) -> the global winner
    stacked = np.stack([_nanmean_axis0(per_window[n]) for n in names])  # (models, n)
    finite = np.where(np.isnan(stacked), np.inf, stacked)
    choice_idx = np.where(np.isfinite(finite).any(axis=0), finite.argmin(axis=0), names.index(best))
    choice = np.asarray(names, dtype=object)[choice_idx]
    counts = {n: int((choice == n).sum()) for n in names if (choice == n).any()}
    picked = np.take_along_axis(stacked, choice_idx[None, :], axis=0)[0]
    reason = (
        f"each series kept its lowest-{metric} candidate over {len(wf.history_steps)} "
        f"window(s) (counts {counts}); selected {metric} on those windows {_mean(picked):.3f} "
        f"(optimistic: chosen on the same windows) vs best single model {best} "
        f"{scores[best]:.3f}"
    )
    majority = max(counts, key=counts.get) if counts else best
    return Selection("per_series", majority, scores, reason, len(wf.history_steps), choice, counts)
