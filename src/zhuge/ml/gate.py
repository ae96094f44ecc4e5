"""The release gate's statistics: is a new model better than the champion, by a margin, and
significantly so, on the same series and windows?

Both models forecast the same ``gate_windows`` held-out horizons of the same series. A
**metric** turns one window into a loss per series (lower is better; MASE by default).
Each series' loss is averaged over the windows, so the evidence is ``n`` paired losses, one
per series, and the difference ``d_i = champion_i - challenger_i`` is what is tested:

- **Diebold-Mariano** (``dm``, the default): ``DM = mean(d) / sqrt(var(d) / n)``, one-sided
  against the standard normal. The classic DM test is on a loss series in time and needs a
  HAC variance for autocorrelated losses; here the pairs are series of one fleet, forecast
  from the same origins, so they are treated as independent draws and the lag-0 variance is
  the right one. With ``min_series`` (default 10) or more series the normal reference is
  adequate for the well-behaved MASE differences the gate sees.
- **paired bootstrap** (``bootstrap``): the share of ``resamples`` resampled means of ``d``
  that are not above zero, with a seeded generator (deterministic for a seed). It assumes no
  shape for ``d``: prefer it when few series are scored or a few series dominate the losses
  (stuck or shifted telemetry makes such outliers).

The new model is promoted only when its mean loss is lower by at least ``margin`` (relative)
**and** the test's one-sided p-value is below ``level`` **and** at least ``min_series`` series
were scored **and** the model is not ``manual``. Otherwise it is a challenger, with the reason.

Metrics are pluggable (:func:`register_metric`): a function of aligned arrays
``(actual, forecast, history, season)`` → one loss per series, so a decision-quality metric
(``decision_regret``) can be used by naming it in the model's config.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from zhuge.ml.forecast.metrics import mae_matrix, mase_matrix

__all__ = [
    "GateDecision",
    "Metric",
    "decide",
    "diebold_mariano",
    "metric",
    "paired_bootstrap",
    "register_metric",
]

Metric = Callable[[np.ndarray, np.ndarray, np.ndarray, int], np.ndarray]
"""(actual (n, h), forecast (n, h), history (n, T), season) → loss per series (n,)."""

BOOTSTRAP_RESAMPLES = 4000

_METRICS: dict[str, Metric] = {
    "mase": lambda actual, forecast, history, season: mase_matrix(
        actual, forecast, history, season
    ),
    "mae": lambda actual, forecast, history, season: mae_matrix(actual, forecast),
}


def register_metric(name: str, fn: Metric) -> None:
    """Make ``fn`` a gate metric a model's config can name (lower is better)."""
    _METRICS[name] = fn


def metric(name: str) -> Metric:
    try:
        return _METRICS[name]
    except KeyError:
        known = ", ".join(sorted(_METRICS))
        raise ValueError(f"unknown gate metric {name!r}; known: {known}") from None


def known_metrics() -> list[str]:
    return sorted(_METRICS)


def diebold_mariano(champion: np.ndarray, challenger: np.ndarray) -> tuple[float, float]:
    """(statistic, one-sided p-value that the challenger's loss is lower)."""
    d = _differences(champion, challenger)
    if d.size < 2:
        return 0.0, 1.0
    mean, sd = float(d.mean()), float(d.std(ddof=1))
    if sd == 0.0:
        if mean == 0.0:
            return 0.0, 1.0
        return math.copysign(math.inf, mean), 0.0 if mean > 0 else 1.0
    statistic = mean / (sd / math.sqrt(d.size))
    return statistic, 0.5 * math.erfc(statistic / math.sqrt(2.0))  # normal survival


def paired_bootstrap(
    champion: np.ndarray,
    challenger: np.ndarray,
    *,
    seed: int = 0,
    resamples: int = BOOTSTRAP_RESAMPLES,
) -> tuple[float, float]:
    """(mean difference, share of resampled mean differences <= 0): deterministic per seed."""
    d = _differences(champion, challenger)
    if d.size < 2:
        return 0.0, 1.0
    rng = np.random.default_rng(seed)
    means = d[rng.integers(0, d.size, size=(resamples, d.size))].mean(axis=1)
    return float(d.mean()), float((means <= 0.0).mean())


def _differences(champion: np.ndarray, challenger: np.ndarray) -> np.ndarray:
    champion = np.asarray(champion, dtype=np.float64)
    challenger = np.asarray(challenger, dtype=np.float64)
    both = np.isfinite(champion) & np.isfinite(challenger)
    return champion[both] - challenger[both]


@dataclass(frozen=True)
class GateDecision:
    promote: bool
    decision: str  # promoted | challenger
    reason: str
    test: str
    statistic: float
    p_value: float
    level: float
    margin: float
    improvement: float  # relative: (champion - challenger) / champion
    champion_score: float
    challenger_score: float
    n_series: int

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        return {
            k: (None if isinstance(v, float) and not math.isfinite(v) else v)
            for k, v in out.items()
        }


def decide(
    champion: np.ndarray,
    challenger: np.ndarray,
    *,
    margin: float = 0.02,
    level: float = 0.05,
    test: str = "dm",
    min_series: int = 10,
    manual: bool = False,
    seed: int = 0,
) -> GateDecision:
    """Promote the challenger only if better by ``margin`` and significant at ``level``."""
    champion = np.asarray(champion, dtype=np.float64)
    challenger = np.asarray(challenger, dtype=np.float64)
    both = np.isfinite(champion) & np.isfinite(challenger)
    n = int(both.sum())
    champ_score = float(champion[both].mean()) if n else math.nan
    chall_score = float(challenger[both].mean()) if n else math.nan
    improvement = (champ_score - chall_score) / champ_score if n and champ_score > 0 else 0.0
    if test == "dm":
        statistic, p_value = diebold_mariano(champion, challenger)
    elif test == "bootstrap":
        statistic, p_value = paired_bootstrap(champion, challenger, seed=seed)
    else:
        raise ValueError(f"unknown gate test {test!r}: dm or bootstrap")
    if n < min_series:
        why, promote = f"only {n} series scored, fewer than min_series {min_series}", False
    elif improvement < margin:
        why = f"better by {improvement:.1%}, not the {margin:.0%} margin"
        promote = False
    elif p_value >= level:
        why, promote = f"better by {improvement:.1%}, but p={p_value:.3g} >= {level}", False
    elif manual:
        why = f"better by {improvement:.1%} (p={p_value:.3g}), but the model is manual"
        promote = False
    else:
        why, promote = f"better by {improvement:.1%} with p={p_value:.3g} < {level}", True
    return GateDecision(
        promote=promote,
        decision="promoted" if promote else "challenger",
        reason=why,
        test=test,
        statistic=float(statistic),
        p_value=float(p_value),
        level=level,
        margin=margin,
        improvement=float(improvement),
        champion_score=champ_score,
        challenger_score=chall_score,
        n_series=n,
    )
