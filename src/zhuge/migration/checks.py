"""``check_plan``: every way a plan can break the rules, found from the plan frame alone.

Independent of the solvers on purpose: it recomputes the windows each migration holds from its
``start`` and ``predicted_total_s`` and counts them per host, cluster and window. The property
tests run it on every plan both solvers make.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from zhuge.migration.constraints import PlanConstraints, blackout_windows, windows_occupied

__all__ = ["check_plan"]

REQUIRED = ("vm_id", "start", "end", "predicted_total_s", "bandwidth_gbps")
MAX_REPORTED = 20  # violations of one kind listed before "... and N more"


def _some(kind: str, items: list[str]) -> list[str]:
    head = [f"{kind}: {item}" for item in items[:MAX_REPORTED]]
    if len(items) > MAX_REPORTED:
        head.append(f"{kind}: ... and {len(items) - MAX_REPORTED} more")
    return head


def check_plan(
    plan: pd.DataFrame,
    vms: pd.DataFrame,
    constraints: PlanConstraints,
    *,
    hosts: pd.DataFrame | None = None,
) -> list[str]:
    """Violations of ``constraints`` in ``plan``, as sentences; empty when the plan is valid."""
    missing = [c for c in REQUIRED if c not in plan.columns]
    if missing:
        return [f"plan lacks column(s) {missing}"]
    problems: list[str] = []
    duplicated = plan["vm_id"].duplicated(keep=False)
    problems += _some(
        "vm planned more than once", sorted(map(str, plan.loc[duplicated, "vm_id"].unique()))
    )
    problems += _some(
        "vm not in plan", list(map(str, vms.loc[~vms["vm_id"].isin(plan["vm_id"]), "vm_id"]))
    )
    problems += _some(
        "vm not in table", list(map(str, plan.loc[~plan["vm_id"].isin(vms["vm_id"]), "vm_id"]))
    )

    placed = plan.loc[plan["start"].notna()].merge(
        vms.drop(columns=[c for c in vms.columns if c in ("start", "end")]), on="vm_id", how="inner"
    )
    if placed.empty:
        return problems
    window = constraints.window
    start = pd.DatetimeIndex(placed["start"])
    end = pd.DatetimeIndex(placed["end"])
    duration = pd.to_timedelta(placed["predicted_total_s"].to_numpy(), unit="s")
    ids = placed["vm_id"].astype(str).to_numpy()

    bad = np.abs((end - start - duration).total_seconds()) > 1e-3
    problems += _some("end != start + predicted_total_s", list(ids[bad]))
    if constraints.deadline is not None:
        problems += _some("ends after deadline", list(ids[end > constraints.deadline]))
    if constraints.not_before is not None:
        problems += _some("starts before not_before", list(ids[start < constraints.not_before]))
    if "must_move_by" in placed.columns:
        must = pd.DatetimeIndex(pd.to_datetime(placed["must_move_by"]))
        late = np.asarray(must.notna() & (end > must))
        problems += _some("ends after must_move_by", list(ids[late]))
    off_grid = ((start - start.min()) % window) != pd.Timedelta(0)
    problems += _some("start not on the window grid", list(ids[np.asarray(off_grid)]))

    # the windows each migration holds
    spans = windows_occupied(placed["predicted_total_s"].to_numpy(), window)
    row = np.repeat(np.arange(len(placed)), spans)
    k = np.arange(len(row)) - np.repeat(np.cumsum(spans) - spans, spans)
    held = pd.DataFrame(
        {
            "vm_id": ids[row],
            "host_id": placed["host_id"].to_numpy()[row],
            "cluster_id": placed["cluster_id"].to_numpy()[row],
            "window": start[row] + window * k,
            "gbps": placed["bandwidth_gbps"].to_numpy()[row],
        }
    )
    dark = blackout_windows(pd.DatetimeIndex(held["window"]), window, constraints.blackouts)
    problems += _some("runs in a blackout", sorted(set(held.loc[dark, "vm_id"])))

    per_host = held.groupby(["host_id", "window"]).size().rename("n").reset_index()
    per_host["limit"] = constraints.max_per_host
    if hosts is not None and "max_migrations" in hosts.columns:
        limit = per_host["host_id"].map(hosts.set_index("host_id")["max_migrations"])
        per_host["limit"] = limit.fillna(constraints.max_per_host)
    over = per_host[per_host["n"] > per_host["limit"]]
    problems += _some(
        "host over its limit",
        [f"{r.host_id} at {r.window}: {r.n} > {int(r.limit)}" for r in over.itertuples()],
    )
    if constraints.max_per_cluster is not None:
        per_cluster = held.groupby(["cluster_id", "window"]).size()
        over_c = per_cluster[per_cluster > constraints.max_per_cluster]
        problems += _some(
            "cluster over its limit",
            [f"{c} at {w}: {n} > {constraints.max_per_cluster}" for (c, w), n in over_c.items()],
        )
    if constraints.bandwidth_gbps is not None:
        per_window = held.groupby("window")["gbps"].sum()
        over_b = per_window[per_window > constraints.bandwidth_gbps + 1e-6]
        problems += _some(
            "bandwidth over budget",
            [f"{w}: {g:.3f} > {constraints.bandwidth_gbps} Gbit/s" for w, g in over_b.items()],
        )
    return problems
