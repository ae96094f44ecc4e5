"""Job kinds ``plan-migration`` and ``calibrate-migration``: the migration planner on the platform.

``plan-migration`` reads a forecast and a VM table (Parquet, any fsspec URL), plans a window per
VM with ``zhuge.migration.plan_migrations``, optionally scores the plan against the load that
really happened, and writes ``plan.parquet``, ``summary.json`` (and ``evaluation.json``) to the
attempt's artifact folder, copying the plan to ``out`` when asked.

**Large fleets are planned per cluster.** Clusters share nothing but the global bandwidth
budget (host and cluster limits stay inside a cluster), so clusters are grouped into partitions
of about ``partition_vms`` VMs and planned one after another, with progress per partition.
The budget is split like this:

- if it cannot bind (the most migrations all clusters could ever run at once, times the link
  rate, fits in it), every partition plans without it: the split costs nothing;
- otherwise the budget's migration slots (``budget // link rate``) are shared in proportion to
  each partition's own concurrency limit (largest remainder), so a partition never gets slots
  it could not use; this can cost a little optimality, and the summary says it was done;
- if some partition would get no slot at all, the whole fleet is planned as one problem.

Measured on 2 CPUs (``docs/migration.md``): partitions cut the peak memory of the VMs x windows
matrices (the greedy itself is linear), so they are planned sequentially rather than fanned
out to Dask: the job already holds one worker slot and most of the time is numpy, not Python.

Inputs are checked before anything is planned or written (``prepare_plan``), and the CLI runs
the same checks before submitting, so bad input fails fast with one message naming the problem.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import math
import re
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd
from pydantic import Field, field_validator

from zhuge.artifacts import ArtifactDir
from zhuge.errors import DataError, InvalidRequest, ModelNotFound
from zhuge.jobs.context import JobContext
from zhuge.jobs.kinds import KindParams, kind
from zhuge.jobs.outputs import check_out, existing_location, json_safe, latest_saved, write_out
from zhuge.migration import (
    Calibration,
    MigrationModel,
    PlanConstraints,
    calibrate,
    check_plan,
    evaluate_plan,
    plan_migrations,
)
from zhuge.migration.constraints import parse_blackout, windows_occupied
from zhuge.migration.validation import validate_hosts, validate_vms

__all__ = [
    "CALIBRATION_KIND",
    "CalibrateMigrationParams",
    "PlanMigrationParams",
    "PreparedPlan",
    "check_out",
    "load_calibration",
    "prepare_plan",
    "read_actual",
    "read_history",
    "run_calibrate_migration",
    "run_plan_migration",
]

CALIBRATION_KIND = "migration-calibration"  # manifest kind of a saved calibration
CALIBRATION_FILE = "calibration.json"
CALIBRATION_FORMAT = "zhuge.migration-calibration/1"
PARTITION_VMS = 20_000  # VMs per partition; below this the fleet is planned as one problem

VM_REQUIRED = ("vm_id", "host_id", "cluster_id", "memory_gb")
VM_OPTIONAL = ("dirty_rate_coeff", "priority", "must_move_by")
FORECAST_REQUIRED = ("series_id", "timestamp", "yhat")
HOST_REQUIRED = ("host_id", "cluster_id")
HOST_OPTIONAL = ("max_migrations",)
HISTORY_REQUIRED = ("vm_id", "memory_gb", "observed_load", "downtime_ms", "total_s")
HISTORY_OPTIONAL = ("start",)
TYPO_CUTOFF = 0.8  # difflib ratio above which an extra column is taken for a misspelt one


# -- parameters -----------------------------------------------------------------------------


def _as_value_error(check: Any, value: Any) -> Any:
    """Run a library check inside a pydantic validator: its InvalidRequest becomes a field error."""
    try:
        check(value)
    except InvalidRequest as exc:
        raise ValueError(exc.message) from exc
    return value


class PlanMigrationParams(KindParams):
    forecast: str = Field(description="Parquet (path or URL): series_id, timestamp, yhat (CPU %).")
    vms: str = Field(
        description="Parquet: vm_id, host_id, cluster_id, memory_gb "
        "(+ optional dirty_rate_coeff, priority, must_move_by)."
    )
    vm_list: str | None = Field(None, description="Text file of vm_ids to plan, one per line.")
    hosts: str | None = Field(
        None, description="Parquet: host_id, cluster_id (+ max_migrations); unknown hosts fail."
    )
    window: str = Field("30min", description="Window length: every migration starts on one.")
    deadline: str | None = Field(
        None,
        description="Everything must end by then: a duration after the planning start ('24h') "
        "or a timestamp. Default: the end of the forecast.",
    )
    not_before: str | None = Field(None, description="Planning start (default: forecast start).")
    max_per_host: int = Field(1, ge=1, description="Concurrent migrations leaving one host.")
    max_per_cluster: int | None = Field(
        8, ge=1, description="Concurrent migrations in one cluster; null: no limit."
    )
    bandwidth_gbps: float | None = Field(
        100.0, gt=0, description="Gbit/s shared by all concurrent migrations; null: no limit."
    )
    link_gbps: float | None = Field(
        None, gt=0, description="Gbit/s one migration takes (default: calibration's, else 10)."
    )
    blackouts: list[str] = Field(
        default_factory=list, description="Daily no-migration ranges such as '08:00-10:00'."
    )
    method: Literal["auto", "greedy", "milp"] = "auto"
    calibration: str | None = Field(
        None,
        description="A calibrate-migration job id, a saved calibration folder, or its JSON file.",
    )
    actual: str | None = Field(
        None, description="Parquet of the load that really happened, to evaluate the plan."
    )
    out: str | None = Field(None, description="Also write the plan to this Parquet path/URL.")
    partition_vms: int = Field(
        PARTITION_VMS, ge=1, description="Plan clusters in partitions of about this many VMs."
    )

    @field_validator("window")
    @classmethod
    def _window(cls, value: str) -> str:
        return _as_value_error(lambda v: PlanConstraints(window=v), value)

    @field_validator("blackouts")
    @classmethod
    def _blackouts(cls, value: list[str]) -> list[str]:
        for text in value:
            _as_value_error(parse_blackout, text)
        return value

    @field_validator("deadline", "not_before")
    @classmethod
    def _when(cls, value: str | None) -> str | None:
        if value is not None:
            _as_value_error(_parse_when, value)
        return value


class CalibrateMigrationParams(KindParams):
    history: str | None = Field(
        None,
        description="CSV or Parquet of past migrations: vm_id, start, memory_gb, observed_load, "
        "downtime_ms, total_s. None: the documented defaults.",
    )
    min_migrations: int = Field(3, ge=1, description="Past migrations a VM needs for its own fit.")
    link_gbps: float = Field(10.0, gt=0, description="Link rate the history was measured at.")
    out: str | None = Field(None, description="Also write the calibration JSON here.")


def _parse_when(text: str) -> pd.Timedelta | pd.Timestamp:
    """'24h' → a duration; '2024-01-02 06:00' → a timestamp."""
    text = str(text).strip()
    if re.fullmatch(r"[+-]?\d+(\.\d+)?\s*[a-zA-Z]+(\s*\d+(\.\d+)?\s*[a-zA-Z]+)*", text):
        try:
            return pd.Timedelta(text)
        except ValueError:
            pass
    try:
        stamp = pd.Timestamp(text)
    except ValueError as exc:
        raise InvalidRequest(
            f"{text!r} is neither a duration such as '24h' nor a timestamp such as "
            "'2024-01-02 06:00'"
        ) from exc
    if stamp is pd.NaT:
        raise InvalidRequest(f"{text!r} is not a timestamp")
    return stamp


# -- reading inputs -------------------------------------------------------------------------


def _check_columns(
    names: list[str], required: tuple[str, ...], optional: tuple[str, ...], what: str
) -> None:
    """Required columns present; an extra column that looks like a misspelt known one is an
    error (a silently ignored 'dirty_rate_coef' would plan with the wrong model)."""
    missing = [c for c in required if c not in names]
    known = (*required, *optional)
    for name in names:
        if name in known:
            continue
        close = difflib.get_close_matches(str(name), known, n=1, cutoff=TYPO_CUTOFF)
        if close and close[0] not in names:
            raise DataError(f"{what} has unknown column {name!r}; did you mean {close[0]!r}?")
    if missing:
        raise DataError(f"{what} lacks column(s) {missing}; it has {list(names)}")


def read_parquet(
    url: str,
    what: str,
    *,
    required: tuple[str, ...],
    optional: tuple[str, ...] = (),
    columns: list[str] | None = None,
    one_of: tuple[str, ...] = (),
) -> pd.DataFrame:
    """A Parquet file or folder as a frame; a clear ``DataError`` for every way it can be bad.
    ``one_of``: at least one of these columns must be there too."""
    import pyarrow as pa
    import pyarrow.dataset as ds

    fs, path = existing_location(url, what)
    try:
        dataset = ds.dataset(path, filesystem=fs, format="parquet")
        names = list(dataset.schema.names)
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise DataError(f"{what} file {url} is not a readable Parquet file: {exc}") from exc
    _check_columns(names, required, (*optional, *one_of), what)
    if one_of and not set(one_of) & set(names):
        raise DataError(f"{what} lacks a column {' or '.join(map(repr, one_of))}; it has {names}")
    try:
        return dataset.to_table(columns=columns).to_pandas()
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise DataError(f"{what} file {url} is not a readable Parquet file: {exc}") from exc


def read_actual(url: str, *, light: bool = False) -> pd.DataFrame:
    """The load that really happened: ``series_id, timestamp, yhat`` (or ``value``, as
    telemetry names it). ``light`` checks the file and its columns without reading values."""
    frame = read_parquet(
        url, "actual", required=("series_id", "timestamp"), one_of=("yhat", "value"),
        columns=[] if light else None,
    )  # fmt: skip
    if "yhat" not in frame.columns and not light:
        frame = frame.rename(columns={"value": "yhat"})
    return frame


def read_history(url: str) -> pd.DataFrame:
    """Past migrations from CSV (by its name) or Parquet."""
    what = "history"
    if url.lower().endswith((".csv", ".csv.gz")):
        fs, path = existing_location(url, what)
        try:
            with fs.open(path, "rb", compression="infer") as fh:
                frame = pd.read_csv(fh)
        except (ValueError, UnicodeDecodeError, OSError) as exc:
            raise DataError(f"{what} file {url} is not a readable CSV file: {exc}") from exc
        _check_columns(list(frame.columns), HISTORY_REQUIRED, HISTORY_OPTIONAL, what)
        return frame
    return read_parquet(url, what, required=HISTORY_REQUIRED, optional=HISTORY_OPTIONAL)


def _read_vm_list(url: str) -> list[str]:
    fs, path = existing_location(url, "vm list")
    try:
        with fs.open(path, "rt") as fh:
            lines = fh.read().splitlines()
    except (UnicodeDecodeError, OSError) as exc:
        raise DataError(f"vm list file {url} is not readable text: {exc}") from exc
    ids = [line.split("#", 1)[0].strip() for line in lines]
    ids = [i for i in ids if i]
    if not ids:
        raise DataError(f"vm list file {url} names no VM")
    return ids


def _listed(values: Any, limit: int = 5) -> str:
    items = list(dict.fromkeys(map(str, values)))
    more = f" and {len(items) - limit} more" if len(items) > limit else ""
    return ", ".join(repr(v) for v in items[:limit]) + more


# -- calibration as a document --------------------------------------------------------------


def calibration_document(calibration: Calibration) -> dict[str, Any]:
    return json_safe(
        {
            "format": CALIBRATION_FORMAT,
            "source": calibration.source,
            "model": dataclasses.asdict(calibration.model),
            "metrics": calibration.metrics,
            "per_vm": calibration.per_vm.to_dict(orient="records"),
        }
    )


def _calibration_from_document(doc: Any, where: str) -> Calibration:
    if not isinstance(doc, dict) or doc.get("format") != CALIBRATION_FORMAT:
        raise DataError(f"{where} is not a zhuge migration calibration ({CALIBRATION_FORMAT})")
    try:
        model = MigrationModel(**doc["model"])
    except (KeyError, TypeError, InvalidRequest) as exc:
        raise DataError(f"{where} holds an unusable model: {exc}") from exc
    per_vm = pd.DataFrame(doc.get("per_vm") or [], columns=["vm_id", "dirty_rate_coeff"])
    return Calibration(model, per_vm, doc.get("metrics") or {}, doc.get("source", "fit"))


def load_calibration(ref: str, artifacts_root: ArtifactDir | None = None) -> Calibration:
    """A calibration from a job id (its saved artifact), a saved folder, or a JSON file."""
    ref = str(ref).strip()
    if ref.isdigit():
        if artifacts_root is None:
            raise DataError(f"calibration job {ref}: no artifact store to look in")
        folder = latest_saved(artifacts_root, ref, "calibration")
        if folder is not None:
            return load_calibration(folder.url)
        raise DataError(
            f"job {ref} saved no migration calibration (is it a calibrate-migration job "
            "that succeeded?)"
        )
    if ref.endswith(".json"):
        fs, path = existing_location(ref, "calibration")
        try:
            with fs.open(path, "rb") as fh:
                doc = json.load(fh)
        except (ValueError, OSError) as exc:
            raise DataError(f"calibration file {ref} is not valid JSON: {exc}") from exc
        return _calibration_from_document(doc, f"calibration file {ref}")
    folder = ArtifactDir(ref)
    try:
        _, files = folder.load(kind=CALIBRATION_KIND)
    except ModelNotFound as exc:
        raise DataError(f"calibration {ref}: {exc.message}") from exc
    return _calibration_from_document(json.loads(files[CALIBRATION_FILE]), f"calibration {ref}")


# -- the plan's inputs, checked ---------------------------------------------------------------


@dataclass(frozen=True)
class PreparedPlan:
    vms: pd.DataFrame  # validated, the VMs to plan, calibrated coefficients merged in
    forecast: pd.DataFrame  # rows of those VMs (only series_id, timestamp when light)
    hosts: pd.DataFrame | None
    constraints: PlanConstraints  # deadline and not_before absolute
    model: MigrationModel
    calibration: str  # "defaults", "fit" (where it came from)


def prepare_plan(
    params: PlanMigrationParams, *, artifacts_root: ArtifactDir | None = None, light: bool = False
) -> PreparedPlan:
    """Read and check every input; raise ``DataError`` naming the first problem.

    ``light`` skips reading the forecast's values (the CLI's check before submitting: it still
    reads its ids and timestamps to find VMs without a forecast and to check the deadline).
    """
    if params.out is not None:
        check_out(params.out)
    vms = read_parquet(params.vms, "vms", required=VM_REQUIRED, optional=VM_OPTIONAL)
    if params.vm_list is not None:
        wanted = _read_vm_list(params.vm_list)
        as_text = vms["vm_id"].astype(str)
        unknown = sorted(set(wanted) - set(as_text))
        if unknown:
            raise DataError(f"VM(s) {_listed(unknown)} in the vm list are not in vms")
        vms = vms.loc[as_text.isin(set(wanted))]
    vms = validate_vms(vms)
    several = vms.groupby("host_id", sort=False)["cluster_id"].nunique()
    if (several > 1).any():
        raise DataError(
            f"host(s) {_listed(several.index[several > 1])} appear in more than one cluster in vms"
        )

    hosts = None
    if params.hosts is not None:
        hosts = read_parquet(params.hosts, "hosts", required=HOST_REQUIRED, optional=HOST_OPTIONAL)
        hosts = validate_hosts(hosts, vms)

    model = MigrationModel()
    source = "defaults"
    if params.calibration is not None:
        calibration = load_calibration(params.calibration, artifacts_root)
        model, source = calibration.model, calibration.source
        vms = _merge_coefficients(vms, calibration.per_vm)
    if params.link_gbps is not None:
        try:
            model = model.evolve(bandwidth_gbps=params.link_gbps)
        except InvalidRequest as exc:
            raise DataError(exc.message) from exc

    columns = ["series_id", "timestamp"] if light else None
    forecast = read_parquet(
        params.forecast, "forecast", required=FORECAST_REQUIRED, columns=columns
    )
    ids = forecast["series_id"].astype(str)
    wanted_ids = vms["vm_id"].astype(str)
    missing = ~wanted_ids.isin(set(ids.unique()))
    if missing.any():
        raise DataError(f"VM(s) {_listed(wanted_ids[missing])} have no rows in the forecast")
    forecast = forecast.loc[ids.isin(set(wanted_ids)).to_numpy()]
    if not pd.api.types.is_datetime64_any_dtype(forecast["timestamp"]):
        try:
            forecast = forecast.assign(timestamp=pd.to_datetime(forecast["timestamp"]))
        except (ValueError, TypeError) as exc:
            raise DataError(f"forecast.timestamp must be timestamps: {exc}") from exc
    # relative times count from "now": where the freshest forecasts start (a VM whose
    # telemetry stopped early has an older forecast; the planner reports it, see build_problem)
    now = forecast.groupby("series_id", sort=False)["timestamp"].min().max()
    constraints = _constraints(params, now, forecast["timestamp"].max())
    return PreparedPlan(vms, forecast, hosts, constraints, model, source)


def _merge_coefficients(vms: pd.DataFrame, per_vm: pd.DataFrame) -> pd.DataFrame:
    """Fill each VM's dirty_rate_coeff from the calibration where the VM table gives none."""
    if per_vm.empty:
        return vms
    fitted = per_vm.assign(vm_id=per_vm["vm_id"].astype(str)).set_index("vm_id")
    coeff = fitted["dirty_rate_coeff"].astype(float).reindex(vms["vm_id"].astype(str))
    own = vms["dirty_rate_coeff"].to_numpy()
    return vms.assign(dirty_rate_coeff=np.where(np.isnan(own), coeff.to_numpy(), own))


def _constraints(
    params: PlanMigrationParams, first: pd.Timestamp, last: pd.Timestamp
) -> PlanConstraints:
    origin = first
    not_before = None
    if params.not_before is not None:
        not_before = _parse_when(params.not_before)
        if isinstance(not_before, pd.Timedelta):
            not_before = first + not_before
        origin = max(first, not_before)
    deadline = None
    if params.deadline is not None:
        when = _parse_when(params.deadline)
        deadline = origin + when if isinstance(when, pd.Timedelta) else when
    try:
        constraints = PlanConstraints(
            window=params.window,
            max_per_host=params.max_per_host,
            max_per_cluster=params.max_per_cluster,
            bandwidth_gbps=params.bandwidth_gbps,
            blackouts=tuple(params.blackouts),
            deadline=deadline,
            not_before=not_before,
        )
        if deadline is not None and (deadline.tz is None) != (origin.tz is None):
            raise InvalidRequest(
                f"deadline {deadline} and the forecast timestamps must both have a time zone "
                "or both have none"
            )
    except InvalidRequest as exc:
        raise DataError(exc.message) from exc
    window = constraints.window
    if deadline is not None and deadline - origin < window:
        raise DataError(
            f"deadline {deadline} is less than one window ({window}) after the planning start "
            f"{origin}: no migration can be planned"
        )
    return constraints


# -- planning, whole or per cluster ---------------------------------------------------------


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


def _plan_partitions(
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


# -- the kinds --------------------------------------------------------------------------------


@kind(
    "plan-migration",
    params=PlanMigrationParams,
    description="Plan live migrations into the quietest windows of a load forecast.",
)
def run_plan_migration(params: PlanMigrationParams, ctx: JobContext) -> dict[str, Any]:
    ctx.progress(0, 3, "reading inputs")
    prepared = prepare_plan(params, artifacts_root=ctx.artifacts_root)
    ctx.log(
        f"planning {len(prepared.vms)} VMs, window {prepared.constraints.window}, "
        f"calibration: {prepared.calibration}"
    )
    actual = read_actual(params.actual) if params.actual is not None else None

    plan, summary = _plan_partitions(prepared, params, ctx)
    summary["calibration"] = prepared.calibration
    summary["violations"] = check_plan(
        plan, prepared.vms, prepared.constraints, hosts=prepared.hosts
    )
    if summary["violations"]:
        ctx.log(f"plan check found {len(summary['violations'])} violation(s)")

    evaluation = None
    if actual is not None:
        ctx.progress(2, 3, "evaluating against the actual load")
        evaluation = evaluate_plan(
            plan, actual, prepared.vms, prepared.constraints, model=prepared.model,
            hosts=prepared.hosts,
        ).to_dict()  # fmt: skip

    ctx.progress(3, 3, "writing the plan")
    summary = json_safe(summary)
    artifacts = {
        "plan": ctx.artifacts.write_parquet("plan.parquet", plan),
        "summary": ctx.artifacts.write_json("summary.json", summary),
    }
    if evaluation is not None:
        evaluation = json_safe(evaluation)
        artifacts["evaluation"] = ctx.artifacts.write_json("evaluation.json", evaluation)
    out = None
    if params.out is not None:
        out = write_out(params.out, ctx.artifacts.read_bytes("plan.parquet"))
    return {"summary": summary, "evaluation": evaluation, "artifacts": artifacts, "out": out}


@kind(
    "calibrate-migration",
    params=CalibrateMigrationParams,
    description="Fit the migration downtime model to past migrations.",
)
def run_calibrate_migration(params: CalibrateMigrationParams, ctx: JobContext) -> dict[str, Any]:
    ctx.progress(0, 2, "reading history")
    if params.out is not None:
        check_out(params.out)
    history = read_history(params.history) if params.history is not None else None
    defaults = MigrationModel(bandwidth_gbps=params.link_gbps)
    ctx.progress(1, 2, f"fitting {0 if history is None else len(history)} migrations")
    calibration = calibrate(history, defaults, min_migrations=params.min_migrations)
    document = calibration_document(calibration)
    data = json.dumps(document, indent=2, sort_keys=True).encode()
    folder = ctx.artifacts.child("calibration")
    folder.save(
        {CALIBRATION_FILE: data},
        kind=CALIBRATION_KIND,
        libraries=["numpy", "scipy", "pandas"],
        metadata={"source": calibration.source, "history": params.history},
    )
    out = write_out(params.out, data) if params.out is not None else None
    ctx.progress(2, 2, "saved")
    return {
        "source": calibration.source,
        "model": document["model"],
        "defaults": dataclasses.asdict(defaults),
        "metrics": document["metrics"],
        "vms_with_own_coeff": len(calibration.per_vm),
        "artifacts": {"calibration": folder.url},
        "out": out,
    }
