"""What an operator allows: window length, concurrency, shared bandwidth, blackouts, deadline.

Time is cut into windows of ``window`` length starting at ``not_before`` (default: the start of
the forecast). Every migration planned into a window starts at the window's start; all
migrations of a window therefore run at the same time, and a migration longer than one window
holds its slots in the following windows too. The limits are per window:

- at most ``max_per_host`` migrations leave one source host (``hosts.max_migrations`` may
  override it per host);
- at most ``max_per_cluster`` migrations run inside one cluster;
- the migrations' link rates add up to at most ``bandwidth_gbps``;
- no migration occupies a window that overlaps a blackout (a daily time-of-day range, in the
  timestamps' own wall-clock time, ``"22:00-02:00"`` wraps midnight);
- every migration ends (start + predicted duration) by ``deadline`` and by its VM's
  ``must_move_by``.
"""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from zhuge.errors import InvalidRequest

__all__ = ["PlanConstraints", "blackout_windows", "parse_blackout", "windows_occupied"]

DAY_NS = 86_400 * 10**9
_CLOCK = re.compile(r"^\s*(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*$")


@dataclass(frozen=True, kw_only=True)
class PlanConstraints:
    window: pd.Timedelta = "30min"  # type: ignore[assignment]  # normalised to a Timedelta
    max_per_host: int = 1
    max_per_cluster: int | None = 8  # None: no cluster limit
    bandwidth_gbps: float | None = 100.0  # shared by all migrations of a window; None: no limit
    blackouts: tuple[str, ...] = ()
    deadline: pd.Timestamp | None = None  # None: the end of the forecast
    not_before: pd.Timestamp | None = None  # None: the start of the forecast

    def __post_init__(self) -> None:
        try:
            window = pd.Timedelta(self.window)
        except (ValueError, TypeError) as exc:
            raise InvalidRequest(
                f"window {self.window!r} is not a duration such as '30min'"
            ) from exc
        if window <= pd.Timedelta(0):
            raise InvalidRequest(f"window must be positive, got {window}")
        if window > pd.Timedelta("1D"):
            raise InvalidRequest(f"window must be at most one day, got {window}")
        object.__setattr__(self, "window", window)
        if int(self.max_per_host) != self.max_per_host or self.max_per_host < 1:
            raise InvalidRequest(f"max_per_host must be an integer >= 1, got {self.max_per_host!r}")
        if self.max_per_cluster is not None and (
            int(self.max_per_cluster) != self.max_per_cluster or self.max_per_cluster < 1
        ):
            raise InvalidRequest(
                f"max_per_cluster must be an integer >= 1 or None, got {self.max_per_cluster!r}"
            )
        if self.bandwidth_gbps is not None and not (
            math.isfinite(self.bandwidth_gbps) and self.bandwidth_gbps > 0
        ):
            raise InvalidRequest(
                f"bandwidth_gbps must be positive or None, got {self.bandwidth_gbps!r}"
            )
        blackouts = (self.blackouts,) if isinstance(self.blackouts, str) else tuple(self.blackouts)
        for text in blackouts:
            parse_blackout(text)
        object.__setattr__(self, "blackouts", blackouts)
        for name in ("deadline", "not_before"):
            value = getattr(self, name)
            if value is not None:
                try:
                    stamp = pd.Timestamp(value)
                except (ValueError, TypeError) as exc:
                    raise InvalidRequest(f"{name} {value!r} is not a timestamp") from exc
                if stamp is pd.NaT:
                    raise InvalidRequest(f"{name} must be a timestamp or None, got NaT")
                object.__setattr__(self, name, stamp)

    def evolve(self, **changes: Any) -> PlanConstraints:
        return dataclasses.replace(self, **changes)


def parse_blackout(text: str) -> tuple[int, int]:
    """``"08:00-10:00"`` → (start, end) in ns since midnight; end > start (wrapping adds a day)."""
    match = _CLOCK.match(str(text))
    if not match:
        raise InvalidRequest(f"blackout {text!r} is not a time-of-day range such as '08:00-10:00'")
    h1, m1, h2, m2 = (int(g) for g in match.groups())
    if (
        not (0 <= h1 <= 24 and 0 <= h2 <= 24 and m1 < 60 and m2 < 60)
        or max(h1 * 60 + m1, h2 * 60 + m2) > 1440
    ):
        raise InvalidRequest(f"blackout {text!r} has an hour or minute out of range")
    start = (h1 * 60 + m1) * 60 * 10**9
    end = (h2 * 60 + m2) * 60 * 10**9
    if start == end:
        raise InvalidRequest(f"blackout {text!r} is empty; write '00:00-24:00' for a whole day")
    if end < start:
        end += DAY_NS
    return start, end


def blackout_windows(
    window_starts: pd.DatetimeIndex, window: pd.Timedelta, blackouts: tuple[str, ...]
) -> NDArray[np.bool_]:
    """True for each window that overlaps any blackout, in the timestamps' wall-clock time."""
    starts = pd.DatetimeIndex(window_starts)
    out = np.zeros(len(starts), dtype=bool)
    if not blackouts or len(starts) == 0:
        return out
    time_of_day = np.asarray((starts - starts.normalize()).asi8, dtype=np.int64)
    length = window.value
    for text in blackouts:
        b_start, b_end = parse_blackout(text)
        for day in (-1, 0, 1):  # a window (<= 1 day) can meet yesterday's, today's or tomorrow's
            lo = b_start + day * DAY_NS
            hi = b_end + day * DAY_NS
            out |= (time_of_day < hi) & (time_of_day + length > lo)
    return out


def windows_occupied(
    total_s: NDArray[np.float64] | float, window: pd.Timedelta
) -> NDArray[np.int64]:
    """How many consecutive windows a migration of ``total_s`` seconds holds (at least one)."""
    window_s = window.value / 1e9
    spans = np.ceil(np.asarray(total_s, dtype=np.float64) / window_s - 1e-9)
    return np.maximum(spans, 1).astype(np.int64)
