"""Reading a migration job's input files, with a clear ``DataError`` for every way one can be bad."""

from __future__ import annotations

import difflib
from typing import Any

import pandas as pd

from zhuge.errors import DataError
from zhuge.jobs.outputs import existing_location

VM_REQUIRED = ("vm_id", "host_id", "cluster_id", "memory_gb")
VM_OPTIONAL = ("dirty_rate_coeff", "priority", "must_move_by")
FORECAST_REQUIRED = ("series_id", "timestamp", "yhat")
HOST_REQUIRED = ("host_id", "cluster_id")
HOST_OPTIONAL = ("max_migrations",)
HISTORY_REQUIRED = ("vm_id", "memory_gb", "observed_load", "downtime_ms", "total_s")
HISTORY_OPTIONAL = ("start",)
TYPO_CUTOFF = 0.8  # difflib ratio above which an extra column is taken for a misspelt one


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
    if url.lower().endswith((".csv", ".csv.gz")) or _unnamed_csv(url):
        fs, path = existing_location(url, what)
        try:
            with fs.open(path, "rb", compression="infer") as fh:
                frame = pd.read_csv(fh)
        except (ValueError, UnicodeDecodeError, OSError) as exc:
            raise DataError(f"{what} file {url} is not a readable CSV file: {exc}") from exc
        _check_columns(list(frame.columns), HISTORY_REQUIRED, HISTORY_OPTIONAL, what)
        return frame
    return read_parquet(url, what, required=HISTORY_REQUIRED, optional=HISTORY_OPTIONAL)


def _unnamed_csv(url: str) -> bool:
    """A file named by its content (a dataset) that is not Parquet."""
    from zhuge.data.sources import sniff_format

    return "." not in url.rsplit("/", 1)[-1] and sniff_format(url) == "csv"


def read_vm_list(url: str) -> list[str]:
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


def listed(values: Any, limit: int = 5) -> str:
    items = list(dict.fromkeys(map(str, values)))
    more = f" and {len(items) - limit} more" if len(items) > limit else ""
    return ", ".join(repr(v) for v in items[:limit]) + more
