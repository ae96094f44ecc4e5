"""Job kinds ``plan-migration`` and ``calibrate-migration``: the migration planner on the platform.

``plan-migration`` reads a forecast and a VM table (Parquet, any fsspec URL), plans a window per
VM with ``zhuge.migration.plan_migrations``, optionally scores the plan against the load that
really happened, and writes ``plan.parquet``, ``summary.json`` (and ``evaluation.json``) to the
attempt's artifact folder (``plan.parquet`` is the result's ``output``, which ``zhuge
plan-migrations --out`` downloads).

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

from zhuge.jobs.migration.calibration import (
    CALIBRATION_KIND,
    calibration_document,
    load_calibration,
)
from zhuge.jobs.migration.inputs import (
    FORECAST_REQUIRED,
    HISTORY_REQUIRED,
    VM_OPTIONAL,
    VM_REQUIRED,
    read_actual,
    read_history,
    read_parquet,
)
from zhuge.jobs.migration.kinds import run_calibrate_migration, run_plan_migration
from zhuge.jobs.migration.params import (
    PARTITION_VMS,
    CalibrateMigrationParams,
    PlanMigrationParams,
    parse_when,
)
from zhuge.jobs.migration.partitions import Partition, split_by_cluster
from zhuge.jobs.migration.prepare import PreparedPlan, prepare_plan

__all__ = [
    "CALIBRATION_KIND",
    "FORECAST_REQUIRED",
    "HISTORY_REQUIRED",
    "PARTITION_VMS",
    "VM_OPTIONAL",
    "VM_REQUIRED",
    "CalibrateMigrationParams",
    "Partition",
    "PlanMigrationParams",
    "PreparedPlan",
    "calibration_document",
    "load_calibration",
    "parse_when",
    "prepare_plan",
    "read_actual",
    "read_history",
    "read_parquet",
    "run_calibrate_migration",
    "run_plan_migration",
    "split_by_cluster",
]
