"""A global LSTM forecaster in PyTorch (optional extra: ``pip install zhuge[torch]``).

One model for the whole fleet, like the GBM: training examples are windows of every series
(``lookback`` steps in, ``horizon`` steps out), each normalised by its own level (mean of the
last day) and scale (standard deviation of the window, floored). Per input step the network
sees the value and the calendar (sin/cos of time of day and of time of week); at the origin
it also sees, per forecast step, last week's value and the last day's value (what the GBM
gets as features). It emits the whole horizon at once as a
**correction to the seasonal mean** (each time of day averaged over the lookback's days; the
seasonal naive with a one-day lookback), and the correction starts at zero, so an untrained
network is exactly that seasonal mean.

Training: Adam on the L1 loss (MASE is an absolute-error metric), early stopping on a
validation set (the last horizon of a sample of series, never overlapping a training target;
a random tenth of the windows when the history is too short for that), and the best epoch's
weights are kept -- including "epoch 0", the seasonal mean itself.

Where it runs is one choice, :func:`placement`: ``device="auto"`` takes CUDA when torch sees
a GPU, else the CPU; ``precision="auto"`` is float32 everywhere, since bfloat16 autocast
(``precision="bf16"``) measured no faster on an H100 at these sizes. Weights are always
float32. On the CPU, training is
deterministic for a given ``random_state`` (same machine, same thread count).

Saved as plain arrays (``np.savez``, no pickle) plus options and shapes as JSON, inside the
forecaster's manifest'd artifact (:mod:`.persistence`). A loaded model runs where it is loaded
(``device="auto"`` unless told), so a model trained on a GPU forecasts on a CPU-only machine.

torch is imported only when a model is fitted or loaded; without it that raises
:class:`~zhuge.errors.MissingDependency` naming the extra.
"""

from __future__ import annotations

import contextlib
import io
import json
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np

from zhuge.errors import DataError, InvalidRequest, MissingDependency
from zhuge.ml.forecast.gbm import SCALE_FLOOR_ABS, SCALE_FLOOR_REL

__all__ = ["INSTALL_HINT", "LSTMModel", "LSTMOptions", "Placement", "placement", "require_torch"]

INSTALL_HINT = "the LSTM forecaster needs PyTorch: pip install zhuge[torch]"
FORMAT_VERSION = 1
N_CHANNELS = 5  # value, sin/cos time of day, sin/cos time of week
RANDOM_HOLDOUT = 0.1  # share of windows held out when no time-based validation fits
MIN_IMPROVEMENT = 1e-4  # relative drop in validation loss that counts as better
PREDICT_CHUNK = 16_384  # series per forward pass when forecasting (bounded memory)


def require_torch() -> Any:
    """Import torch or raise MissingDependency naming the extra to install."""
    try:
        import torch
    except ImportError as exc:
        raise MissingDependency(INSTALL_HINT) from exc
    return torch


@dataclass(frozen=True)
class LSTMOptions:
    """Hyperparameters of :class:`LSTMModel` (plain data: saved as JSON)."""

    hidden: int = 64
    layers: int = 1
    lookback_days: int = 3
    max_epochs: int = 20
    patience: int = 3  # epochs without a better validation loss before stopping
    max_windows: int = 20_000  # training windows sampled over all series
    validation_series: int = 2_000  # series whose last horizon is the validation set
    batch_size: int = 512
    learning_rate: float = 3e-3
    device: str = "auto"  # "auto", "cpu", "cuda", "cuda:1" ...
    precision: str = "auto"  # "auto" (fp32: bf16 measured no faster), "fp32", "bf16"
    random_state: int = 0

    @classmethod
    def from_dict(cls, raw: dict[str, Any] | None) -> LSTMOptions:
        try:
            return replace(cls(), **(raw or {}))
        except TypeError as exc:
            known = ", ".join(cls.__dataclass_fields__)
            raise InvalidRequest(
                f"unknown LSTM option in {sorted(raw or {})}; known: {known}"
            ) from exc


# -- where it runs -------------------------------------------------------------------------


@dataclass(frozen=True)
class Placement:
    """The device and the autocast dtype (None: float32) the model computes in."""

    device: Any  # torch.device
    autocast_dtype: Any = None

    def autocast(self) -> contextlib.AbstractContextManager:
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        import torch

        return torch.autocast(self.device.type, dtype=self.autocast_dtype)

    @property
    def precision(self) -> str:
        return "fp32" if self.autocast_dtype is None else "bf16"


def placement(torch: Any, device: str = "auto", precision: str = "auto") -> Placement:
    """The one CPU/GPU decision: resolve ``device`` and ``precision`` options."""
    if device == "auto":
        where = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    else:
        try:
            where = torch.device(device)
        except RuntimeError as exc:
            raise InvalidRequest(f"unknown device {device!r}; use auto, cpu or cuda") from exc
        if where.type not in ("cpu", "cuda"):
            raise InvalidRequest(f"device {device!r} is not supported; use auto, cpu or cuda")
        if where.type == "cuda" and not torch.cuda.is_available():
            raise InvalidRequest(
                f"device {device!r} asked for, but this torch ({torch.__version__}) sees no "
                "CUDA GPU; use device='auto' or 'cpu'"
            )
    if precision not in ("auto", "fp32", "bf16"):
        raise InvalidRequest(f"precision must be auto, fp32 or bf16, not {precision!r}")
    # "auto" is fp32 on both: on an H100, bf16 autocast trained no faster than fp32 at hidden
    # 64 or 256 (an LSTM this small waits on its sequential steps, not on matrix throughput;
    # benchmarks/README_gpu.md), so it stays an explicit choice
    return Placement(where, torch.bfloat16 if precision == "bf16" else None)


# -- arrays: windows, normalisation, features (numpy, no torch) ---------------------------


def _ffill(values: np.ndarray) -> np.ndarray:
    """Carry each row's last observation forward over gaps; leading NaN stay NaN."""
    n, t = values.shape
    idx = np.where(np.isnan(values), 0, np.arange(t)[None, :])
    np.maximum.accumulate(idx, axis=1, out=idx)
    return values[np.arange(n)[:, None], idx]


def _calendar(first_step: np.ndarray, length: int, season: int) -> np.ndarray:
    """(k, length, 4) sin/cos of time of day and of week, steps from a Monday 00:00."""
    steps = first_step[:, None] + np.arange(length)[None, :]
    day = 2 * np.pi * (steps % season) / season
    week = 2 * np.pi * (steps % (7 * season)) / (7 * season)
    return np.stack([np.sin(day), np.cos(day), np.sin(week), np.cos(week)], axis=-1)


def _examples(
    filled: np.ndarray,
    monday_steps: np.ndarray,
    rows: np.ndarray,
    origins: np.ndarray,
    lookback: int,
    horizon: int,
    season: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Inputs (k, lookback, channels), context (k, 2, horizon), level and scale (k, 1).

    ``origins`` index each example's last input step in ``filled`` (gaps already carried
    forward; leading NaN left for the caller to drop or fill). Context, per forecast step:
    last week's value there (the seasonal naive where there is none) and the seasonal naive
    (the last day) -- what a GBM gets as features, handed to the output layer so the
    recurrent state need not memorise them.
    """
    idx = origins[:, None] + np.arange(-lookback + 1, 1)[None, :]
    x = filled[rows[:, None], idx]
    level = x[:, -season:].mean(axis=1, keepdims=True)
    scale = x.std(axis=1, keepdims=True)
    scale = np.maximum(scale, np.maximum(np.abs(level) * SCALE_FLOOR_REL, SCALE_FLOOR_ABS))
    z = (x - level) / scale
    phase = np.arange(horizon) % season
    naive = z[:, lookback - season + phase]
    week_idx = origins[:, None] + 1 + np.arange(horizon)[None, :] - 7 * season
    week = filled[rows[:, None], np.maximum(week_idx, 0)]
    week = np.where((week_idx >= 0) & ~np.isnan(week), (week - level) / scale, naive)
    cal = _calendar(monday_steps[rows] + origins - lookback + 1, lookback, season)
    inputs = np.concatenate([z[:, :, None], cal], axis=-1)
    context = np.stack([week, naive], axis=1)
    return inputs.astype(np.float32), context.astype(np.float32), level, scale


def _network(torch: Any, hidden: int, layers: int, lookback: int, horizon: int, season: int):
    class SeasonalCorrectionLSTM(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lstm = torch.nn.LSTM(N_CHANNELS, hidden, num_layers=layers, batch_first=True)
            self.head = torch.nn.Linear(hidden + 2 * horizon, horizon)
            # zero correction at the start: the untrained model is the seasonal naive
            torch.nn.init.zeros_(self.head.weight)
            torch.nn.init.zeros_(self.head.bias)
            # the base forecast: each time of day's mean over the lookback's whole days
            phase = torch.arange(horizon) % season
            days = torch.arange(1, lookback // season + 1)
            index = lookback - days[:, None] * season + phase[None, :]
            self.register_buffer("day_index", index, persistent=False)  # (days, horizon)

        def forward(self, x: Any, context: Any) -> Any:
            out, _ = self.lstm(x)
            base = x[:, self.day_index, 0].mean(dim=1)
            relative = (context - base[:, None, :]).flatten(1)
            correction = self.head(torch.cat([out[:, -1], relative], dim=1))
            return base + correction.float()

    return SeasonalCorrectionLSTM()


# -- the model ------------------------------------------------------------------------------


class LSTMModel:
    """Fleet model (see :mod:`.models`): ``LSTMModel(**options).fit(fleet, h).predict(...)``.

    Learned: ``net_``, ``lookback_``, ``horizon_``, ``season_``, ``device_``, ``precision_``,
    ``epochs_`` (run), ``best_epoch_`` (0: the seasonal mean was never beaten),
    ``validation_loss_`` (normalised L1 of the kept weights), ``n_windows_``.
    """

    name = "lstm"

    def __init__(self, options: LSTMOptions | None = None, **params: Any) -> None:
        base = asdict(options) if options is not None else {}
        self.options = LSTMOptions.from_dict({**base, **params})
        self.net_: Any = None

    # -- fitting ---------------------------------------------------------------------------

    def fit(self, fleet: Any, horizon: int) -> LSTMModel:
        torch = require_torch()
        o = self.options
        where = placement(torch, o.device, o.precision)
        season, n_steps = fleet.season, fleet.n_steps
        lookback = min(o.lookback_days * season, n_steps - horizon)
        if lookback < season:
            raise DataError(
                f"series need {season + horizon} steps (a day and a horizon) to train the "
                f"LSTM, have {n_steps}"
            )
        rng = np.random.default_rng(o.random_state)
        window = _Windows(fleet.values, fleet.steps_since_monday(), lookback, horizon, season)
        train, valid = window.split(o.max_windows, o.validation_series, rng)
        if len(train[0]) == 0:
            raise DataError("no complete training window: every series has gaps at its start")
        self.lookback_, self.horizon_, self.season_ = lookback, horizon, season
        self.device_, self.precision_ = str(where.device), where.precision
        self.n_windows_ = len(train[0])
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(o.random_state)
            net = _network(torch, o.hidden, o.layers, lookback, horizon, season)
        self.net_ = net.to(where.device)
        self._train(torch, where, train, valid)
        self.net_.eval()
        return self

    def _train(self, torch: Any, where: Placement, train: tuple, valid: tuple) -> None:
        o = self.options
        x, context, y = (torch.from_numpy(a).to(where.device) for a in train)
        vx, vcontext, vy = (torch.from_numpy(a).to(where.device) for a in valid)
        shuffle = torch.Generator().manual_seed(o.random_state)
        fused = {"fused": True} if where.device.type == "cuda" else {}
        opt = torch.optim.Adam(self.net_.parameters(), lr=o.learning_rate, **fused)

        def validation_loss() -> float:
            if len(vx) == 0:
                return float("nan")
            self.net_.eval()
            with torch.no_grad(), where.autocast():
                loss = _masked_l1(torch, self.net_(vx, vcontext), vy)
            self.net_.train()
            return float(loss)

        best = validation_loss()
        best_state = _copy_state(self.net_)
        self.best_epoch_, self.epochs_ = 0, 0
        stale = 0
        self.net_.train()
        for epoch in range(1, o.max_epochs + 1):
            order = torch.randperm(len(x), generator=shuffle).to(where.device)
            for start in range(0, len(x), o.batch_size):
                batch = order[start : start + o.batch_size]
                with where.autocast():
                    loss = _masked_l1(torch, self.net_(x[batch], context[batch]), y[batch])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(self.net_.parameters(), 1.0)
                opt.step()
            self.epochs_ = epoch
            current = validation_loss()
            if np.isnan(best) or current < best - MIN_IMPROVEMENT * abs(best):
                best, best_state, self.best_epoch_, stale = (
                    current,
                    _copy_state(self.net_),
                    epoch,
                    0,
                )
            else:
                stale += 1
                if stale >= o.patience:
                    break
        self.net_.load_state_dict(best_state)
        self.validation_loss_ = best

    # -- forecasting -----------------------------------------------------------------------

    def predict(self, fleet: Any, horizon: int) -> np.ndarray:
        """(n_series, horizon) forecasts from the end of ``fleet``; NaN for an empty series."""
        torch = require_torch()
        if self.net_ is None:
            raise DataError("this LSTM is not fitted")
        if horizon != self.horizon_:
            raise DataError(f"this LSTM was trained for horizon {self.horizon_}, not {horizon}")
        where = placement(torch, self.options.device, self.options.precision)
        self.net_.to(where.device)
        values = fleet.values
        lookback = self.lookback_
        if values.shape[1] < lookback:
            pad = np.full((len(values), lookback - values.shape[1]), np.nan)
            values = np.concatenate([pad, values], axis=1)
        monday = fleet.steps_since_monday() - (values.shape[1] - fleet.n_steps)
        filled = _backfill_start(_ffill(values))
        window = _Windows(filled, monday, lookback, horizon, self.season_)
        out = np.full((len(values), horizon), np.nan)
        for lo in range(0, len(values), PREDICT_CHUNK):
            rows = np.arange(lo, min(lo + PREDICT_CHUNK, len(values)))
            inputs, context, level, scale = window.examples(
                rows, np.full(len(rows), filled.shape[1] - 1)
            )
            with torch.no_grad(), where.autocast():
                z = self.net_(
                    torch.from_numpy(np.nan_to_num(inputs)).to(where.device),
                    torch.from_numpy(np.nan_to_num(context)).to(where.device),
                )
            out[rows] = level + scale * z.float().cpu().numpy().astype(np.float64)
        empty = np.isnan(filled[:, -1])
        out[empty] = np.nan
        return out

    # -- persistence: plain arrays and JSON, no pickle ----------------------------------------

    def to_bytes(self) -> bytes:
        if self.net_ is None:
            raise DataError("this LSTM is not fitted")
        state = {k: v.detach().float().cpu().numpy() for k, v in self.net_.state_dict().items()}
        meta = {
            "format_version": FORMAT_VERSION,
            "options": asdict(self.options),
            "lookback": self.lookback_,
            "horizon": self.horizon_,
            "season": self.season_,
            "trained_on": self.device_,
            "precision": self.precision_,
            "epochs": self.epochs_,
            "best_epoch": self.best_epoch_,
            "validation_loss": self.validation_loss_,
            "n_windows": self.n_windows_,
        }
        buf = io.BytesIO()
        np.savez(buf, __meta__=np.array(json.dumps(meta)), **state)
        return buf.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes, *, device: str = "auto") -> LSTMModel:
        """Rebuild a saved model; it runs on ``device`` (default: a GPU if visible, else CPU)."""
        torch = require_torch()
        arrays = np.load(io.BytesIO(data), allow_pickle=False)
        meta = json.loads(str(arrays["__meta__"]))
        if meta.get("format_version") != FORMAT_VERSION:
            raise DataError(
                f"LSTM weights have format {meta.get('format_version')}, not {FORMAT_VERSION}"
            )
        model = cls(**{**meta["options"], "device": device})
        o = model.options
        model.lookback_, model.horizon_, model.season_ = (
            meta["lookback"],
            meta["horizon"],
            meta["season"],
        )
        model.device_, model.precision_ = meta["trained_on"], meta["precision"]
        model.epochs_, model.best_epoch_ = meta["epochs"], meta["best_epoch"]
        model.validation_loss_, model.n_windows_ = meta["validation_loss"], meta["n_windows"]
        net = _network(torch, o.hidden, o.layers, model.lookback_, model.horizon_, model.season_)
        net.load_state_dict(
            {k: torch.from_numpy(arrays[k]) for k in arrays.files if k != "__meta__"}
        )
        model.net_ = net.eval()
        return model


class _Windows:
    """Examples cut from one fleet matrix: (row, origin) pairs -> normalised arrays."""

    def __init__(
        self, values: np.ndarray, monday_steps: np.ndarray, lookback: int, horizon: int, season: int
    ) -> None:
        self.values = values
        self.filled = _ffill(values)
        self.monday = monday_steps
        self.lookback, self.horizon, self.season = lookback, horizon, season

    def examples(self, rows: np.ndarray, origins: np.ndarray):
        return _examples(
            self.filled, self.monday, rows, origins, self.lookback, self.horizon, self.season
        )

    def labelled(self, rows: np.ndarray, origins: np.ndarray) -> tuple[np.ndarray, ...]:
        """(inputs, context, target) of complete windows; target NaN where unobserved."""
        inputs, context, level, scale = self.examples(rows, origins)
        idx = origins[:, None] + 1 + np.arange(self.horizon)[None, :]
        target = ((self.values[rows[:, None], idx] - level) / scale).astype(np.float32)
        keep = ~np.isnan(inputs).any(axis=(1, 2)) & ~np.isnan(target).all(axis=1)
        return inputs[keep], context[keep], target[keep]

    def split(self, max_windows: int, validation_series: int, rng: np.random.Generator):
        """(train, valid): validation is the last horizon of a sample of series, and training
        targets end before it; a random tenth of the windows when the history is too short."""
        n, t = self.values.shape
        last_train_origin = t - 1 - 2 * self.horizon
        time_split = last_train_origin >= self.lookback - 1
        latest = last_train_origin if time_split else t - 1 - self.horizon
        origins = np.arange(self.lookback - 1, latest + 1)
        k = min(max_windows, n * len(origins))
        train = self.labelled(rng.integers(0, n, k), rng.choice(origins, k))
        if time_split:
            rows = np.sort(rng.permutation(n)[:validation_series])
            return train, self.labelled(rows, np.full(len(rows), t - 1 - self.horizon))
        held = rng.random(len(train[0])) < RANDOM_HOLDOUT
        return tuple(a[~held] for a in train), tuple(a[held] for a in train)


def _backfill_start(filled: np.ndarray) -> np.ndarray:
    """Fill leading NaN with each row's first observation (short series at forecast time)."""
    observed = ~np.isnan(filled)
    first = filled[np.arange(len(filled)), observed.argmax(axis=1)]
    return np.where(np.isnan(filled), first[:, None], filled)


def _masked_l1(torch: Any, pred: Any, target: Any) -> Any:
    """Mean absolute error over observed targets, in float32."""
    observed = ~torch.isnan(target)
    err = (pred.float() - torch.nan_to_num(target)).abs() * observed
    return err.sum() / observed.sum().clamp(min=1)


def _copy_state(net: Any) -> dict[str, Any]:
    return {k: v.detach().clone() for k, v in net.state_dict().items()}
