"""A fleet as a matrix: long frame ``series_id, timestamp, value`` <-> ``(n_series, n_steps)``.

Every model here works on the matrix. Rows are series; columns are time steps on one regular
grid, **right-aligned**: the last column holds each series' own last timestamp (``end``), and
shorter series are NaN-padded on the left. Series that end at different times keep their own
calendar through ``end``; nothing assumes a fleet-wide clock.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from zhuge.errors import DataError

__all__ = ["Fleet", "daily_season", "to_fleet", "to_long"]

DAY = pd.Timedelta(days=1)
_EPOCH_MONDAY_NS = pd.Timestamp("1970-01-05").value  # the first Monday after the epoch


def daily_season(freq: str | pd.Timedelta) -> int:
    """Steps in one day at ``freq`` (24 at 1h, 288 at 5min); at least 1."""
    step = pd.Timedelta(freq)
    if step <= pd.Timedelta(0):
        raise DataError(f"freq must be a positive duration, not {freq!r}")
    return max(1, round(DAY / step))


@dataclass(frozen=True)
class Fleet:
    """Series on one grid. ``values[i, -1]`` is series ``i`` at ``end[i]``."""

    series_ids: np.ndarray  # (n,)
    values: np.ndarray  # (n, T) float64, NaN where unobserved
    end: np.ndarray  # (n,) datetime64[ns]
    freq: pd.Timedelta

    @property
    def n_series(self) -> int:
        return int(self.values.shape[0])

    @property
    def n_steps(self) -> int:
        return int(self.values.shape[1])

    @property
    def season(self) -> int:
        return daily_season(self.freq)

    def lengths(self) -> np.ndarray:
        """Steps from each series' first observed value to its end (gaps included)."""
        observed = ~np.isnan(self.values)
        first = np.where(observed.any(axis=1), observed.argmax(axis=1), self.n_steps)
        return self.n_steps - first

    def steps_since_monday(self) -> np.ndarray:
        """(n,) int64: grid steps from the epoch's first Monday to each series' column 0."""
        start = self.end.astype("datetime64[ns]").astype(np.int64) - (self.n_steps - 1) * (
            self.freq.value
        )
        return (start - _EPOCH_MONDAY_NS) // self.freq.value

    def head(self, n_steps: int) -> Fleet:
        """The fleet as it was ``n_steps`` columns in: drop the last ``T - n_steps`` columns."""
        cut = self.n_steps - n_steps
        if cut < 0:
            raise ValueError(f"head({n_steps}) of a fleet with {self.n_steps} steps")
        return Fleet(
            self.series_ids,
            self.values[:, :n_steps],
            self.end - np.timedelta64(cut * self.freq.value, "ns"),
            self.freq,
        )

    def tail(self, n_steps: int) -> Fleet:
        """Keep only the last ``n_steps`` columns (what models need to forecast)."""
        return Fleet(self.series_ids, self.values[:, -n_steps:], self.end, self.freq)

    def take(self, rows: np.ndarray) -> Fleet:
        return Fleet(self.series_ids[rows], self.values[rows], self.end[rows], self.freq)

    def first_forecast_time(self) -> np.ndarray:
        """(n,) datetime64[ns]: the first forecast timestamp of each series."""
        return self.end + np.timedelta64(self.freq.value, "ns")


def to_fleet(
    frame: pd.DataFrame,
    *,
    freq: str | pd.Timedelta,
    max_steps: int | None = None,
    id_col: str = "series_id",
    time_col: str = "timestamp",
    value_col: str = "value",
) -> Fleet:
    """Pivot a long frame on a regular grid into a right-aligned :class:`Fleet`.

    Timestamps off the grid are floored onto it; duplicates keep the last row. ``max_steps``
    keeps only the most recent steps of each series (bounded memory on long histories).
    Works without sorting: positions come from integer arithmetic on the timestamps.
    """
    missing = {id_col, time_col, value_col} - set(frame.columns)
    if missing:
        raise DataError(f"forecast input lacks column(s) {sorted(missing)}")
    if len(frame) == 0:
        raise DataError("forecast input is empty")
    step = pd.Timedelta(freq).value
    codes, ids = pd.factorize(frame[id_col], sort=True)
    ts = pd.to_datetime(frame[time_col]).to_numpy("datetime64[ns]").view(np.int64)
    values = pd.to_numeric(frame[value_col], errors="coerce").to_numpy(np.float64)
    end = pd.Series(ts).groupby(codes).max().to_numpy()
    # steps before each series' own end (0 = its last step), computed in place: at 100k
    # series x 336 steps every temporary of this size is 270 MB
    pos = end[codes]
    pos -= ts
    pos //= step
    depth = int(pos.max()) + 1
    n_steps = depth if max_steps is None else min(depth, int(max_steps))
    if depth > n_steps:
        keep = pos < n_steps
        codes, pos, values = codes[keep], pos[keep], values[keep]
    np.subtract(n_steps - 1, pos, out=pos)
    matrix = np.full((len(ids), n_steps), np.nan)
    matrix[codes, pos] = values
    del pos, codes
    return Fleet(
        np.asarray(ids),
        matrix,
        (end // step * step).astype("datetime64[ns]"),
        pd.Timedelta(freq),
    )


def to_long(
    series_ids: np.ndarray,
    first: np.ndarray,
    freq: pd.Timedelta,
    columns: dict[str, np.ndarray],
) -> pd.DataFrame:
    """Matrices ``(n, h)`` -> long frame ``series_id, timestamp, <columns>`` (series-major)."""
    arrays = {name: np.asarray(a) for name, a in columns.items()}
    n, h = next(iter(arrays.values())).shape[:2] if arrays else (len(series_ids), 0)
    offsets = np.arange(h, dtype=np.int64) * freq.value
    timestamps = first.astype("datetime64[ns]").astype(np.int64)[:, None] + offsets[None, :]
    out = {
        "series_id": np.repeat(series_ids, h),
        "timestamp": timestamps.reshape(-1).astype("datetime64[ns]"),
    }
    for name, a in arrays.items():
        out[name] = a.reshape(n * h) if a.ndim == 2 else np.repeat(a, h)
    return pd.DataFrame(out)
