"""A real fleet as it comes: VMs the forecast does not cover, and raw telemetry as the actual load.

- A VM of the table with no forecast row (its telemetry starts after the history ends, or has
  no usable sample) is listed unplaced with :data:`NO_FORECAST`, so every VM gets a row.
- ``--evaluate-with`` may be raw telemetry of the next day (duplicate and off-grid timestamps,
  gaps, VMs that start late or stop early). It is cleaned by the rules forecasting uses
  (:func:`zhuge.data.preparation.prepare_chunk`) onto the forecast's grid; the plan is scored
  on the VMs whose actual load covers the whole planning period, and the others are named
  with the reason.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np
import pandas as pd

from zhuge.data.preparation import ChunkSpec, detect_sample_freq, prepare_chunk
from zhuge.errors import DataError

NO_FORECAST = (
    "no forecast: its telemetry has no usable sample before the forecast starts "
    "(it started late, or all its samples were unusable)"
)
EXAMPLES = 20  # VMs quoted in a summary, as the planner quotes unplaced ones


def add_unforecast(
    plan: pd.DataFrame, summary: dict[str, Any], vm_ids: tuple[str, ...]
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """The plan and summary with a row per VM that had no forecast, unplaced with the reason."""
    if not vm_ids:
        return plan, summary
    rows = pd.DataFrame({"vm_id": list(vm_ids), "reason": NO_FORECAST})
    plan = pd.concat([plan, rows], ignore_index=True)
    by_reason = Counter(summary.get("unplaced_by_reason", {}))
    by_reason["no-forecast"] += len(vm_ids)
    examples = list(summary.get("unplaced_examples", []))
    room = max(0, EXAMPLES - len(examples))
    examples += [{"vm_id": vm, "reason": NO_FORECAST} for vm in vm_ids[:room]]
    summary = {
        **summary,
        "vms": int(summary["vms"]) + len(vm_ids),
        "unplaced": int(summary["unplaced"]) + len(vm_ids),
        "unplaced_by_reason": dict(by_reason),
        "unplaced_examples": examples,
    }
    return plan, summary


def grid_step(forecast: pd.DataFrame) -> pd.Timedelta:
    """The forecast's grid: the smallest step between its distinct timestamps."""
    stamps = pd.DatetimeIndex(forecast["timestamp"].unique()).sort_values()
    if len(stamps) < 2:
        raise DataError("forecast has a single timestamp; at least two are needed")
    return pd.Timedelta(int(np.diff(stamps.asi8).min()), "ns")


def clean_actual(actual: pd.DataFrame, step: pd.Timedelta) -> pd.DataFrame:
    """The actual load (``yhat`` or telemetry's ``value``) cleaned as forecasting cleans its
    input, on the grid ``step``: ``series_id, timestamp, yhat`` (NaN inside long gaps)."""
    value = "yhat" if "yhat" in actual.columns else "value"
    frame = actual[["series_id", "timestamp", value]].rename(columns={value: "value"})
    frame = frame.dropna(subset=["timestamp"])
    if frame.empty:
        raise DataError("actual has no rows")
    if not pd.api.types.is_datetime64_any_dtype(frame["timestamp"]):
        try:
            frame = frame.assign(timestamp=pd.to_datetime(frame["timestamp"]))
        except (ValueError, TypeError) as exc:
            raise DataError(f"actual.timestamp must be timestamps: {exc}") from exc
    frame = frame.assign(
        series_id=frame["series_id"].astype(str),
        value=pd.to_numeric(frame["value"], errors="coerce").astype(np.float64),
    )
    freq = _freq(step)
    spec = ChunkSpec(freq=freq, sample_freq=detect_sample_freq(frame, freq))
    series, _ = prepare_chunk(frame, spec)
    return series.rename(columns={"value": "yhat"})[["series_id", "timestamp", "yhat"]]


def _freq(step: pd.Timedelta) -> str:
    seconds = int(step.total_seconds())
    return f"{seconds // 60}min" if seconds % 60 == 0 else f"{seconds}s"


def evaluable(
    actual: pd.DataFrame,
    vm_ids: pd.Series,
    first: pd.Timestamp,
    end: pd.Timestamp,
    step: pd.Timedelta,
) -> tuple[pd.DataFrame, pd.Index, dict[str, Any]]:
    """The actual load of the planning period ``[first, end)`` for the VMs it covers whole.

    Returns ``(actual, covered vm_ids, left_out)``; ``left_out`` counts the others by reason
    (``no actual rows``; ``actual misses part of the planning period``) with examples.
    """
    ids = pd.Index(vm_ids.astype(str))
    stamps = pd.DatetimeIndex(actual["timestamp"])
    inside = np.asarray((stamps >= first) & (stamps < end))
    period = actual.loc[inside & actual["series_id"].isin(ids).to_numpy()]
    steps = int((end - first) // step)
    known = period.loc[period["yhat"].notna()].groupby("series_id", sort=False).size()
    known = known.reindex(ids, fill_value=0)
    has_rows = ids.isin(set(actual["series_id"]))
    whole = (known.to_numpy() >= steps) & (steps > 0)
    reasons = np.where(
        ~has_rows,
        "no actual rows",
        "actual misses part of the planning period",
    )
    left = np.flatnonzero(~whole)
    left_out = {
        "vms": len(left),
        "by_reason": dict(Counter(str(reasons[i]) for i in left)),
        "examples": [{"vm_id": ids[i], "reason": str(reasons[i])} for i in left[:EXAMPLES]],
    }
    covered = ids[whole]
    return period.loc[period["series_id"].isin(set(covered))], covered, left_out
