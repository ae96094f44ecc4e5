"""Checks run before a forecast job does any work (and by the CLI before it submits one)."""

from __future__ import annotations

from typing import Any

import pandas as pd

from zhuge.data.sources import (
    _format_of,
    _standardise,
    read_csv,
)
from zhuge.errors import DataError
from zhuge.jobs.forecast.params import FleetInput
from zhuge.jobs.outputs import existing_location
from zhuge.ml.forecast.chunked import (
    read_parquet_url,
)


def _exists(url: str, what: str) -> tuple[Any, str]:
    return existing_location(url, what, missing=f"{what} {url} does not exist")


def _head(url: str, rows: int = 2000) -> pd.DataFrame:
    """The first rows of a CSV or Parquet file (or folder), for checks."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    fs, path = _exists(url, "input")
    try:
        if _format_of(url, "auto") == "csv":
            return read_csv(url, nrows=rows)  # its separator and decimal comma detected
        files = sorted(f for f in fs.find(path) if f.endswith((".parquet", ".pq")))
        files = files if fs.isdir(path) else [path]
        if not files:
            raise DataError(f"input {url} is a folder without Parquet files")
        with fs.open(files[0], "rb") as fh:
            batch = next(pq.ParquetFile(fh).iter_batches(batch_size=rows), None)
            return batch.to_pandas() if batch is not None else pd.DataFrame()
    except (pa.ArrowException, pd.errors.ParserError, UnicodeDecodeError, OSError) as exc:
        raise DataError(f"input {url} is not readable CSV or Parquet: {exc}") from exc


def check_request(params: FleetInput) -> dict[str, Any]:
    """Check what can be checked cheaply before a job runs: the input opens, its columns map,
    its timestamps and values parse, the VM table exists. Returns what the first rows showed
    (columns, timestamp unit). The CLI runs this before submitting."""
    seen: dict[str, Any] = {}
    if params.input is not None:
        head = _head(params.input)
        if head.empty:
            raise DataError(f"input {params.input} has no rows")
        telemetry = _standardise(head, params.columns, params.timestamp_unit, params.input)
        seen = {"columns": list(head.columns), "timestamp_unit": telemetry.timestamp_unit}
        placed = {"host_id", "cluster_id"} & set(telemetry.frame.columns)
        level = params.level or "vm"
        if level != "vm" and f"{level}_id" not in placed and params.vms is None:
            raise DataError(
                f"level {level} needs each VM's {level}_id: the input has no {level}_id "
                f"column; map one with columns='{level}_id=NAME' or give the VM table (vms)",
                details={"params": ["columns", "vms"]},  # the CLI names their options
            )
    if params.vms is not None:
        _exists(params.vms, "VM table")
        vms = read_parquet_url(params.vms)
        if "vm_id" not in vms.columns:
            raise DataError(
                f"VM table {params.vms} lacks column 'vm_id'; it has {list(vms.columns)}"
            )
        if params.level not in (None, "vm") and f"{params.level}_id" not in vms.columns:
            raise DataError(f"VM table {params.vms} lacks column '{params.level}_id'")
        if getattr(params, "decision", None) or getattr(params, "select_by", "") == "decision":
            from zhuge.jobs.forecast.decision import decision_task

            decision_task(params, params.vms)  # the plans' VM table: memory_gb and the rest
    return seen
