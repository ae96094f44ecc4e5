"""Explaining segments: per-cluster profiles, and feature templates (``rfm``, ``load-profile``)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from zhuge.errors import DataError

__all__ = ["TEMPLATES", "load_profile_features", "profile_clusters", "rfm_features"]


def _need(frame: pd.DataFrame, columns: list[str]) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise DataError(f"unknown column name(s) {missing}; the table has {list(frame.columns)}")


def profile_clusters(frame: pd.DataFrame, labels: np.ndarray) -> pd.DataFrame:
    """One row per (cluster, numeric feature): size, share, mean, median, overall mean and the
    standardised difference ``(mean - overall mean) / overall sd`` that says what sets the
    cluster apart. ``kind`` says what a label is: ``"cluster"``, or ``"noise"`` for the rows
    labelled ``-1`` (no cluster took them; their profile describes what they have in common
    only by being left out). Sorted with the clusters first (by label), noise last, then by
    that difference's magnitude."""
    if len(frame) != len(labels):
        raise DataError(f"{len(labels)} labels for {len(frame)} rows")
    numeric = frame.select_dtypes("number")
    if numeric.shape[1] == 0:
        raise DataError("no numeric columns to profile")
    overall_mean, overall_sd = numeric.mean(), numeric.std(ddof=0).replace(0, np.nan)
    rows = []
    for label in sorted(np.unique(labels)):
        part = numeric[labels == label]
        for col in numeric.columns:
            mean = part[col].mean()
            rows.append(
                {
                    "cluster": int(label),
                    "kind": "noise" if label < 0 else "cluster",
                    "size": len(part),
                    "share": len(part) / len(frame),
                    "feature": col,
                    "mean": mean,
                    "median": part[col].median(),
                    "overall_mean": overall_mean[col],
                    "difference_sd": (mean - overall_mean[col]) / overall_sd[col],
                }
            )
    out = pd.DataFrame(rows)
    out["_order"] = -out["difference_sd"].abs().fillna(0)
    out["_noise"] = out["cluster"] < 0
    return (
        out.sort_values(["_noise", "cluster", "_order"])
        .drop(columns=["_order", "_noise"])
        .reset_index(drop=True)
    )


def rfm_features(
    transactions: pd.DataFrame,
    *,
    customer: str = "customer_id",
    timestamp: str = "timestamp",
    amount: str = "amount",
    as_of: pd.Timestamp | None = None,
) -> pd.DataFrame:
    """Recency (days since last purchase), frequency (purchases), monetary (total amount) per customer."""
    _need(transactions, [customer, timestamp, amount])
    times = pd.to_datetime(transactions[timestamp])
    as_of = pd.Timestamp(as_of) if as_of is not None else times.max()
    grouped = transactions.assign(_t=times).groupby(customer)
    return pd.DataFrame(
        {
            "recency_days": (as_of - grouped["_t"].max()).dt.total_seconds() / 86_400,
            "frequency": grouped.size(),
            "monetary": grouped[amount].sum(),
        }
    )


def load_profile_features(
    fleet: pd.DataFrame,
    *,
    series: str = "series_id",
    timestamp: str = "timestamp",
    value: str = "value",
) -> pd.DataFrame:
    """Average 24-hour load shape per VM (columns ``h00``..``h23``), each divided by the VM's
    mean load so VMs group by *shape*, not level. Flat-zero VMs get all zeros."""
    _need(fleet, [series, timestamp, value])
    hours = pd.to_datetime(fleet[timestamp]).dt.hour
    shape = fleet.assign(_h=hours).pivot_table(
        index=series, columns="_h", values=value, aggfunc="mean", observed=True
    )
    shape = shape.reindex(columns=range(24)).interpolate(axis=1, limit_direction="both")
    level = shape.mean(axis=1).replace(0, np.nan)
    shape = shape.div(level, axis=0).fillna(0.0)
    shape.columns = [f"h{h:02d}" for h in range(24)]
    return shape


TEMPLATES = {"rfm": rfm_features, "load-profile": load_profile_features}
