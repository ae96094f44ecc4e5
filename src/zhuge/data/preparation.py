"""Telemetry → model-ready series, one chunk of whole series at a time.

What the ``prepare`` / ``train`` / ``forecast`` / ``backtest`` jobs run on each chunk:

1. the raw samples are cleaned on their own **sample grid** (``sample_freq``: the spacing the
   telemetry was collected at, detected by :func:`detect_sample_freq` unless given), with
   the rules of :mod:`zhuge.data.cleaning`, which report per series what they did;
2. for the ``vm`` level the cleaned series are aggregated in time to the forecast grid
   ``freq`` with the statistic ``agg`` (``mean``, ``max`` or ``p95`` of each slot);
3. for ``host`` / ``cluster`` a chunk only yields partial sums on the sample grid
   (:func:`zhuge.data.aggregation.partial_roll_up`), because a host's VMs may fall in several
   chunks; the job adds the partials of all chunks up and aggregates the result in time
   (:func:`finish_level`), so a host's hourly p95 is the p95 of the host's own load.

Pure: frames in, frames out; the jobs decide where chunks come from and where they go.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd

from zhuge.data.aggregation import finish_roll_up, partial_roll_up, resample_series
from zhuge.data.cleaning import CleaningRules, PreparedFleet, clean_fleet
from zhuge.errors import DataError

__all__ = [
    "SAMPLE_GRIDS",
    "ChunkSpec",
    "detect_sample_freq",
    "drop_partial_last_slot",
    "finish_level",
    "level_partials",
    "prepare_chunk",
]

Agg = Literal["mean", "max", "p95"]
Level = Literal["vm", "host", "cluster"]

# Sample grids telemetry is usually collected on; detection picks the nearest that divides
# the forecast grid, so every forecast slot holds a whole number of samples.
SAMPLE_GRIDS = ("1min", "5min", "10min", "15min", "30min", "1h")
DETECT_ROWS = 200_000  # rows of the first chunk looked at to detect the sample grid


@dataclass(frozen=True)
class ChunkSpec:
    """How every chunk of one job is prepared (plain data: it travels to Dask workers)."""

    freq: str  # forecast grid
    sample_freq: str  # grid the raw samples are cleaned on
    agg: Agg = "mean"
    level: Level = "vm"

    def rules(self) -> CleaningRules:
        return CleaningRules(freq=self.sample_freq)


def detect_sample_freq(frame: pd.DataFrame, freq: str) -> str:
    """The sample grid of raw telemetry: the median spacing of consecutive samples within a
    series, snapped to the nearest of :data:`SAMPLE_GRIDS` that divides ``freq``.

    Raises ``DataError`` when the samples are sparser than ``freq`` (a 5-minute forecast of
    hourly samples would be three quarters invented).
    """
    head = frame.iloc[:DETECT_ROWS]
    ordered = head.sort_values(["series_id", "timestamp"], kind="stable")
    ts = ordered["timestamp"].to_numpy("datetime64[ns]").view(np.int64)
    same = ordered["series_id"].to_numpy()[1:] == ordered["series_id"].to_numpy()[:-1]
    gaps = np.diff(ts)[same]
    gaps = gaps[gaps > 0]
    target = pd.Timedelta(freq)
    if gaps.size == 0:
        return pd.tseries.frequencies.to_offset(target).freqstr
    spacing = pd.Timedelta(int(np.median(gaps)), "ns")
    if spacing > target * 1.5:
        raise DataError(
            f"the telemetry is sampled every {_duration(spacing)} (median spacing), sparser "
            f"than the "
            f"forecast grid {freq}; choose a coarser freq"
        )
    fits = [g for g in SAMPLE_GRIDS if target % pd.Timedelta(g) == pd.Timedelta(0)]
    fits = [g for g in fits if pd.Timedelta(g) <= target] or [freq]
    best = min(fits, key=lambda g: abs(np.log(pd.Timedelta(g) / spacing)))
    return best


def _duration(value: pd.Timedelta) -> str:
    seconds = value.total_seconds()
    for unit, size in (("d", 86_400), ("h", 3_600), ("min", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


def prepare_chunk(frame: pd.DataFrame, spec: ChunkSpec) -> tuple[pd.DataFrame, PreparedFleet]:
    """Clean one chunk of whole series and bring it to the forecast grid.

    Returns ``(series, cleaned)``: for the ``vm`` level ``series`` is ``series_id, timestamp,
    value`` on ``spec.freq`` (+ ``host_id``/``cluster_id`` when the telemetry had them); for
    ``host``/``cluster`` it is the chunk's partial sums on the sample grid (see the module
    docstring). ``cleaned.report`` says per VM what cleaning did.
    """
    cleaned = clean_fleet(frame, spec.rules())
    clean = cleaned.frame
    if spec.level != "vm":
        return clean, cleaned
    series = _to_forecast_grid(clean[["series_id", "timestamp", "value"]], spec)
    for column in ("host_id", "cluster_id"):
        if column in clean.columns:
            placement = clean.groupby("series_id", sort=False)[column].last()
            series[column] = series["series_id"].map(placement).to_numpy()
    return series, cleaned


def finish_level(partials: pd.DataFrame, spec: ChunkSpec) -> pd.DataFrame:
    """Host/cluster series on ``spec.freq`` from the partial sums of every chunk."""
    rolled = finish_roll_up(partials)
    return _to_forecast_grid(rolled[["series_id", "timestamp", "value"]], spec)


def level_partials(clean: pd.DataFrame, spec: ChunkSpec, vms: pd.DataFrame | None) -> pd.DataFrame:
    """One chunk's partial sums toward its hosts' or clusters' load (sample grid)."""
    return partial_roll_up(clean, spec.level, vms=vms)


def _to_forecast_grid(frame: pd.DataFrame, spec: ChunkSpec) -> pd.DataFrame:
    if pd.Timedelta(spec.sample_freq) == pd.Timedelta(spec.freq):
        return frame.reset_index(drop=True)
    out = resample_series(frame, spec.freq, spec.agg)
    return drop_partial_last_slot(frame, out, spec)[["series_id", "timestamp", "value"]]


def drop_partial_last_slot(
    samples: pd.DataFrame, slots: pd.DataFrame, spec: ChunkSpec
) -> pd.DataFrame:
    """Drop each series' last forecast slot when fewer than half its samples are in yet.

    Telemetry read mid-hour ends in a slot holding a few minutes: its mean is noisy and its
    max or p95 biased low, and it is where every forecast starts from. Forecasts then start
    at that slot instead (it is predicted, not used).
    """
    step = pd.Timedelta(spec.freq).value
    per_slot = step // pd.Timedelta(spec.sample_freq).value
    ts = samples["timestamp"].to_numpy("datetime64[ns]").view(np.int64)
    valid = samples["value"].notna().to_numpy()
    keys = pd.DataFrame({"series_id": samples["series_id"].to_numpy(), "slot": ts // step})
    last = keys.groupby("series_id", sort=False)["slot"].max()
    in_last = keys.loc[
        valid & (keys["slot"].to_numpy() == last.reindex(keys["series_id"]).to_numpy())
    ]
    counts = in_last.groupby("series_id", sort=False).size().reindex(last.index, fill_value=0)
    partial = last[counts.to_numpy() * 2 < per_slot]
    if partial.empty:
        return slots
    slot_ns = slots["timestamp"].to_numpy("datetime64[ns]").view(np.int64) // step
    drop = slot_ns == partial.reindex(slots["series_id"]).to_numpy(dtype=np.float64)
    return slots.loc[~drop].reset_index(drop=True)
