"""Every input of a plan read and checked before anything is planned (``prepare_plan``)."""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import pandas as pd

from zhuge.artifacts import ArtifactDir
from zhuge.errors import DataError, InvalidRequest
from zhuge.jobs.migration.calibration import load_calibration
from zhuge.jobs.migration.inputs import (
    FORECAST_REQUIRED,
    HOST_OPTIONAL,
    HOST_REQUIRED,
    VM_OPTIONAL,
    VM_REQUIRED,
    listed,
    read_parquet,
    read_vm_list,
)
from zhuge.jobs.migration.params import PlanMigrationParams, parse_when
from zhuge.migration import (
    MigrationModel,
    PlanConstraints,
)
from zhuge.migration.validation import freshest_start, validate_hosts, validate_vms


@dataclass(frozen=True)
class PreparedPlan:
    vms: pd.DataFrame  # validated, the VMs to plan, calibrated coefficients merged in
    forecast: pd.DataFrame  # rows of those VMs (only series_id, timestamp when light)
    hosts: pd.DataFrame | None
    constraints: PlanConstraints  # deadline and not_before absolute
    model: MigrationModel
    calibration: str  # "defaults", "fit" (where it came from)
    # VMs of the table with no row in the forecast (``missing_forecast="unplaced"``): planned
    # as unplaced, with the reason NO_FORECAST
    unforecast: tuple[str, ...] = ()


def prepare_plan(
    params: PlanMigrationParams, *, artifacts_root: ArtifactDir | None = None, light: bool = False
) -> PreparedPlan:
    """Read and check every input; raise ``DataError`` naming the first problem.

    ``light`` skips reading the forecast's values (the CLI's check before submitting: it still
    reads its ids and timestamps to find VMs without a forecast and to check the deadline).
    """
    vms = read_parquet(params.vms, "vms", required=VM_REQUIRED, optional=VM_OPTIONAL)
    if params.vm_list is not None:
        wanted = read_vm_list(params.vm_list)
        as_text = vms["vm_id"].astype(str)
        unknown = sorted(set(wanted) - set(as_text))
        if unknown:
            raise DataError(f"VM(s) {listed(unknown)} in the vm list are not in vms")
        vms = vms.loc[as_text.isin(set(wanted))]
    vms = validate_vms(vms)
    several = vms.groupby("host_id", sort=False)["cluster_id"].nunique()
    if (several > 1).any():
        raise DataError(
            f"host(s) {listed(several.index[several > 1])} appear in more than one cluster in vms"
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
    if params.risk is not None:
        forecast = at_risk(forecast, params.risk, names=forecast_columns(params.forecast))
    ids = forecast["series_id"].astype(str)
    wanted_ids = vms["vm_id"].astype(str)
    missing = ~wanted_ids.isin(set(ids.unique()))
    unforecast: tuple[str, ...] = ()
    if missing.any() and params.missing_forecast == "error":
        raise DataError(f"VM(s) {listed(wanted_ids[missing])} have no rows in the forecast")
    if missing.all():
        raise DataError("no VM of the VM table has a row in the forecast: nothing to plan")
    if missing.any():
        unforecast = tuple(wanted_ids[missing])
        vms = vms.loc[~missing.to_numpy()].reset_index(drop=True)
    forecast = forecast.loc[ids.isin(set(wanted_ids)).to_numpy()]
    if not pd.api.types.is_datetime64_any_dtype(forecast["timestamp"]):
        try:
            forecast = forecast.assign(timestamp=pd.to_datetime(forecast["timestamp"]))
        except (ValueError, TypeError) as exc:
            raise DataError(f"forecast.timestamp must be timestamps: {exc}") from exc
    # relative times (--deadline 24h) count from where the planner starts
    constraints = _constraints(params, freshest_start(forecast), forecast["timestamp"].max())
    return PreparedPlan(vms, forecast, hosts, constraints, model, source, unforecast)


QUANTILE_COLUMN = re.compile(r"yhat_q(\d+(?:\.\d+)?)$")


def at_risk(forecast: pd.DataFrame, risk: float, *, names: list[str]) -> pd.DataFrame:
    """The forecast with ``yhat`` replaced by its ``risk`` quantile, so the plan minimises that
    quantile of downtime (downtime grows with load, so a load quantile is a downtime quantile).
    Interpolated linearly between the nearest quantile columns (``yhat`` counting as the
    median); ``DataError`` when the forecast has none on the far side of ``risk``. ``names``:
    the forecast file's columns (``forecast`` may hold only ids and timestamps: a light check)."""
    levels = {0.5: "yhat"}
    light = not set(names) <= set(forecast.columns)
    for name in names:
        match = QUANTILE_COLUMN.match(str(name))
        if match:
            levels[float(match[1]) / 100] = name
    if risk in levels:
        column = levels[risk]
        return forecast if light else forecast.assign(yhat=forecast[column].to_numpy())
    below = [q for q in levels if q < risk]
    above = [q for q in levels if q > risk]
    if not below or not above:
        raise DataError(
            f"--risk {risk:g} needs the forecast's quantile columns around it (e.g. "
            f"yhat_q{risk * 100:g}); it has {sorted(n for n in names if str(n).startswith('yhat'))}"
            "; forecast with --quantiles including it"
        )
    if light:
        return forecast
    lo, hi = max(below), min(above)
    share = (risk - lo) / (hi - lo)
    low = forecast[levels[lo]].to_numpy(dtype=float)
    high = forecast[levels[hi]].to_numpy(dtype=float)
    return forecast.assign(yhat=low + share * (high - low))


def forecast_columns(url: str) -> list[str]:
    """The forecast file's column names, from its schema (no values read)."""
    import pyarrow.dataset as ds

    from zhuge.jobs.outputs import existing_location

    fs, path = existing_location(url, "forecast")
    return list(ds.dataset(path, filesystem=fs, format="parquet").schema.names)


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
        not_before = parse_when(params.not_before)
        if isinstance(not_before, pd.Timedelta):
            not_before = first + not_before
        origin = max(first, not_before)
    deadline = None
    if params.deadline is not None:
        when = parse_when(params.deadline)
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
