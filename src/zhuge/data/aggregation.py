"""Aggregate fleet telemetry in time (5 min → 1 h; mean, max, p95) and up the placement tree.

Levels: ``vm`` (the series as they are), ``host`` and ``cluster``. A host's load is the
**vCPU-weighted mean of its VMs' CPU %** at each timestamp::

    host_load(t) = Σ vcpus_i · cpu_i(t) / Σ vcpus_i      (over VMs reporting at t)

i.e. the share of the vCPUs placed on the host that are busy. A plain mean would let a
1-vCPU VM at 100 % weigh as much as a 32-vCPU VM at 5 %; a plain sum of percentages has no
unit. Without a ``vcpus`` column every VM weighs 1. ``how="sum"`` gives busy vCPUs instead,
``Σ vcpus_i · cpu_i(t) / 100`` (cores of demand, what capacity checks compare with a
host's cores). VMs that did not report at ``t`` are left out of both sums, so a gap in one VM
does not read as the host going idle; ``n_series`` says how many VMs reported.

Roll-up happens on the native grid *before* time aggregation: a host's hourly p95 is the p95
of the host's load, not a sum of its VMs' p95s (peaks of different VMs rarely coincide).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
import pandas as pd

from zhuge.errors import DataError

__all__ = [
    "STATS",
    "aggregate",
    "finish_roll_up",
    "partial_roll_up",
    "resample_series",
    "roll_up",
]

Level = Literal["vm", "host", "cluster"]
STATS = ("mean", "max", "min", "p50", "p95", "p99")


def _check(frame: pd.DataFrame, columns: Sequence[str], what: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise DataError(f"{what} needs column(s) {missing}; columns present: {list(frame.columns)}")


def resample_series(
    frame: pd.DataFrame, freq: str, stat: str | Sequence[str] = "mean"
) -> pd.DataFrame:
    """Aggregate each series onto ``freq`` buckets (any fixed pandas offset).

    Buckets are labelled by their start (``[t, t + freq)``), as pandas' ``resample`` does.
    NaN values (long gaps) are ignored; a bucket with no value is NaN, not absent, so every
    series stays on a regular grid. One ``stat`` gives a ``value`` column; several give one
    column per statistic (``mean``, ``max``, ``p95``, ...).
    """
    _check(frame, ("series_id", "timestamp", "value"), "resample_series")
    stats = [stat] if isinstance(stat, str) else list(stat)
    unknown = [s for s in stats if s not in STATS]
    if unknown or not stats:
        raise DataError(f"unknown statistic(s) {unknown}; choose from {list(STATS)}")
    try:
        step = pd.Timedelta(pd.tseries.frequencies.to_offset(freq)).value
    except (ValueError, TypeError) as exc:
        raise DataError(f"freq {freq!r} is not a fixed-length pandas offset") from exc
    ts = frame["timestamp"].to_numpy("datetime64[ns]").view("int64")
    bucket = (ts // step * step).view("datetime64[ns]")
    keys = pd.DataFrame({"series_id": frame["series_id"].to_numpy(), "timestamp": bucket})
    grouped = frame["value"].groupby([keys["series_id"], keys["timestamp"]], sort=True)
    columns = {}
    for s in stats:
        if s in ("mean", "max", "min"):
            columns[s] = getattr(grouped, s)()
        else:
            columns[s] = grouped.quantile(int(s[1:]) / 100)
    out = pd.DataFrame(columns)
    out.index.names = ["series_id", "timestamp"]
    out = out.reset_index()
    if isinstance(stat, str):
        out = out.rename(columns={stat: "value"})
    return out


def roll_up(
    frame: pd.DataFrame,
    level: Level,
    *,
    vms: pd.DataFrame | None = None,
    how: Literal["mean", "sum"] = "mean",
) -> pd.DataFrame:
    """VM series → one series per host or cluster (see the module docstring for the rule).

    ``host_id``/``cluster_id`` and ``vcpus`` come from ``frame`` or, when absent there, from
    ``vms`` (columns ``vm_id`` and those), joined on ``series_id == vm_id``. Returns
    ``series_id`` (the host or cluster id), ``timestamp``, ``value``, ``n_series``.
    """
    if level not in ("vm", "host", "cluster"):
        raise DataError(f"level must be vm, host or cluster, not {level!r}")
    _check(frame, ("series_id", "timestamp", "value"), "roll_up")
    if level == "vm":
        if how not in ("mean", "sum"):
            raise DataError(f"how must be mean or sum, not {how!r}")
        return frame[["series_id", "timestamp", "value"]].assign(n_series=1)
    return finish_roll_up(partial_roll_up(frame, level, vms=vms), how=how)


def partial_roll_up(
    frame: pd.DataFrame, level: Level, *, vms: pd.DataFrame | None = None
) -> pd.DataFrame:
    """The sums behind :func:`roll_up` for one part of a fleet: ``series_id`` (host or cluster),
    ``timestamp``, ``load`` (Σ vcpus·cpu), ``weight`` (Σ vcpus), ``n_series``.

    Sums add up, so a fleet read in chunks of VMs (a host's VMs may fall in several chunks)
    is rolled up by concatenating the chunks' partials and :func:`finish_roll_up`.
    """
    if level not in ("host", "cluster"):
        raise DataError(f"partial roll-up is for host or cluster level, not {level!r}")
    _check(frame, ("series_id", "timestamp", "value"), "roll_up")
    placement = _placement(frame, f"{level}_id", vms)
    weight = placement["vcpus"].to_numpy(np.float64) if "vcpus" in placement else None
    if weight is not None and (np.isnan(weight).any() or (weight <= 0).any()):
        raise DataError("column 'vcpus' must be positive for every VM")
    value = frame["value"].to_numpy(np.float64)
    reported = ~np.isnan(value)
    w = np.ones(len(frame)) if weight is None else weight
    work = pd.DataFrame(
        {
            "series_id": placement[f"{level}_id"].to_numpy(),
            "timestamp": frame["timestamp"].to_numpy(),
            "load": np.where(reported, w * value, 0.0),
            "weight": np.where(reported, w, 0.0),
            "n_series": reported.astype(np.int64),
        }
    )
    return work.groupby(["series_id", "timestamp"], sort=True).sum().reset_index()


def finish_roll_up(partials: pd.DataFrame, *, how: Literal["mean", "sum"] = "mean") -> pd.DataFrame:
    """Combine :func:`partial_roll_up` sums (of one or many chunks) into host/cluster series."""
    if how not in ("mean", "sum"):
        raise DataError(f"how must be mean or sum, not {how!r}")
    sums = partials.groupby(["series_id", "timestamp"], sort=True)[
        ["load", "weight", "n_series"]
    ].sum()
    if how == "mean":
        result = sums["load"] / sums["weight"].where(sums["weight"] > 0)
    else:
        # busy vCPUs; without vcpus this is the plain sum of percentages / 100
        result = (sums["load"] / 100.0).where(sums["n_series"] > 0)
    return pd.DataFrame({"value": result, "n_series": sums["n_series"]}).reset_index()


def _placement(frame: pd.DataFrame, group_col: str, vms: pd.DataFrame | None) -> pd.DataFrame:
    """Per-row ``group_col`` (and ``vcpus`` where known), from ``frame`` or ``vms``."""
    wanted = [group_col, "vcpus"]
    have = {c: frame[c] for c in wanted if c in frame.columns}
    if len(have) < len(wanted) and vms is not None:
        _check(vms, ("vm_id",), "the VM table")
        if vms["vm_id"].duplicated().any():
            example = vms.loc[vms["vm_id"].duplicated(), "vm_id"].iloc[0]
            raise DataError(f"the VM table lists vm_id {example!r} more than once")
        table = vms.set_index("vm_id")
        for column in wanted:
            if column in have or column not in table.columns:
                continue
            mapped = frame["series_id"].map(table[column])
            unknown = mapped.isna() & frame["series_id"].notna()
            if unknown.any():
                examples = pd.unique(frame.loc[unknown, "series_id"])[:5].tolist()
                raise DataError(
                    f"{int(pd.Series(frame.loc[unknown, 'series_id']).nunique())} series have "
                    f"no {column} in the VM table, e.g. {examples}"
                )
            have[column] = mapped
    if group_col not in have:
        raise DataError(
            f"rolling up needs {group_col!r}: give it as a column of the telemetry or in the "
            "VM table (vms=...)"
        )
    if have[group_col].isna().any():
        raise DataError(
            f"column {group_col!r} has {int(have[group_col].isna().sum())} missing values"
        )
    return pd.DataFrame({k: v.to_numpy() for k, v in have.items()})


def aggregate(
    frame: pd.DataFrame,
    *,
    freq: str | None = None,
    stat: str | Sequence[str] = "mean",
    level: Level = "vm",
    vms: pd.DataFrame | None = None,
    how: Literal["mean", "sum"] = "mean",
) -> pd.DataFrame:
    """Roll up to ``level``, then aggregate in time to ``freq`` with ``stat``.

    ``aggregate(clean.frame, freq="1h", stat="p95", level="host", vms=vms)`` gives each host's
    hourly p95 of vCPU-weighted CPU %. ``freq=None`` keeps the native grid.
    """
    rolled = roll_up(frame, level, vms=vms, how=how)
    if freq is None:
        if not isinstance(stat, str) or stat != "mean":
            raise DataError("a statistic other than mean needs a freq to aggregate over")
        return rolled
    return resample_series(rolled, freq, stat)
