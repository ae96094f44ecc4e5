"""Cleaning rules that turn messy fleet telemetry into series on one regular grid.

Real telemetry is unaligned (NAB samples at 14:27, 14:32, ...), duplicated, has gaps, values
above 100 % and series that are flat, very short or change level. Models need none of that,
but operators need to know it happened, so every rule counts what it did per series and
:func:`clean_fleet` returns a report row for each series beside the cleaned frame.

The rules run in this order (the order is part of the contract; the counts depend on it):

1. rows with a missing value are dropped (``missing_values``);
2. timestamps snap to the grid of ``freq`` (``snapped`` counts rows that moved);
3. exact duplicate rows (same series, raw timestamp and value) are dropped
   (``rows_dropped_duplicates``);
4. values are clipped to ``clip`` (``clipped``), before averaging, so that one impossible
   reading of 250 % does not leak into the mean of its grid slot;
5. rows that share a grid slot are replaced by their mean (``duplicate_timestamps`` counts
   rows merged away);
6. each series gets every grid step from its own first to its own last sample; gaps of at
   most ``max_gap_fill`` steps are filled by linear interpolation (``gaps_filled`` runs,
   ``steps_filled`` steps, and ``filled`` marks them in the frame); longer gaps stay NaN
   (``long_gaps`` runs, ``long_gap_steps`` steps);
7. flags: ``flat`` (no variation: a stuck or idle sensor carries nothing to learn),
   ``too_short`` (fewer than ``min_points`` observed steps; forecasters fall back to a
   baseline), ``starts_late`` / ``stops_early`` (relative to the fleet's first and last
   sample), ``level_shift_at`` (see :func:`detect_level_shifts`).

Series are not padded to the fleet's span: each keeps its own calendar, which is what the
forecasting matrix (right-aligned on each series' last timestamp) expects.

Everything is vectorised over the whole fleet with sorts, ``reduceat`` and ``bincount`` on
integer codes; no Python loop runs per series.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

import numpy as np
import pandas as pd

from zhuge.data.sources import parse_timestamps
from zhuge.errors import DataError

__all__ = ["CleaningRules", "PreparedFleet", "clean_fleet", "detect_level_shifts"]

_DAY_NS = 86_400 * 10**9
_MAD_TO_SD = 1.4826  # median absolute deviation -> standard deviation, for Gaussian noise


@dataclass(frozen=True)
class CleaningRules:
    """Parameters of the cleaning rules; defaults suit CPU % sampled every 5 minutes."""

    freq: str = "5min"
    #: ``nearest`` moves each sample by at most half a step (NAB's 14:27 → 14:25, 14:29 →
    #: 14:30); ``floor`` is pandas' ``resample`` convention (a slot holds [t, t + step)).
    align: Literal["nearest", "floor"] = "nearest"
    #: CPU % cannot leave [0, 100]; readings above 100 come from hypervisor accounting.
    #: ``None`` for metrics without bounds (bytes, requests).
    clip: tuple[float, float] | None = (0.0, 100.0)
    #: Longest gap, in steps, filled by interpolation (3 steps = 15 minutes at 5 min). A
    #: longer outage is a fact about the VM, not noise, and is left NaN for models to see.
    max_gap_fill: int = 3
    #: Observed steps below which a series is ``too_short``; ``None`` means two days of steps,
    #: the least a daily-seasonal model needs to see a season twice.
    min_points: int | None = None
    #: A series whose values span at most this much is ``flat``.
    flat_tolerance: float = 1e-6
    #: How far a series may start after / stop before the fleet does without being flagged.
    edge_tolerance: str = "1h"
    #: Smallest level shift reported, in value units (percentage points for CPU); ``None``
    #: leaves only the noise-relative threshold.
    level_shift_min: float | None = 10.0
    #: A shift must also exceed this many standard deviations of the series' day medians.
    level_shift_noise_k: float = 5.0
    #: Share of days on each side that must sit nearer their own side's level. A real shift
    #: persists; a weekend dip does not (it fails this on at least one side).
    level_shift_persistence: float = 0.85
    #: Whole days needed on each side of a shift before it is considered.
    level_shift_min_days: int = 3
    #: Refuse a grid with more than this many steps per observed sample: one stray timestamp
    #: (1970, 2099) would otherwise make a series of billions of NaN steps.
    max_grid_expansion: float = 50.0

    def evolve(self, **changes: object) -> CleaningRules:
        return replace(self, **changes)

    @property
    def step(self) -> pd.Timedelta:
        try:
            step = pd.Timedelta(pd.tseries.frequencies.to_offset(self.freq))
        except (ValueError, TypeError) as exc:
            raise DataError(f"freq {self.freq!r} is not a fixed-length pandas offset") from exc
        if step <= pd.Timedelta(0):
            raise DataError(f"freq must be a positive duration, not {self.freq!r}")
        return step

    def min_observed_points(self) -> int:
        if self.min_points is not None:
            return int(self.min_points)
        return max(2, int(2 * _DAY_NS // self.step.value))


@dataclass(frozen=True)
class PreparedFleet:
    """Cleaned telemetry and what cleaning did to each series.

    ``frame``: ``series_id, timestamp, value, filled`` (+ ``host_id``, ``cluster_id`` when the
    input had them), sorted by series then time, every grid step present from each series'
    first to last sample; ``value`` is NaN inside long gaps.
    ``report``: one row per input series (see :data:`REPORT_COLUMNS`).
    """

    frame: pd.DataFrame
    report: pd.DataFrame
    rules: CleaningRules

    def summary(self) -> dict[str, int]:
        """Fleet totals of every count and flag, for a job's result summary and logs."""
        r = self.report
        totals = {c: int(r[c].sum()) for c in _COUNT_COLUMNS + _FLAG_COLUMNS}
        totals["level_shifts"] = int(r["level_shift_at"].notna().sum())
        totals["series"] = len(r)
        return totals

    def series_flagged(self, flag: str) -> np.ndarray:
        """Ids of series with ``flag`` set (``too_short``, ``flat``, ``level_shift``, ...)."""
        if flag == "level_shift":
            return self.report.loc[self.report["level_shift_at"].notna(), "series_id"].to_numpy()
        if flag not in _FLAG_COLUMNS:
            raise DataError(f"unknown flag {flag!r}; flags are {[*_FLAG_COLUMNS, 'level_shift']}")
        return self.report.loc[self.report[flag], "series_id"].to_numpy()


_COUNT_COLUMNS = [
    "rows_in",
    "missing_values",
    "snapped",
    "rows_dropped_duplicates",
    "clipped",
    "duplicate_timestamps",
    "points",
    "observed",
    "gaps_filled",
    "steps_filled",
    "long_gaps",
    "long_gap_steps",
]
_FLAG_COLUMNS = ["flat", "too_short", "starts_late", "stops_early"]
REPORT_COLUMNS = [
    "series_id",
    *_COUNT_COLUMNS,
    *_FLAG_COLUMNS,
    "level_shift_at",
    "level_shift_size",
    "first_timestamp",
    "last_timestamp",
    "notes",
]


def clean_fleet(frame: pd.DataFrame, rules: CleaningRules | None = None) -> PreparedFleet:
    """Apply the cleaning rules (module docstring) to a long telemetry frame."""
    rules = rules or CleaningRules()
    step = rules.step.value
    missing = [c for c in ("series_id", "timestamp", "value") if c not in frame.columns]
    if missing:
        raise DataError(
            f"telemetry lacks column(s) {missing}; columns present: {list(frame.columns)}"
        )
    if frame["series_id"].isna().any():
        raise DataError(
            f"column 'series_id' has {int(frame['series_id'].isna().sum())} missing values"
        )
    codes, uniques = pd.factorize(frame["series_id"], sort=True)
    ids = np.asarray(uniques)
    n = len(ids)
    ts_col = frame["timestamp"]
    if not pd.api.types.is_datetime64_any_dtype(ts_col.dtype):
        ts_col = parse_timestamps(ts_col, "auto")[0]
    elif isinstance(ts_col.dtype, pd.DatetimeTZDtype):
        ts_col = ts_col.dt.tz_convert("UTC").dt.tz_localize(None)
    ts = ts_col.to_numpy("datetime64[ns]").view("int64")
    if (ts == np.iinfo(np.int64).min).any():
        raise DataError(
            f"column 'timestamp' has {int((ts == np.iinfo(np.int64).min).sum())} missing values"
        )
    if not pd.api.types.is_numeric_dtype(frame["value"].dtype):
        raise DataError(f"column 'value' must be numeric, not {frame['value'].dtype}")
    values = frame["value"].to_numpy(np.float64, na_value=np.nan)
    counts = {c: np.zeros(n, np.int64) for c in _COUNT_COLUMNS}
    counts["rows_in"] = np.bincount(codes, minlength=n)

    # 1. missing values
    keep = ~np.isnan(values)
    counts["missing_values"] = np.bincount(codes[~keep], minlength=n)
    row = np.flatnonzero(keep)  # position in the input frame, for host/cluster ids
    codes, ts, values = codes[keep].astype(np.int64), ts[keep], values[keep]

    # 2. snap to the grid (integer slots since the epoch)
    slot = (ts + step // 2) // step if rules.align == "nearest" else ts // step
    counts["snapped"] = np.bincount(codes[slot * step != ts], minlength=n)
    base = int(slot.min()) if len(slot) else 0
    rel = slot - base
    n_slots = int(rel.max()) + 1 if len(rel) else 1
    if n * n_slots >= 2**62:
        raise DataError(
            f"timestamps span {n_slots} steps of {rules.freq}: check the timestamp unit"
        )
    key = codes * n_slots + rel
    if len(key) > 1 and not bool(np.all(key[1:] >= key[:-1])):
        order = np.argsort(key, kind="stable")
        key, ts, values, row = key[order], ts[order], values[order], row[order]

    # 3. exact duplicates: they can only sit inside runs of one grid slot, so only those rows
    # (usually few) go through pandas' hashing.
    shared = np.zeros(len(key), bool)
    if len(key) > 1:
        same = key[1:] == key[:-1]
        shared[1:] |= same
        shared[:-1] |= same
    if shared.any():
        sub = np.flatnonzero(shared)
        dup = pd.DataFrame({"k": key[sub], "t": ts[sub], "v": values[sub]}).duplicated().to_numpy()
        drop = sub[dup]
        counts["rows_dropped_duplicates"] = np.bincount(key[drop] // n_slots, minlength=n)
        keep = np.ones(len(key), bool)
        keep[drop] = False
        key, values, row = key[keep], values[keep], row[keep]

    # 4. clip
    if rules.clip is not None:
        low, high = rules.clip
        outside = (values < low) | (values > high)
        counts["clipped"] = np.bincount(key[outside] // n_slots, minlength=n)
        values = np.clip(values, low, high)

    # 5. one value per grid slot: the mean of the rows that landed there
    starts = np.flatnonzero(np.r_[True, key[1:] != key[:-1]]) if len(key) else np.array([], int)
    per_slot = np.diff(np.r_[starts, len(key)])
    slot_mean = np.add.reduceat(values, starts) / per_slot if len(key) else values
    slot_key = key[starts]
    counts["duplicate_timestamps"] = np.bincount(key // n_slots, minlength=n) - np.bincount(
        slot_key // n_slots, minlength=n
    )
    last_row = row[np.r_[starts[1:], len(key)] - 1] if len(key) else row

    # 6. regular grid per series, short gaps filled
    grid = _regular_grid(slot_key, slot_mean, n_slots, rules, ids)
    s_code = grid.series_code
    counts["points"][s_code] = grid.lengths
    counts["observed"][s_code] = np.diff(np.r_[grid.slot_series_starts, len(slot_key)])
    for name, per_series in grid.gap_counts.items():
        counts[name][s_code] = per_series

    # 7. flags
    first_ts = np.full(n, np.iinfo(np.int64).min)
    last_ts = first_ts.copy()
    first_ts[s_code] = (grid.first_rel + base) * step
    last_ts[s_code] = (grid.first_rel + grid.lengths - 1 + base) * step
    present = np.zeros(n, bool)
    present[s_code] = True
    flat = np.zeros(n, bool)
    if len(slot_key):
        span = np.maximum.reduceat(slot_mean, grid.slot_series_starts) - np.minimum.reduceat(
            slot_mean, grid.slot_series_starts
        )
        flat[s_code] = span <= rules.flat_tolerance
    too_short = counts["observed"] < rules.min_observed_points()
    tolerance = pd.Timedelta(rules.edge_tolerance).value
    starts_late = np.zeros(n, bool)
    stops_early = np.zeros(n, bool)
    if present.any():
        starts_late[present] = first_ts[present] > first_ts[present].min() + tolerance
        stops_early[present] = last_ts[present] < last_ts[present].max() - tolerance
    shift_pos, shift_size = detect_level_shifts(grid.values, grid.offsets, grid.lengths, rules)
    shift_at = np.full(n, np.iinfo(np.int64).min)
    has_shift = shift_pos >= 0
    shift_at[s_code[has_shift]] = first_ts[s_code[has_shift]] + shift_pos[has_shift] * step
    size = np.full(n, np.nan)
    size[s_code] = shift_size

    report = pd.DataFrame({"series_id": ids, **counts})
    report["flat"] = flat
    report["too_short"] = too_short
    report["starts_late"] = starts_late
    report["stops_early"] = stops_early
    report["level_shift_at"] = shift_at.view("datetime64[ns]")
    report["level_shift_size"] = size
    report["first_timestamp"] = first_ts.view("datetime64[ns]")
    report["last_timestamp"] = last_ts.view("datetime64[ns]")
    report["notes"] = _notes(report, rules)

    out = pd.DataFrame(
        {
            "series_id": ids[np.repeat(s_code, grid.lengths)],
            "timestamp": ((grid.rel + base) * step).view("datetime64[ns]"),
            "value": grid.values,
            "filled": grid.filled,
        }
    )
    # A VM's latest placement: where it runs now is where its future load lands.
    series_last_slot = np.r_[grid.slot_series_starts[1:], len(slot_key)] - 1
    latest_row = last_row[series_last_slot] if len(slot_key) else last_row
    for column in ("host_id", "cluster_id"):
        if column in frame.columns:
            latest = frame[column].to_numpy()[latest_row]
            out[column] = np.repeat(latest, grid.lengths)
    return PreparedFleet(out, report[REPORT_COLUMNS], rules)


@dataclass(frozen=True)
class _Grid:
    """Series laid end to end on the grid (series-major), with their gap statistics."""

    series_code: np.ndarray  # (s,) code of each series that has any sample
    slot_series_starts: np.ndarray  # (s,) index of each series' first slot in slot_key
    first_rel: np.ndarray  # (s,) first slot of each series, relative to the fleet's first
    lengths: np.ndarray  # (s,) grid steps from first to last sample
    offsets: np.ndarray  # (s,) where each series starts in ``values``
    rel: np.ndarray  # (total,) slot of each grid step
    values: np.ndarray  # (total,)
    filled: np.ndarray  # (total,) True where interpolated
    gap_counts: dict[str, np.ndarray]


def _regular_grid(
    slot_key: np.ndarray,
    slot_mean: np.ndarray,
    n_slots: int,
    rules: CleaningRules,
    ids: np.ndarray,
) -> _Grid:
    code = slot_key // n_slots
    rel = slot_key % n_slots
    series_starts = np.flatnonzero(np.r_[True, code[1:] != code[:-1]]) if len(code) else code
    series_ends = np.r_[series_starts[1:], len(code)] - 1 if len(code) else code
    first_rel, last_rel = rel[series_starts], rel[series_ends]
    lengths = last_rel - first_rel + 1
    total = int(lengths.sum())
    if total > rules.max_grid_expansion * len(slot_key) + 100_000:
        ratio = lengths / np.diff(np.r_[series_starts, len(code)])
        worst = int(np.argmax(ratio))
        raise DataError(
            f"series {ids[code[series_starts[worst]]]!r} spans {int(lengths[worst])} steps of "
            f"{rules.freq} but has {int(np.diff(np.r_[series_starts, len(code)])[worst])} "
            "samples; check its timestamps (unit, stray dates) or raise max_grid_expansion"
        )
    offsets = np.cumsum(lengths) - lengths
    series_of_slot = np.repeat(
        np.arange(len(series_starts)), np.diff(np.r_[series_starts, len(code)])
    )
    values = np.full(total, np.nan)
    values[offsets[series_of_slot] + rel - first_rel[series_of_slot]] = slot_mean
    grid_rel = np.repeat(first_rel - offsets, lengths) + np.arange(total)

    # Gap runs never cross series: every series starts and ends on an observed step.
    missing = np.isnan(values)
    run_start = np.flatnonzero(missing & ~np.r_[False, missing[:-1]])
    run_end = np.flatnonzero(missing & ~np.r_[missing[1:], False])
    run_len = run_end - run_start + 1
    short = run_len <= rules.max_gap_fill
    s_start, s_len = run_start[short], run_len[short]
    inside = np.arange(int(s_len.sum())) - np.repeat(np.cumsum(s_len) - s_len, s_len)
    position = np.repeat(s_start, s_len) + inside
    left = np.repeat(s_start - 1, s_len)
    right = left + np.repeat(s_len + 1, s_len)
    values[position] = values[left] + (values[right] - values[left]) * (inside + 1) / (right - left)
    filled = np.zeros(total, bool)
    filled[position] = True
    series_of_step = np.repeat(np.arange(len(lengths)), lengths)
    s = len(lengths)
    run_series = series_of_step[run_start]
    gap_counts = {
        "gaps_filled": np.bincount(run_series[short], minlength=s),
        "steps_filled": np.bincount(run_series[short], weights=run_len[short], minlength=s),
        "long_gaps": np.bincount(run_series[~short], minlength=s),
        "long_gap_steps": np.bincount(run_series[~short], weights=run_len[~short], minlength=s),
    }
    gap_counts = {k: v.astype(np.int64) for k, v in gap_counts.items()}
    return _Grid(
        code[series_starts],
        series_starts,
        first_rel,
        lengths,
        offsets,
        grid_rel,
        values,
        filled,
        gap_counts,
    )


def _nanmedian_last_axis(a: np.ndarray) -> np.ndarray:
    """Median over the last axis ignoring NaN (NaN where all are NaN), without warnings."""
    ordered = np.sort(a, axis=-1)  # NaN sorts last
    valid = (~np.isnan(a)).sum(axis=-1)
    lo = np.maximum((valid - 1) // 2, 0)[..., None]
    hi = np.maximum(valid // 2, 0)[..., None]
    med = 0.5 * (np.take_along_axis(ordered, lo, -1) + np.take_along_axis(ordered, hi, -1))
    return np.where(valid > 0, med[..., 0], np.nan)


def detect_level_shifts(
    values: np.ndarray, offsets: np.ndarray, lengths: np.ndarray, rules: CleaningRules
) -> tuple[np.ndarray, np.ndarray]:
    """Find at most one level shift per series; return (step index or -1, size) per series.

    ``values`` holds the series end to end on the grid (``offsets``, ``lengths``). The
    detector works on day medians, so that a daily cycle cancels out and bursts cannot move
    them: for every day boundary with at least ``level_shift_min_days`` days on each side it
    compares the median of the day medians before with the median of those after, and keeps
    the largest difference, then moves the boundary to the day split that best separates the
    two levels found. It reports the shift only if it is large (above
    ``level_shift_min`` and ``level_shift_noise_k`` robust standard deviations of the day
    medians around their side's level) and persistent (``level_shift_persistence``
    of the days on each side are nearer their own side's level). The shift time is then
    refined to a step within a day either side of the boundary: the split that puts the
    fewest samples on the side of the level they are not nearest to.
    """
    s = len(lengths)
    shift_pos = np.full(s, -1, np.int64)
    shift_size = np.full(s, np.nan)
    per_day = max(1, round(_DAY_NS / rules.step.value))
    m = rules.level_shift_min_days
    days = -(-lengths // per_day) if s else lengths
    if s == 0 or int(days.max()) < 2 * m:
        return shift_pos, shift_size
    long_enough = np.flatnonzero(days >= 2 * m)
    n_days = int(days[long_enough].max())
    width = n_days * per_day
    matrix = np.full((len(long_enough), width), np.nan)
    lens = lengths[long_enough]
    r = np.repeat(np.arange(len(long_enough)), lens)
    c = np.arange(int(lens.sum())) - np.repeat(np.cumsum(lens) - lens, lens)
    matrix[r, c] = values[np.repeat(offsets[long_enough], lens) + c]
    blocks = matrix.reshape(len(long_enough), n_days, per_day)
    observed_share = (~np.isnan(blocks)).mean(axis=-1)
    day_median = np.where(observed_share >= 0.5, _nanmedian_last_axis(blocks), np.nan)

    best = np.full(len(long_enough), -1)
    best_delta = np.zeros(len(long_enough))
    best_left = np.full(len(long_enough), np.nan)
    best_right = np.full(len(long_enough), np.nan)
    day_valid = ~np.isnan(day_median)
    for b in range(m, n_days - m + 1):
        enough = (day_valid[:, :b].sum(1) >= m) & (day_valid[:, b:].sum(1) >= m)
        left = _nanmedian_last_axis(day_median[:, :b])
        right = _nanmedian_last_axis(day_median[:, b:])
        delta = right - left
        better = enough & (np.abs(delta) > np.abs(best_delta))
        best = np.where(better, b, best)
        best_delta = np.where(better, delta, best_delta)
        best_left = np.where(better, left, best_left)
        best_right = np.where(better, right, best_right)

    # The largest difference of medians favours boundaries a day or two off the true one
    # (an extra day on the long side barely moves its median), so the boundary is re-chosen
    # as the split that leaves the fewest days on the wrong side of the two levels found.
    cols = np.arange(n_days)[None, :]
    nearer_right = np.abs(day_median - best_right[:, None]) < np.abs(
        day_median - best_left[:, None]
    )
    wrong_before = np.cumsum(day_valid & nearer_right, axis=1) - (day_valid & nearer_right)
    wrong_after = (day_valid & ~nearer_right)[:, ::-1].cumsum(axis=1)[:, ::-1]
    cost = (wrong_before + wrong_after).astype(float)
    cost[:, :m] = np.inf
    cost[:, n_days - m + 1 :] = np.inf
    best = np.where(best >= 0, np.argmin(cost, axis=1), -1)
    before = (cols < best[:, None]) & day_valid
    after = (cols >= best[:, None]) & day_valid
    best_left = _nanmedian_last_axis(np.where(before, day_median, np.nan))
    best_right = _nanmedian_last_axis(np.where(after, day_median, np.nan))
    best_delta = best_right - best_left

    # Noise is the spread of day medians around their own side's level: the scale on which
    # the two levels were compared (step-to-step changes would count the daily cycle too).
    own_level = np.where(cols < best[:, None], best_left[:, None], best_right[:, None])
    noise = _MAD_TO_SD * _nanmedian_last_axis(np.abs(day_median - own_level))
    big = (best >= 0) & (before.sum(1) >= m) & (after.sum(1) >= m)
    big &= np.abs(best_delta) >= rules.level_shift_noise_k * np.nan_to_num(noise)
    if rules.level_shift_min is not None:
        big &= np.abs(best_delta) >= rules.level_shift_min
    nearer_right = np.abs(day_median - best_right[:, None]) < np.abs(
        day_median - best_left[:, None]
    )
    left_share = (before & ~nearer_right).sum(1) / np.maximum(before.sum(1), 1)
    right_share = (after & nearer_right).sum(1) / np.maximum(after.sum(1), 1)
    big &= (left_share >= rules.level_shift_persistence) & (
        right_share >= rules.level_shift_persistence
    )

    rows = np.flatnonzero(big)
    if len(rows):
        window = np.arange(-per_day, per_day)[None, :] + (best[rows] * per_day)[:, None]
        inside = (window >= 0) & (window < width)
        x = np.where(inside, matrix[rows[:, None], np.clip(window, 0, width - 1)], np.nan)
        seen = ~np.isnan(x)
        right_side = seen & (np.abs(x - best_right[rows, None]) < np.abs(x - best_left[rows, None]))
        left_side = seen & ~right_side
        # cost of splitting before column j: right-level samples before j + left-level ones after
        wrong_before = np.cumsum(right_side, axis=1) - right_side
        wrong_after = left_side[:, ::-1].cumsum(axis=1)[:, ::-1]
        split = np.argmin(wrong_before + wrong_after, axis=1)
        shift_pos[long_enough[rows]] = window[np.arange(len(rows)), split]
        shift_size[long_enough[rows]] = best_delta[rows]
    return shift_pos, shift_size


def _notes(report: pd.DataFrame, rules: CleaningRules) -> np.ndarray:
    """One readable line per series saying what cleaning changed or found."""
    notes = np.full(len(report), "", dtype=object)

    def add(mask: pd.Series, text: pd.Series | str) -> None:
        nonlocal notes
        text = text.to_numpy(object) if isinstance(text, pd.Series) else text
        notes = notes + np.where(mask.to_numpy(), "; " + text, "")

    def count(column: str, label: str) -> None:
        add(report[column] > 0, report[column].astype(str) + f" {label}")

    count("missing_values", "missing values dropped")
    count("rows_dropped_duplicates", "duplicate rows dropped")
    if rules.clip is not None:
        count("clipped", f"values clipped to [{rules.clip[0]:g}, {rules.clip[1]:g}]")
    count("duplicate_timestamps", "rows merged into shared slots (mean)")
    count("steps_filled", "steps interpolated")
    count("long_gaps", f"gaps longer than {rules.max_gap_fill} steps left empty")
    add(report["flat"], "flat")
    add(
        report["too_short"],
        "too short ("
        + report["observed"].astype(str)
        + f" < {rules.min_observed_points()} points)",
    )
    add(report["starts_late"], "starts late")
    add(report["stops_early"], "stops early")
    add(
        report["level_shift_at"].notna(),
        "level shift of "
        + report["level_shift_size"].round(1).astype(str)
        + " at "
        + report["level_shift_at"].astype(str),
    )
    return np.array([note[2:] for note in notes], dtype=object)
