"""Input checks: bad input fails with a message naming the rows, before any planning starts.

Everything here raises ``DataError`` (unusable frames) or ``InvalidRequest`` (parameters that
cannot be satisfied); nothing is computed or returned half-way.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from zhuge.errors import DataError

__all__ = ["ForecastGrid", "forecast_matrix", "freshest_start", "validate_hosts", "validate_vms"]

VM_COLUMNS = ("vm_id", "host_id", "cluster_id", "memory_gb")
FORECAST_COLUMNS = ("series_id", "timestamp", "yhat")
HOST_COLUMNS = ("host_id", "cluster_id")
MAX_LISTED = 5  # ids quoted in an error message


def _listed(values: object) -> str:
    items = list(pd.unique(pd.Series(values)))
    head = ", ".join(repr(v) for v in items[:MAX_LISTED])
    more = f" and {len(items) - MAX_LISTED} more" if len(items) > MAX_LISTED else ""
    return f"{head}{more}"


def _require_columns(frame: pd.DataFrame, columns: tuple[str, ...], what: str) -> None:
    if not isinstance(frame, pd.DataFrame):
        raise DataError(f"{what} must be a pandas DataFrame, got {type(frame).__name__}")
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise DataError(f"{what} lacks column(s) {missing}; it has {list(frame.columns)}")


def _numeric(frame: pd.DataFrame, column: str, what: str) -> NDArray[np.float64]:
    try:
        return pd.to_numeric(frame[column], errors="raise").to_numpy(
            dtype=np.float64, na_value=np.nan
        )
    except (ValueError, TypeError) as exc:
        raise DataError(f"{what}.{column} must be numeric: {exc}") from exc


def validate_vms(vms: pd.DataFrame) -> pd.DataFrame:
    """A clean copy of the VM table with the optional columns filled in, or ``DataError``."""
    _require_columns(vms, VM_COLUMNS, "vms")
    if len(vms) == 0:
        raise DataError("vms is empty: nothing to plan")
    out = vms.reset_index(drop=True).copy()
    if out["vm_id"].isna().any():
        raise DataError(f"vms has {int(out['vm_id'].isna().sum())} row(s) without a vm_id")
    duplicated = out["vm_id"].duplicated(keep=False)
    if duplicated.any():
        raise DataError(f"vms has duplicate vm_id(s): {_listed(out.loc[duplicated, 'vm_id'])}")
    for column in ("host_id", "cluster_id"):
        missing = out[column].isna()
        if missing.any():
            raise DataError(f"vms has no {column} for VM(s) {_listed(out.loc[missing, 'vm_id'])}")
    memory = _numeric(out, "memory_gb", "vms")
    bad = ~(np.isfinite(memory) & (memory > 0))
    if bad.any():
        raise DataError(
            f"vms.memory_gb must be a positive number; it is not for VM(s) {_listed(out.loc[bad, 'vm_id'])}"
        )
    out["memory_gb"] = memory
    if "dirty_rate_coeff" in out.columns:
        coeff = _numeric(out, "dirty_rate_coeff", "vms")
        bad = (coeff < 0) | np.isinf(coeff)
        if bad.any():
            raise DataError(
                f"vms.dirty_rate_coeff must be >= 0 (NaN: model default); it is not for VM(s) "
                f"{_listed(out.loc[bad, 'vm_id'])}"
            )
        out["dirty_rate_coeff"] = coeff
    else:
        out["dirty_rate_coeff"] = np.nan
    if "priority" in out.columns:
        priority = _numeric(out, "priority", "vms")
        bad = ~np.isfinite(priority)
        if bad.any():
            raise DataError(f"vms.priority is missing for VM(s) {_listed(out.loc[bad, 'vm_id'])}")
        out["priority"] = priority
    else:
        out["priority"] = 0.0
    if "must_move_by" in out.columns:
        try:
            out["must_move_by"] = pd.to_datetime(out["must_move_by"])
        except (ValueError, TypeError) as exc:
            raise DataError(f"vms.must_move_by must be timestamps: {exc}") from exc
    else:
        out["must_move_by"] = pd.NaT
    return out


def validate_hosts(hosts: pd.DataFrame | None, vms: pd.DataFrame) -> pd.DataFrame | None:
    """Every VM's host must be a known host, in the cluster the VM table says."""
    if hosts is None:
        return None
    _require_columns(hosts, HOST_COLUMNS, "hosts")
    hosts = hosts.reset_index(drop=True)
    duplicated = hosts["host_id"].duplicated(keep=False)
    if duplicated.any():
        raise DataError(
            f"hosts has duplicate host_id(s): {_listed(hosts.loc[duplicated, 'host_id'])}"
        )
    known = vms["host_id"].isin(hosts["host_id"])
    if not known.all():
        unknown = vms.loc[~known]
        raise DataError(
            f"unknown host(s) {_listed(unknown['host_id'])} (VM(s) {_listed(unknown['vm_id'])}) "
            "are not in the hosts table"
        )
    cluster_of = hosts.set_index("host_id")["cluster_id"]
    wrong = vms["cluster_id"].to_numpy() != cluster_of.reindex(vms["host_id"]).to_numpy()
    if wrong.any():
        raise DataError(
            f"VM(s) {_listed(vms.loc[wrong, 'vm_id'])} name a cluster that is not their host's cluster"
        )
    if "max_migrations" in hosts.columns:
        limit = _numeric(hosts, "max_migrations", "hosts")
        bad = ~(np.isfinite(limit) & (limit >= 0) & (limit == np.round(limit)))
        if bad.any():
            raise DataError(
                f"hosts.max_migrations must be an integer >= 0 for host(s) {_listed(hosts.loc[bad, 'host_id'])}"
            )
    return hosts


@dataclass(frozen=True)
class ForecastGrid:
    """The forecast as a VMs x timestamps matrix on a regular grid.

    Rows may be *ragged*: a VM whose telemetry stopped early has a forecast that starts (and
    ends) earlier than the fleet's; its cells outside its own forecast are NaN.
    """

    values: NDArray[np.float64]  # (n_vms, n_steps), rows in the order of the VM table
    start: pd.Timestamp
    step: pd.Timedelta

    @property
    def now(self) -> pd.Timestamp:
        """Where the freshest forecasts start: the latest first forecast step of any VM."""
        known = ~np.isnan(self.values)
        first = np.where(known.any(axis=1), known.argmax(axis=1), 0)
        return self.start + self.step * int(first.max())

    def last_forecast(self, row: int) -> pd.Timestamp | None:
        """The last forecast timestamp of VM ``row`` (None if it has none)."""
        known = np.flatnonzero(~np.isnan(self.values[row]))
        return None if len(known) == 0 else self.start + self.step * int(known[-1])

    @property
    def end(self) -> pd.Timestamp:
        """Where the last sample's interval ends: the forecast's horizon."""
        return self.start + self.step * self.values.shape[1]


def freshest_start(forecast: pd.DataFrame) -> pd.Timestamp:
    """Where planning starts ("now"): the latest first timestamp of any series, so a VM whose
    telemetry stopped early (an older forecast) is not planned in the past. The rule
    ``ForecastGrid.now`` applies to the matrix; this is it on the long frame."""
    firsts = forecast.groupby("series_id", sort=False, observed=True)["timestamp"].min()
    return pd.Timestamp(firsts.max())


def forecast_matrix(
    forecast: pd.DataFrame, vm_ids: pd.Series, *, what: str = "forecast", ragged: bool = False
) -> ForecastGrid:
    """Pivot the long frame onto a regular grid, one row per VM; series not in ``vm_ids`` are ignored.

    Fails on VMs without a forecast, duplicate or missing timestamps, irregular grids and
    missing values, naming the series. With ``ragged``, series may start and end at different
    times (each forecast starts where its own telemetry ended), as long as each is
    contiguous; the cells outside a series' own span are NaN.
    """
    _require_columns(forecast, FORECAST_COLUMNS, what)
    if len(forecast) == 0:
        raise DataError(f"{what} is empty")
    vm_index = pd.Index(vm_ids)
    row = vm_index.get_indexer(forecast["series_id"])
    present = np.zeros(len(vm_index), dtype=bool)
    present[row[row >= 0]] = True
    if not present.all():
        raise DataError(f"VM(s) {_listed(vm_index[~present])} have no rows in the {what}")
    keep = row >= 0
    try:
        stamps = pd.DatetimeIndex(pd.to_datetime(forecast["timestamp"].to_numpy()[keep]))
    except (ValueError, TypeError) as exc:
        raise DataError(f"{what}.timestamp must be timestamps: {exc}") from exc
    if stamps.hasnans:
        raise DataError(f"{what}.timestamp has missing values")
    values = _numeric(forecast, "yhat", what)[keep]
    row = row[keep]
    unique = stamps.unique().sort_values()
    if len(unique) == 1:
        raise DataError(f"{what} has a single timestamp; at least two are needed to know its step")
    steps = np.diff(unique.asi8)
    step_ns = int(steps.min())
    if (steps % step_ns).any():
        raise DataError(
            f"{what} timestamps are not on a regular grid (steps seen: {_listed(pd.to_timedelta(steps))})"
        )
    start = unique[0]
    n_steps = int((unique[-1].value - start.value) // step_ns) + 1
    column = (stamps.asi8 - start.value) // step_ns
    flat = row.astype(np.int64) * n_steps + column
    counts = np.bincount(flat, minlength=len(vm_index) * n_steps)
    if (counts > 1).any():
        dup_rows = np.flatnonzero(counts > 1) // n_steps
        raise DataError(f"{what} has duplicate timestamps for series {_listed(vm_index[dup_rows])}")
    per_vm = counts.reshape(len(vm_index), n_steps) > 0
    if ragged:
        first = per_vm.argmax(axis=1)
        last = n_steps - 1 - per_vm[:, ::-1].argmax(axis=1)
        holes = per_vm.sum(axis=1) != last - first + 1
    else:
        holes = ~per_vm.all(axis=1)
    if holes.any():
        gap_rows = np.flatnonzero(holes)
        raise DataError(
            f"{what} misses timestamps on the {pd.Timedelta(step_ns)} grid for series "
            f"{_listed(vm_index[gap_rows])}; fill gaps before planning"
        )
    if np.isnan(values).any():
        nan_rows = row[np.isnan(values)]
        raise DataError(f"{what}.yhat has missing values for series {_listed(vm_index[nan_rows])}")
    matrix = np.full(len(vm_index) * n_steps, np.nan, dtype=np.float64)
    matrix[flat] = values
    return ForecastGrid(matrix.reshape(len(vm_index), n_steps), start, pd.Timedelta(step_ns))
