"""The planning problem as arrays: every VM in every candidate window, computed once.

``build_problem`` validates the inputs, averages the forecast into windows, runs the migration
model on the whole VMs x windows matrix and marks which (VM, window) pairs are feasible in time
(ends before the deadlines, holds no window in a blackout). Capacity (host, cluster,
bandwidth) is left to the solvers, which share this object.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from zhuge.errors import InvalidRequest
from zhuge.migration.constraints import PlanConstraints, blackout_windows, windows_occupied
from zhuge.migration.model import MigrationModel
from zhuge.migration.validation import ForecastGrid, forecast_matrix, validate_hosts, validate_vms

__all__ = ["PlanningProblem", "build_problem", "window_loads"]

MAX_CELLS = 60_000_000  # VMs x windows; ~0.5 GB per float64 matrix, and there are several


@dataclass(frozen=True, eq=False)
class PlanningProblem:
    vms: pd.DataFrame  # validated VM table, row i = VM i
    model: MigrationModel
    constraints: PlanConstraints
    window_starts: pd.DatetimeIndex  # (W,)
    deadline: pd.Timestamp  # effective: min(constraints.deadline, end of the last window)
    host: NDArray[np.int64]  # (V,) index into host_ids
    host_ids: pd.Index
    host_limit: NDArray[np.int64]  # (H,)
    cluster: NDArray[np.int64]  # (V,) index into cluster_ids
    cluster_ids: pd.Index
    cluster_limit: int  # per window; a very large number where unlimited
    bandwidth_limit: float  # Gbit/s per window; inf where unlimited
    link_gbps: NDArray[np.float64]  # (V,) rate each migration takes from the shared budget
    load: NDArray[np.float64]  # (V, W) predicted mean CPU % in the window
    downtime_ms: NDArray[np.float64]  # (V, W)
    total_s: NDArray[np.float64]  # (V, W)
    span: NDArray[np.int64]  # (V, W) windows held when starting in that window
    ends_in_time: NDArray[np.bool_]  # (V, W) ends by the deadline and must_move_by
    feasible: NDArray[np.bool_]  # (V, W) ends_in_time, forecast known, no held window dark
    forecast_known: NDArray[np.bool_]  # (V, W) the VM's forecast covers the window
    blackout: NDArray[np.bool_]  # (W,)

    @property
    def n_vms(self) -> int:
        return self.load.shape[0]

    @property
    def n_windows(self) -> int:
        return self.load.shape[1]


def _grid_origin(grid: ForecastGrid, constraints: PlanConstraints) -> pd.Timestamp:
    # Planning starts where the freshest forecasts start ("now"); a VM whose telemetry
    # stopped early has no forecast from there and is reported as such, not planned in the past.
    origin = grid.now
    if constraints.not_before is not None:
        not_before = _same_tz(constraints.not_before, grid.start, "not_before")
        if not_before > origin:
            # round up onto the grid the forecast and the windows share
            unit = math.gcd(grid.step.value, constraints.window.value)
            offset = -(-(not_before.value - origin.value) // unit) * unit
            origin = origin + pd.Timedelta(offset)
    return origin


def _same_tz(stamp: pd.Timestamp, like: pd.Timestamp, name: str) -> pd.Timestamp:
    if (stamp.tz is None) != (like.tz is None):
        raise InvalidRequest(
            f"{name} {stamp} and the forecast timestamps must both have a time zone or both have none"
        )
    return stamp


def window_loads(
    grid: ForecastGrid, origin: pd.Timestamp, window: pd.Timedelta
) -> tuple[pd.DatetimeIndex, NDArray[np.float64]]:
    """Mean forecast per window. Each sample holds for one step; windows inside the horizon only."""
    unit = math.gcd(grid.step.value, window.value)
    offset = (origin.value - grid.start.value) // unit
    per_step = grid.step.value // unit
    per_window = window.value // unit
    n_units = grid.values.shape[1] * per_step
    n_windows = max(0, (n_units - offset) // per_window)
    starts = pd.date_range(origin, periods=n_windows, freq=window)
    if n_windows == 0:
        return starts, np.empty((grid.values.shape[0], 0))
    fine = grid.values if per_step == 1 else np.repeat(grid.values, per_step, axis=1)
    fine = fine[:, offset : offset + n_windows * per_window]
    if per_window == 1:
        return starts, np.ascontiguousarray(fine)
    return starts, fine.reshape(fine.shape[0], n_windows, per_window).mean(axis=2)


def build_problem(
    forecast: pd.DataFrame,
    vms: pd.DataFrame,
    constraints: PlanConstraints,
    model: MigrationModel,
    hosts: pd.DataFrame | None = None,
    *,
    ragged: bool = True,
    what: str = "forecast",
) -> PlanningProblem:
    """The planning problem of ``forecast``; ``ragged`` lets VMs' forecasts start and end at
    different times (see ``forecast_matrix``)."""
    vms = validate_vms(vms)
    hosts = validate_hosts(hosts, vms)
    if constraints.bandwidth_gbps is not None and model.bandwidth_gbps > constraints.bandwidth_gbps:
        raise InvalidRequest(
            f"one migration takes {model.bandwidth_gbps} Gbit/s but the shared budget per window "
            f"is {constraints.bandwidth_gbps} Gbit/s: nothing could ever run"
        )
    grid = forecast_matrix(forecast, vms["vm_id"], ragged=ragged, what=what)
    origin = _grid_origin(grid, constraints)
    window = constraints.window
    deadline = grid.end
    if constraints.deadline is not None:
        deadline = min(deadline, _same_tz(constraints.deadline, grid.start, "deadline"))
    if deadline - origin < window:
        raise InvalidRequest(
            f"deadline {deadline} is less than one window ({window}) after the planning start "
            f"{origin}: no migration can be planned"
        )
    n_windows = (deadline - origin) // window
    if n_windows * len(vms) > MAX_CELLS:
        raise InvalidRequest(
            f"{len(vms)} VMs x {n_windows} windows is more than {MAX_CELLS} cells; use longer "
            "windows or an earlier deadline"
        )
    starts, load = window_loads(grid, origin, window)
    starts, load = starts[:n_windows], load[:, :n_windows]
    deadline = min(deadline, origin + window * n_windows)

    known = ~np.isnan(load)
    load = np.where(known, load, 0.0)  # unknown windows are made infeasible below
    memory = vms["memory_gb"].to_numpy()
    estimate = model.predict(memory[:, None], load, vms["dirty_rate_coeff"].to_numpy()[:, None])
    downtime, total = estimate.downtime_ms, estimate.total_s
    span = windows_occupied(total, window)

    vm_deadline = np.full(len(vms), deadline.value, dtype=np.int64)
    must = vms["must_move_by"]
    if must.notna().any():
        must_ns = pd.DatetimeIndex(must)
        if (must_ns.tz is None) != (origin.tz is None):
            raise InvalidRequest(
                "vms.must_move_by and the forecast timestamps must agree on having a time zone"
            )
        must_ns = must_ns.asi8
        vm_deadline = np.where(
            must.notna().to_numpy(), np.minimum(vm_deadline, must_ns), vm_deadline
        )
    end_ns = starts.asi8[None, :] + np.ceil(total * 1e9).astype(np.int64)
    ends_in_time = end_ns <= vm_deadline[:, None]
    del end_ns

    blackout = blackout_windows(starts, window, constraints.blackouts)
    dark_before = np.concatenate([[0], np.cumsum(blackout)])
    last = np.minimum(np.arange(n_windows)[None, :] + span, n_windows)
    clear = dark_before[last] == dark_before[:n_windows][None, :]
    unknown_before = np.concatenate(
        [np.zeros((len(vms), 1), dtype=np.int64), np.cumsum(~known, axis=1)], axis=1
    )
    rows = np.arange(len(vms))[:, None]
    covered = unknown_before[rows, last] == unknown_before[:, :n_windows]
    feasible = ends_in_time & clear & covered

    host_codes, host_ids = pd.factorize(vms["host_id"])
    cluster_codes, cluster_ids = pd.factorize(vms["cluster_id"])
    host_limit = np.full(len(host_ids), int(constraints.max_per_host), dtype=np.int64)
    if hosts is not None and "max_migrations" in hosts.columns:
        override = hosts.set_index("host_id")["max_migrations"].reindex(host_ids)
        host_limit = np.where(override.notna(), override.fillna(0), host_limit).astype(np.int64)
    return PlanningProblem(
        vms=vms,
        model=model,
        constraints=constraints,
        window_starts=starts,
        deadline=deadline,
        host=host_codes.astype(np.int64),
        host_ids=pd.Index(host_ids),
        host_limit=host_limit,
        cluster=cluster_codes.astype(np.int64),
        cluster_ids=pd.Index(cluster_ids),
        cluster_limit=len(vms)
        if constraints.max_per_cluster is None
        else int(constraints.max_per_cluster),
        bandwidth_limit=math.inf
        if constraints.bandwidth_gbps is None
        else float(constraints.bandwidth_gbps),
        link_gbps=np.full(len(vms), model.bandwidth_gbps),
        load=load,
        downtime_ms=downtime,
        total_s=total,
        span=span,
        ends_in_time=ends_in_time,
        feasible=feasible,
        forecast_known=known,
        blackout=blackout,
    )
