"""Planning a fleet whole or per partition of whole clusters, sharing the bandwidth budget
(the package docstring has the rules)."""

from __future__ import annotations

import math
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from zhuge.jobs.context import JobContext
from zhuge.jobs.migration.params import PlanMigrationParams
from zhuge.jobs.migration.prepare import PreparedPlan
from zhuge.migration import (
    MigrationModel,
    PlanConstraints,
    plan_migrations,
)
from zhuge.migration.constraints import windows_occupied


@dataclass(frozen=True)
class Partition:
    clusters: list[Any]
    vms: int
    bandwidth_gbps: float | None


def split_by_cluster(
    vms: pd.DataFrame,
    constraints: PlanConstraints,
    model: MigrationModel,
    hosts: pd.DataFrame | None,
    partition_vms: int,
) -> tuple[list[Partition], str]:
    """Partitions of whole clusters, and how the bandwidth budget was shared among them."""
    sizes = vms.groupby("cluster_id", sort=True).size()
    if len(vms) <= partition_vms or len(sizes) == 1:
        return [Partition(list(sizes.index), len(vms), constraints.bandwidth_gbps)], "one plan"
    groups: list[list[Any]] = [[]]
    count = 0
    for cluster, n in sizes.items():
        if count >= partition_vms:
            groups.append([])
            count = 0
        groups[-1].append(cluster)
        count += int(n)
    capacity = _concurrency(vms, constraints, hosts)
    need = np.array([capacity.loc[g].sum() for g in groups], dtype=np.int64)
    counts = [int(sizes.loc[g].sum()) for g in groups]
    link = model.bandwidth_gbps
    budget = constraints.bandwidth_gbps
    if budget is None or need.sum() * link <= budget + 1e-9:
        return [Partition(g, n, None) for g, n in zip(groups, counts, strict=True)], "not binding"
    slots = math.floor(budget / link + 1e-9)
    share = slots * need / need.sum()
    given = np.floor(share).astype(np.int64)
    for i in np.argsort(-(share - given), kind="stable")[: slots - int(given.sum())]:
        given[i] += 1
    if (given == 0).any():
        return [Partition(list(sizes.index), len(vms), budget)], "one plan (bandwidth too tight)"
    parts = [
        Partition(g, n, float(s * link)) for g, n, s in zip(groups, counts, given, strict=True)
    ]
    return parts, "proportional to each partition's concurrency limit"


def _concurrency(
    vms: pd.DataFrame, constraints: PlanConstraints, hosts: pd.DataFrame | None
) -> pd.Series:
    """Per cluster: the most migrations it could ever run at once."""
    per_host = vms.groupby(["cluster_id", "host_id"], sort=False).size().rename("vms").reset_index()
    limit = pd.Series(constraints.max_per_host, index=per_host.index, dtype=np.int64)
    if hosts is not None and "max_migrations" in hosts.columns:
        override = per_host["host_id"].map(hosts.set_index("host_id")["max_migrations"])
        limit = override.fillna(constraints.max_per_host).astype(np.int64)
    per_host["cap"] = np.minimum(per_host["vms"], limit)
    cap = per_host.groupby("cluster_id", sort=True)["cap"].sum()
    if constraints.max_per_cluster is not None:
        cap = cap.clip(upper=constraints.max_per_cluster)
    return cap


def plan_partitions(
    prepared: PreparedPlan, params: PlanMigrationParams, ctx: JobContext
) -> tuple[pd.DataFrame, dict[str, Any]]:
    vms, forecast = prepared.vms, prepared.forecast
    parts, split = split_by_cluster(
        vms, prepared.constraints, prepared.model, prepared.hosts, params.partition_vms
    )
    if len(parts) == 1:
        ctx.progress(1, 3, f"planning {len(vms)} VMs")
        plan, summary = plan_migrations(
            forecast, vms, prepared.constraints, model=prepared.model, hosts=prepared.hosts,
            method=params.method,
        )  # fmt: skip
        summary["partitions"] = {"count": 1, "bandwidth_split": split}
        return plan, summary

    ctx.log(f"{len(vms)} VMs in {len(parts)} partitions of whole clusters; bandwidth: {split}")
    part_of_cluster = {c: i for i, p in enumerate(parts) for c in p.clusters}
    vm_part = vms["cluster_id"].map(part_of_cluster).to_numpy()
    row_part = vm_part[
        pd.Index(vms["vm_id"].astype(str)).get_indexer(forecast["series_id"].astype(str))
    ]
    plans, summaries = [], []
    started = time.perf_counter()
    for i, part in enumerate(parts):
        ctx.progress(i, len(parts), f"partition {i + 1}/{len(parts)}: {part.vms} VMs")
        constraints = prepared.constraints.evolve(bandwidth_gbps=part.bandwidth_gbps)
        part_hosts = None
        if prepared.hosts is not None:
            part_hosts = prepared.hosts.loc[prepared.hosts["cluster_id"].isin(part.clusters)]
        plan, summary = plan_migrations(
            forecast.loc[row_part == i], vms.loc[vm_part == i], constraints,
            model=prepared.model, hosts=part_hosts, method=params.method,
        )  # fmt: skip
        plans.append(plan)
        summaries.append(summary)
    plan = pd.concat(plans, ignore_index=True)
    plan = plan.set_index(plan["vm_id"].astype(str)).loc[vms["vm_id"].astype(str)]
    plan = plan.reset_index(drop=True)
    summary = _merge_summaries(plan, summaries, prepared.constraints)
    summary["seconds"] = round(time.perf_counter() - started, 3)
    summary["partitions"] = {
        "count": len(parts),
        "vms": [p.vms for p in parts],
        "bandwidth_split": split,
        "bandwidth_gbps": [p.bandwidth_gbps for p in parts],
    }
    return plan, summary


def _merge_summaries(
    plan: pd.DataFrame, summaries: list[dict[str, Any]], constraints: PlanConstraints
) -> dict[str, Any]:
    first = summaries[0]
    placed = plan["start"].notna()
    reasons: Counter[str] = Counter()
    for s in summaries:
        reasons.update(s["unplaced_by_reason"])
    window = constraints.window
    rows = plan.loc[placed]
    bandwidth = np.zeros(0)
    if len(rows):
        origin = pd.Timestamp(first["first_window"])
        start = ((pd.DatetimeIndex(rows["start"]) - origin) // window).to_numpy(dtype=np.int64)
        spans = windows_occupied(rows["predicted_total_s"].to_numpy(), window)
        bandwidth = np.zeros(int((start + spans).max()))
        for k in range(int(spans.max())):
            held = spans > k
            np.add.at(bandwidth, start[held] + k, rows["bandwidth_gbps"].to_numpy()[held])
    return {
        "vms": len(plan),
        "placed": int(placed.sum()),
        "unplaced": int((~placed).sum()),
        "windows": first["windows"],
        "window": first["window"],
        "first_window": first["first_window"],
        "deadline": first["deadline"],
        "total_predicted_downtime_ms": float(rows["predicted_downtime_ms"].sum()),
        "mean_predicted_downtime_ms": float(rows["predicted_downtime_ms"].mean())
        if len(rows)
        else None,
        "mean_predicted_load": float(rows["predicted_load"].mean()) if len(rows) else None,
        "max_predicted_total_s": float(rows["predicted_total_s"].max()) if len(rows) else None,
        "non_convergent": sum(s["non_convergent"] for s in summaries),
        "peak_concurrent_per_host": max(s["peak_concurrent_per_host"] for s in summaries),
        "peak_concurrent_per_cluster": max(s["peak_concurrent_per_cluster"] for s in summaries),
        "peak_bandwidth_gbps": float(bandwidth.max(initial=0.0)),
        "unplaced_by_reason": dict(reasons),
        "unplaced_examples": [e for s in summaries for e in s["unplaced_examples"]][:20],
        "method": "+".join(sorted({s["method"] for s in summaries})),
    }
