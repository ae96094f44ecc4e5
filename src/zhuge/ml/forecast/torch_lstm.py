"""An LSTM forecaster in PyTorch (optional extra: ``pip install zhuge[torch]``).

Small and honest: one global LSTM over windows of normalised series (each window divided by
its own last-day mean/std, like the GBM), trained to emit the whole horizon at once from the
last ``lookback`` steps. torch is imported lazily; without it, using this model raises
:class:`~zhuge.errors.MissingDependency`.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any

import numpy as np

from zhuge.errors import DataError, MissingDependency

__all__ = ["LSTMModel", "require_torch"]

INSTALL_HINT = "the LSTM forecaster needs PyTorch: pip install zhuge[torch]"


def require_torch() -> Any:
    """Import torch or raise MissingDependency naming the extra to install."""
    try:
        import torch
    except ImportError as exc:
        raise MissingDependency(INSTALL_HINT) from exc
    return torch


def _windows(values: np.ndarray, lookback: int, horizon: int, max_windows: int, rng):
    n, t = values.shape
    starts = np.arange(0, t - lookback - horizon + 1)
    if len(starts) == 0:
        raise DataError(f"series need {lookback + horizon} steps to train the LSTM, have {t}")
    pick_rows = rng.integers(0, n, max_windows)
    pick_starts = rng.choice(starts, max_windows)
    idx = pick_starts[:, None] + np.arange(lookback + horizon)[None, :]
    win = values[pick_rows[:, None], idx]
    keep = ~np.isnan(win).any(axis=1)
    return win[keep]


def _normalise(x: np.ndarray, season: int):
    recent = x[:, -season:]
    level = np.nanmean(recent, axis=1, keepdims=True)
    scale = np.nanstd(x, axis=1, keepdims=True)
    scale = np.maximum(scale, np.maximum(np.abs(level) * 1e-3, 1e-6))
    return level, scale


@dataclass
class LSTMModel:
    hidden: int = 32
    lookback_days: int = 2
    epochs: int = 5
    max_windows: int = 20_000
    batch_size: int = 256
    learning_rate: float = 1e-2
    random_state: int = 0
    name: str = "lstm"
    net_: Any = None
    lookback_: int = 0
    horizon_: int = 0
    season_: int = 0

    def _net(self, torch: Any, horizon: int) -> Any:
        class Net(torch.nn.Module):
            def __init__(self, hidden: int) -> None:
                super().__init__()
                self.lstm = torch.nn.LSTM(1, hidden, batch_first=True)
                self.head = torch.nn.Linear(hidden, horizon)

            def forward(self, x: Any) -> Any:
                out, _ = self.lstm(x.unsqueeze(-1))
                return self.head(out[:, -1, :])

        return Net(self.hidden)

    def fit(self, fleet: Any, horizon: int) -> LSTMModel:
        torch = require_torch()
        torch.manual_seed(self.random_state)
        rng = np.random.default_rng(self.random_state)
        self.season_, self.horizon_ = fleet.season, horizon
        self.lookback_ = self.lookback_days * fleet.season
        win = _windows(fleet.values, self.lookback_, horizon, self.max_windows, rng)
        x, y = win[:, : self.lookback_], win[:, self.lookback_ :]
        level, scale = _normalise(x, self.season_)
        xt = torch.tensor((x - level) / scale, dtype=torch.float32)
        yt = torch.tensor((y - level) / scale, dtype=torch.float32)
        self.net_ = self._net(torch, horizon)
        opt = torch.optim.Adam(self.net_.parameters(), lr=self.learning_rate)
        loss_fn = torch.nn.L1Loss()
        for _ in range(self.epochs):
            order = torch.randperm(len(xt))
            for start in range(0, len(xt), self.batch_size):
                batch = order[start : start + self.batch_size]
                opt.zero_grad()
                loss = loss_fn(self.net_(xt[batch]), yt[batch])
                loss.backward()
                opt.step()
        return self

    def predict(self, fleet: Any, horizon: int) -> np.ndarray:
        torch = require_torch()
        from zhuge.ml.forecast.baselines import last_observed

        if horizon != self.horizon_:
            raise DataError(f"this LSTM was trained for horizon {self.horizon_}, not {horizon}")
        x = fleet.values[:, -self.lookback_ :]
        if x.shape[1] < self.lookback_:
            x = np.concatenate([np.full((len(x), self.lookback_ - x.shape[1]), np.nan), x], 1)
        # gaps: carry the last value forward, then the series' last observation
        x = np.where(np.isnan(x), last_observed(fleet.values)[:, None], x)
        level, scale = _normalise(x, self.season_)
        with torch.no_grad():
            z = self.net_(torch.tensor((x - level) / scale, dtype=torch.float32)).numpy()
        return level + scale * z

    # plain arrays, no pickle
    def to_bytes(self) -> bytes:
        buf = io.BytesIO()
        state = {k: v.detach().cpu().numpy() for k, v in self.net_.state_dict().items()}
        meta = np.array([self.hidden, self.lookback_, self.horizon_, self.season_])
        np.savez(buf, __meta__=meta, **state)
        return buf.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> LSTMModel:
        torch = require_torch()
        arrays = np.load(io.BytesIO(data), allow_pickle=False)
        hidden, lookback, horizon, season = (int(v) for v in arrays["__meta__"])
        model = cls(hidden=hidden)
        model.lookback_, model.horizon_, model.season_ = lookback, horizon, season
        model.net_ = model._net(torch, horizon)
        model.net_.load_state_dict(
            {k: torch.tensor(arrays[k]) for k in arrays.files if k != "__meta__"}
        )
        return model
